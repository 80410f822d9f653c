"""The assistant over a real Qdrant Edge index and audit log, answering with a scripted model."""

from __future__ import annotations

from pathlib import Path

from appliance.answers import Question
from appliance.audit import AuditLog, AuditRecord
from appliance.domain import IndexedChunk
from appliance.gate import ModelGate, SharedModel
from appliance.keywords import KeywordEncoder
from appliance.rag import AnswerPolicy, Assistant
from appliance.retrieval import Retriever
from appliance.store.edge import EdgeStore
from tests.support.fakes import BagOfWordsEmbedder, ScriptedGenerator

DOCS = [
    (
        "/docs/wifi.txt",
        ("everyone",),
        "The guest wifi password is BLUEFALCON and it changes monthly.",
    ),
    ("/docs/parking.txt", ("everyone",), "Parking spaces are on level two of the garage."),
    ("/docs/salaries.txt", ("hr",), "The salary bands for engineers are confidential numbers."),
    # Found by its identifier alone (BM25), never by meaning: hybrid's keyword branch.
    ("/docs/severance.txt", ("hr",), "Severance code HRX-7731 covers restructuring payments."),
]


class Harness:
    def __init__(self, root: Path, generator: ScriptedGenerator) -> None:
        self.embedder = BagOfWordsEmbedder()
        self.store = EdgeStore.open(root / "qdrant", "docs", self.embedder.dimension, "bow")
        self.audit = AuditLog(root / "audit.sqlite3")
        self.generator = generator
        self.loads = 0
        chunks = [
            IndexedChunk(f"{n:064x}", source, 0, text, acl, "2026-11-23T00:00:00Z")
            for n, (source, acl, text) in enumerate(DOCS, start=1)
        ]
        texts = [c.text for c in chunks]
        self.store.upsert(chunks, self.embedder.embed(texts), KeywordEncoder().documents(texts))
        self.gate = ModelGate(queue_size=0, timeout_s=0.1)
        self.assistant = Assistant(
            Retriever(self.embedder, self.store),
            self.audit,
            SharedModel(self.gate, self._load),
            AnswerPolicy(score_threshold=0.2, max_tokens=64, collection="docs"),
        )

    def _load(self) -> ScriptedGenerator:
        self.loads += 1
        return self.generator

    def records(self) -> list[AuditRecord]:
        return self.audit.query()

    def close(self) -> None:
        self.audit.close()
        self.store.close()


def ask(text: str, groups: tuple[str, ...] = ("everyone",), **extra: object) -> Question:
    return Question(text=text, user="ann", groups=groups, k=3, **extra)  # type: ignore[arg-type]

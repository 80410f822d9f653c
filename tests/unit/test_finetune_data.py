"""Training examples from Q/A pairs: real Qdrant Edge and prompt builder, scripted model."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.answers import Question
from appliance.audit import AuditLog
from appliance.domain import IndexedChunk
from appliance.finetune import FinetuneError
from appliance.finetune.data import (
    QAPair,
    build_examples,
    cited_answer,
    load_examples,
    load_pairs,
    write_examples,
)
from appliance.gate import ModelGate, SharedModel
from appliance.rag import AnswerPolicy, Assistant
from appliance.retrieval import Retriever
from appliance.store.edge import EdgeStore
from tests.support.fakes import BagOfWordsEmbedder, ScriptedGenerator

DOCS = [
    ("/docs/wifi.txt", ("everyone",), "The guest wifi password is BLUEFALCON this month."),
    ("/docs/parking.txt", ("everyone",), "Guest parking is on level two; the wifi is upstairs."),
    ("/docs/old-wifi.txt", ("everyone",), "Archived: the guest wifi password is BLUEFALCON."),
    ("/docs/board.txt", ("board",), "The guest wifi password for the board is REDHAWK."),
]
THRESHOLD = 0.05
MAX_TOKENS = 64


class Index:
    def __init__(self, root: Path) -> None:
        self.embedder = BagOfWordsEmbedder()
        self.store = EdgeStore.open(root / "qdrant", "docs", self.embedder.dimension, "bow")
        chunks = [
            IndexedChunk(f"{n:064x}", source, 0, text, acl, "2026-11-23T00:00:00Z")
            for n, (source, acl, text) in enumerate(DOCS, start=1)
        ]
        self.store.upsert(chunks, self.embedder.embed([c.text for c in chunks]))
        self.retriever = Retriever(self.embedder, self.store)
        self.generator = ScriptedGenerator()

    def search(self, question: str) -> list:  # type: ignore[type-arg]
        return self.retriever.search(question, ("everyone",), 3)

    def build(self, pairs: list[QAPair], **options: object):  # type: ignore[no-untyped-def]
        return build_examples(
            pairs,
            self.search,
            self.generator,
            score_threshold=THRESHOLD,
            max_tokens=MAX_TOKENS,
            **options,  # type: ignore[arg-type]
        )


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    opened = Index(tmp_path)
    yield opened
    opened.store.close()


WIFI = QAPair("w1", "What is the guest wifi password?", "The guest wifi password is BLUEFALCON.")


def test_an_example_has_exactly_the_prompt_the_assistant_gives_the_model(
    index: Index, tmp_path: Path
) -> None:
    report = index.build([WIFI])
    [example] = report.examples
    audit = AuditLog(tmp_path / "audit.sqlite3")
    try:
        assistant = Assistant(
            index.retriever,
            audit,
            SharedModel(ModelGate(queue_size=0, timeout_s=0.1), lambda: index.generator),
            AnswerPolicy(score_threshold=THRESHOLD, max_tokens=MAX_TOKENS, collection="docs"),
        )
        assistant.ask(Question(WIFI.question, "ann", ("everyone",), 3))
    finally:
        audit.close()
    assert example.prompt == index.generator.prompts[-1].text
    assert example.mode == "completion" and example.prompt.endswith("Answer:")


def test_the_target_cites_every_passage_holding_the_answer_and_keeps_distractors(
    index: Index,
) -> None:
    [example] = index.build([WIFI]).examples
    sources = {p["n"]: p["source"] for p in example.passages}
    cited = {sources[n] for n in example.citations}
    assert cited == {"/docs/wifi.txt", "/docs/old-wifi.txt"}
    assert "/docs/parking.txt" in sources.values()  # a distractor, not cited
    assert "/docs/board.txt" not in sources.values()  # not readable by everyone
    marks = "".join(f"[{n}]" for n in example.citations)
    assert example.completion == f" The guest wifi password is BLUEFALCON {marks}."
    assert [p["cited"] for p in example.passages] == [
        p["n"] in example.citations for p in example.passages
    ]


def test_sources_narrow_down_which_passages_support_the_answer(index: Index) -> None:
    pair = QAPair("w2", WIFI.question, "the guest wifi password is BLUEFALCON", ("wifi.txt",))
    [example] = index.build([pair]).examples
    [cited] = example.citations
    assert example.passages[cited - 1]["source"] == "/docs/wifi.txt"


def test_unsupported_pairs_are_reported_and_kept_only_when_asked(index: Index) -> None:
    pair = QAPair("w3", WIFI.question, "The password is GREENOWL.")
    report = index.build([pair, WIFI])
    assert [p.id for p in report.unsupported] == ["w3"]
    assert [e.id for e in report.examples] == ["w1"]
    assert report.to_json()["unsupported"][0]["id"] == "w3"
    kept = index.build([pair], keep_unsupported=True)
    [example] = kept.examples
    assert example.citations == () and example.completion == " The password is GREENOWL."
    assert kept.to_json()["supported"] == 0


def test_a_question_nothing_relevant_answers_is_reported(index: Index) -> None:
    pair = QAPair("x", "zebra quantum violin?", "No.")
    report = index.build([pair])
    assert report.examples == [] and [p.id for p in report.nothing_found] == ["x"]


@pytest.mark.parametrize(
    ("answer", "citations", "expected"),
    [
        ("It is 28 days.", (2,), "It is 28 days [2]."),
        ("Yes!", (1, 3), "Yes [1][3]!"),
        ("1450 rpm", (1,), "1450 rpm [1]"),
        ("No citation.", (), "No citation."),
    ],
)
def test_citations_go_before_the_final_punctuation(
    answer: str, citations: tuple[int, ...], expected: str
) -> None:
    assert cited_answer(answer, citations) == expected


def test_bad_pair_files_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text('{"question": "q?", "answer": "a"}\n{"question": "q?"}\n', encoding="utf-8")
    with pytest.raises(FinetuneError, match=r"qa\.jsonl:2: field 'answer'"):
        load_pairs(path)
    path.write_text('{"question": "q?", "answer": "a", "sources": "x"}\n', encoding="utf-8")
    with pytest.raises(FinetuneError, match=r"qa\.jsonl:1: field 'sources'"):
        load_pairs(path)
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(FinetuneError, match="holds no pairs"):
        load_pairs(path)


def test_examples_round_trip_and_bad_lines_are_named(index: Index, tmp_path: Path) -> None:
    report = index.build([WIFI])
    out = tmp_path / "train.jsonl"
    write_examples(report.examples, out)
    assert load_examples(out) == report.examples
    out.write_text('{"mode": "poem", "prompt": "p", "completion": "c"}\n', encoding="utf-8")
    with pytest.raises(FinetuneError, match=r"train\.jsonl:1: not a training example"):
        load_examples(out)

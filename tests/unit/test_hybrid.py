"""Hybrid retrieval: BM25 next to MiniLM in the same points, one fused query, both backends."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import qdrant_edge as qe
from qdrant_client import models

from appliance.domain import IndexedChunk, RetrievedPassage
from appliance.embedding import SentenceTransformerEmbedder
from appliance.keywords import KeywordEncoder, embedding_text, question_keywords
from appliance.manifest import Manifest
from appliance.retrieval import MAX_KEYWORD_PASSAGES, Retriever, closest_with_keywords, is_relevant
from appliance.store import RETRIEVAL_MODES, VectorStore
from appliance.store.edge import _write_collection_meta
from ingest.chunking import ChunkConfig
from ingest.pipeline import IngestPipeline
from ingest.upgrade import add_sparse_vectors
from tests.support.fakes import InlineParser
from tests.support.stores import BACKENDS, LOCAL_MODE_SEARCH_WARNING, StorePlace

pytestmark = pytest.mark.filterwarnings(f"ignore:{LOCAL_MODE_SEARCH_WARNING}")

ANSWER = "Set PYTHONSAFEPATH before starting the interpreter to keep that folder off the list."
# Semantically closer to the question than the answer, without its identifier.
DISTRACTORS = [
    "Python adds the script's directory to the module search path sys.path at start-up.",
    "The interpreter builds its module search path from PYTHONPATH and the site folders.",
    "To stop Python from putting the current directory on the import path, change the path.",
    "Python's import system looks for modules in each directory of the search path in order.",
    "A safe module search path keeps untrusted directories out of Python's import path.",
]
QUESTION = (
    "Which environment variable is PYTHONSAFEPATH, what does it do to the module search path?"
)
HR_ONLY = "Severance code HRX-7731 applies to the restructuring payments of 2026."
HR_QUESTION = "What does HRX-7731 apply to?"


@pytest.fixture(scope="module")
def minilm(embed_model_dir: Path) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(embed_model_dir)


@pytest.fixture(params=BACKENDS)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorePlace]:
    opened = StorePlace(request.param, tmp_path / "qdrant")
    yield opened
    opened.close()


def _fill(store: VectorStore, embedder: SentenceTransformerEmbedder) -> None:
    docs = [(ANSWER, ("everyone",)), (HR_ONLY, ("hr",))] + [(d, ("everyone",)) for d in DISTRACTORS]
    chunks = [
        IndexedChunk(f"{n:064x}", f"/docs/page{n}.html", 0, text, acl, "now")
        for n, (text, acl) in enumerate(docs)
    ]
    texts = [embedding_text(c.source, c.section, c.text, headers=True) for c in chunks]
    store.upsert(chunks, embedder.embed(texts), KeywordEncoder().documents(texts))


def test_an_exact_identifier_is_found_by_hybrid_and_sparse_and_missed_by_dense(
    place: StorePlace, minilm: SentenceTransformerEmbedder
) -> None:
    store = place.open("docs", minilm.dimension, minilm.name)
    _fill(store, minilm)
    found = {
        mode: Retriever(minilm, store, mode).search(QUESTION, ["everyone"], 2)
        for mode in RETRIEVAL_MODES
    }
    assert ANSWER not in [p.text for p in found["dense"]]
    for mode in ("hybrid", "sparse"):
        assert found[mode][0].text == ANSWER, mode
        assert found[mode][0].keyword == "pythonsafepath"
        # The score shown is the passage's cosine to the question, in every mode.
        assert -1.0 <= found[mode][0].score <= 1.0
        assert found[mode][0].rank_score is not None
    store.close()


def test_a_keyword_only_hr_chunk_never_reaches_a_user_outside_hr(
    place: StorePlace, minilm: SentenceTransformerEmbedder
) -> None:
    store = place.open("docs", minilm.dimension, minilm.name)
    _fill(store, minilm)
    keywords = KeywordEncoder()
    vector = minilm.embed([HR_QUESTION])[0]
    sparse = keywords.query(HR_QUESTION)
    for mode in RETRIEVAL_MODES:
        # Asked for every chunk: each prefetch branch could return it, none may.
        outsider = store.search(vector, ["everyone"], 50, sparse=sparse, mode=mode)
        assert HR_ONLY not in [p.text for p in outsider], mode
        assert len(outsider) == len(DISTRACTORS) + 1 or mode == "sparse"
        insider = store.search(vector, ["hr"], 50, sparse=sparse, mode=mode)
        assert [p.text for p in insider] == [HR_ONLY], mode
    # The sparse branch alone finds it for hr, by its identifier only.
    found = Retriever(minilm, store, "sparse").search(HR_QUESTION, ["hr"], 3)
    assert found[0].keyword == "hrx-7731" and is_relevant(found[0], 0.99)
    store.close()


def test_question_keywords_are_identifiers_not_ordinary_words() -> None:
    # Versions are numbers, not names: "3.11" marks changes in many passages.
    assert question_keywords("What does --no-site do with sys.path in 3.11+ and 2.5?") == (
        "--no-site",
        "sys.path",
    )
    assert question_keywords("Why PYTHONSAFEPATH and error E1234?") == ("pythonsafepath", "e1234")
    assert question_keywords("What is the capital of France, VPN and well-known 2024?") == ()
    encoder = KeywordEncoder()
    option = set(encoder.query("--no-site").indices)
    assert option <= set(encoder.document("Run it with --no-site to skip.").indices)
    assert not option <= set(encoder.document("The site has no page.").indices)


def _passage(name: str, cosine: float, text: str) -> RetrievedPassage:
    return RetrievedPassage(name, name, f"/docs/{name}.html", 0, text, cosine)


def test_hybrid_reads_the_closest_passages_and_adds_only_what_names_a_missing_keyword() -> None:
    # Candidates in fused order: keyword matches rank high, the closest in meaning lower.
    fused = [
        _passage("mentions-a", 0.31, "sys.path is listed again here."),
        _passage("names-it-1", 0.20, "PYTHONSAFEPATH keeps the folder off the path."),
        _passage("names-it-2", 0.19, "With PYTHONSAFEPATH set, nothing is prepended."),
        _passage("names-it-3", 0.18, "PYTHONSAFEPATH again."),
        _passage("close-1", 0.70, "How sys.path is built at start-up."),
        _passage("close-2", 0.65, "The module search path, in order."),
        _passage("close-3", 0.60, "Where the interpreter looks for modules."),
    ]
    # Every keyword already held by a close passage: the k closest, closest first.
    chosen = closest_with_keywords(fused, ("sys.path",), 3)
    assert [p.chunk_id for p in chosen] == ["close-1", "close-2", "close-3"]
    # A keyword no close passage holds: passages naming it first (fused order, at most
    # MAX_KEYWORD_PASSAGES), then the closest.
    chosen = closest_with_keywords(fused, ("sys.path", "pythonsafepath"), 3)
    assert MAX_KEYWORD_PASSAGES == 2
    assert [p.chunk_id for p in chosen] == ["names-it-1", "names-it-2", "close-1"]


def _old_layout(place: StorePlace, dimension: int) -> None:
    """A collection as the appliance made it before hybrid retrieval: one unnamed vector."""
    if place.backend == "edge":
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)
        )
        qe.EdgeShard.create(str(place.root / "docs"), config).close()
        meta = {"dimension": dimension, "embed_model": "hash", "distance": "cosine"}
        _write_collection_meta(place.root, "docs", meta)
        return
    place.open("docs", dimension, "hash").close()  # starts the in-memory server
    server = place._server
    assert server is not None
    server.delete_collection("docs")
    server.create_collection(
        "docs",
        vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
        metadata={"dimension": dimension, "embed_model": "hash", "distance": "cosine"},
    )


class _NoParser:
    """Fails the test if anything is parsed again."""

    def parse_stream(self, paths):  # type: ignore[no-untyped-def]
        for path in paths:
            raise AssertionError(f"{path} was parsed again")
        yield from ()


def test_a_dense_only_collection_gets_bm25_vectors_from_its_stored_chunks(
    place: StorePlace, tmp_path: Path, embed_model_dir: Path
) -> None:
    from tests.support.fakes import HashEmbedder

    embedder = HashEmbedder()
    place.root.mkdir(parents=True, exist_ok=True)
    _old_layout(place, embedder.dimension)
    store = place.open("docs", embedder.dimension, "hash")
    assert not store.sparse_enabled
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "env.txt").write_text(ANSWER, encoding="utf-8")
    (docs / "hr.txt").write_text(HR_ONLY, encoding="utf-8")
    manifest = Manifest(tmp_path / "manifest.sqlite3")
    parser = InlineParser(ChunkConfig(embed_model_dir, 64, 8))
    IngestPipeline(store, embedder, manifest, parser, 10_000_000).run([docs / "env.txt"], ["all"])
    IngestPipeline(store, embedder, manifest, parser, 10_000_000).run([docs / "hr.txt"], ["hr"])
    before = dict(store.iter_payloads())
    assert store.count_without_sparse() == len(before) == 2
    # Hybrid questions fall back to dense on the old layout, without an error.
    fallback = Retriever(embedder, store, "hybrid")
    assert fallback.effective_mode() == "dense"
    assert fallback.search("PYTHONSAFEPATH", ["all"], 2)

    added = add_sparse_vectors(store, KeywordEncoder(), headers=True, page=1)
    report = IngestPipeline(store, embedder, manifest, _NoParser(), 10_000_000).run(
        [docs / "env.txt"], ["all"]
    )
    assert added == 2 and report.unchanged == 1 and report.new == report.changed == 0
    assert store.sparse_enabled and store.count_without_sparse() == 0
    assert dict(store.iter_payloads()) == before  # same ids, same payloads and groups
    store.close()
    reopened = place.open("docs", embedder.dimension, "hash")
    assert reopened.sparse_enabled
    sparse = KeywordEncoder().query("what is PYTHONSAFEPATH?")
    vector = embedder.embed(["what is PYTHONSAFEPATH?"])[0]
    hits = reopened.search(vector, ["all"], 2, sparse=sparse, mode="sparse")
    assert [p.text for p in hits] == [ANSWER]
    assert (
        reopened.search(
            vector, ["all"], 2, sparse=KeywordEncoder().query(HR_QUESTION), mode="sparse"
        )
        == []
    )
    assert add_sparse_vectors(reopened, KeywordEncoder(), headers=True) == 0
    reopened.close()
    manifest.close()


def test_a_run_killed_while_adding_bm25_vectors_resumes(place: StorePlace, tmp_path: Path) -> None:
    from tests.support.fakes import HashEmbedder

    embedder = HashEmbedder()
    place.root.mkdir(parents=True, exist_ok=True)
    _old_layout(place, embedder.dimension)
    store = place.open("docs", embedder.dimension, "hash")
    chunks = [
        IndexedChunk("d" * 64, "/a.txt", n, f"E{n}00 text", ("all",), "now") for n in range(5)
    ]
    store.upsert(chunks, embedder.embed([c.text for c in chunks]))
    pages: list[int] = []

    def killed(count: int) -> None:
        pages.append(count)
        if len(pages) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        add_sparse_vectors(store, KeywordEncoder(), headers=False, page=2, on_page=killed)
    assert store.count_without_sparse() == 1
    assert add_sparse_vectors(store, KeywordEncoder(), headers=False, page=2) == 1
    assert store.count_without_sparse() == 0 and store.count() == 5
    store.close()

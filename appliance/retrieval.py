"""Question in, the passages this user may read out: one filtered query, hybrid by default.

Modes (APPLIANCE_RETRIEVAL): hybrid, one Qdrant query whose dense (MiniLM) and BM25
prefetches each carry the user's group filter, fused by RRF; dense, cosine similarity only;
sparse, BM25 only. A collection made before hybrid retrieval has no BM25 vectors until
`appliance ingest` adds them: hybrid and sparse then search dense, and say so in the log.

Which of the fused candidates a hybrid search returns (`closest_with_keywords`): the k
closest in meaning, except that when the question names an identifier (`question_keywords`)
that none of those k holds, up to two candidates holding it come first, best fused rank
first. Measured on the dev set with the default model (README "Retrieval"), the fused RRF
order itself ranks the answer's passage higher but changes the passages the model reads
and lowered answer accuracy (0.675 to 0.45): a passage that shares the question's words
without answering it misleads a small model more than one close in meaning. Keywords
therefore only add what meaning missed: the question that names `PYTHONSAFEPATH` or
`ERR_SSL_PROTOCOL_ERROR` gets the passage naming it, other questions get the passages
dense retrieval would give.

Which passages count as relevant (`is_relevant`): a fused or BM25 score is not a cosine, so
the score threshold (APPLIANCE_SCORE_THRESHOLD) still applies to each passage's cosine
similarity, which every mode returns as its `score`. In hybrid and sparse modes a passage is
also relevant when it holds a keyword of the question as an exact token (an identifier such
as `PYTHONSAFEPATH`, `--no-site` or `E1234`, see `question_keywords`): questions that name a
setting, an option or an error code are answered from the passage that names it, while a
question sharing only ordinary words with the documents still finds nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import replace

from appliance.domain import RetrievedPassage
from appliance.embedding import Embedder
from appliance.keywords import KeywordEncoder, keyword_in, question_keywords
from appliance.store import RetrievalMode, VectorStore, prefetch_depth

log = logging.getLogger(__name__)

# At most this many of a hybrid search's k passages are taken for a keyword alone.
MAX_KEYWORD_PASSAGES = 2


def is_relevant(passage: RetrievedPassage, threshold: float) -> bool:
    """Cosine at or above the threshold, or an exact keyword match (hybrid and sparse)."""
    return passage.score >= threshold or passage.keyword is not None


class Retriever:
    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        mode: RetrievalMode = "hybrid",
        keywords: KeywordEncoder | None = None,
    ) -> None:
        self._embedder = embedder
        self._store = store
        self._mode: RetrievalMode = mode
        self._keywords = keywords if keywords is not None else KeywordEncoder()
        self._fallback_logged = threading.Event()

    @property
    def embed_model(self) -> str:
        return self._embedder.name

    @property
    def mode(self) -> RetrievalMode:
        """The configured mode (APPLIANCE_RETRIEVAL)."""
        return self._mode

    def effective_mode(self) -> RetrievalMode:
        """The mode questions use now: dense while the collection has no BM25 vectors."""
        if self._mode == "dense" or self._store.sparse_enabled:
            return self._mode
        if not self._fallback_logged.is_set():
            self._fallback_logged.set()
            log.warning(
                "event=retrieval_fallback mode=%s used=dense reason=collection_has_no_bm25_vectors "
                "fix=run_appliance_ingest",
                self._mode,
            )
        return "dense"

    def search(self, question: str, groups: Sequence[str], k: int) -> list[RetrievedPassage]:
        """The k best passages among those readable by `groups`, best first."""
        if not groups:
            return []
        mode = self.effective_mode()
        vector = self._embedder.embed([question])[0]
        if mode == "dense":
            return self._store.search(vector, groups, k)
        sparse = self._keywords.query(question)
        wanted = question_keywords(question)
        if mode == "sparse":
            passages = self._store.search(vector, groups, k, sparse=sparse, mode="sparse")
            return [replace(p, keyword=keyword_in(p.text, wanted)) for p in passages]
        # Every candidate of both branches, in fused order: the k closest in meaning are
        # among them, since the dense branch passes at least k.
        depth = prefetch_depth(k)
        candidates = self._store.search(
            vector, groups, 2 * depth, sparse=sparse, mode="hybrid", depth=depth
        )
        tagged = [replace(p, keyword=keyword_in(p.text, wanted)) for p in candidates]
        return closest_with_keywords(tagged, wanted, k)


def closest_with_keywords(
    candidates: Sequence[RetrievedPassage], keywords: Sequence[str], k: int
) -> list[RetrievedPassage]:
    """The k candidates closest in meaning (cosine), after up to MAX_KEYWORD_PASSAGES
    candidates holding a keyword of the question that none of those k holds, in the
    candidates' (fused) order."""
    closest = sorted(candidates, key=lambda p: p.score, reverse=True)[:k]
    missing = [w for w in keywords if not any(keyword_in(p.text, (w,)) for p in closest)]
    if not missing:
        return closest
    taken = {p.chunk_id for p in closest}
    found = [p for p in candidates if p.chunk_id not in taken and keyword_in(p.text, missing)]
    found = found[: min(MAX_KEYWORD_PASSAGES, k)]
    return found + closest[: k - len(found)]

"""BM25 vectors for a collection made before hybrid retrieval, from the stored chunks.

Nothing is parsed or embedded again: each point's BM25 vector is made from its stored text
(with the contextual header from its stored source and section, as at ingestion), and added
to the point in place. Ids, payloads (ACLs included) and dense vectors stay as they are.

Crash-safe like ingestion: the collection first gets its BM25 vector (idempotent), then each
page of points that still lack one gets it and is flushed. What is done is in the points
themselves, so a killed run resumes with the points still lacking one, and a point never
holds half a vector. Until every point has one, hybrid search still finds every point
through its dense prefetch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from appliance.errors import StoreError
from appliance.keywords import KeywordEncoder, embedding_text
from appliance.store import VectorStore

log = logging.getLogger(__name__)

PAGE_POINTS = 512


def add_sparse_vectors(
    store: VectorStore,
    keywords: KeywordEncoder,
    *,
    headers: bool,
    page: int = PAGE_POINTS,
    on_page: Callable[[int], None] | None = None,
) -> int:
    """Give every point without a BM25 vector its own; returns how many got one."""
    if store.sparse_enabled and store.count_without_sparse() == 0:
        return 0
    store.enable_sparse()
    added = 0
    previous: list[str] = []
    while True:
        points = store.without_sparse(page)
        if not points:
            break
        ids = [point_id for point_id, _ in points]
        if ids == previous:
            raise StoreError(
                f"{len(ids)} chunks keep lacking their BM25 vectors after they were written "
                f"(first: {ids[0]}); run `appliance status --check`"
            )
        texts = [
            embedding_text(
                str(payload.get("source", "")),
                payload.get("section"),
                str(payload.get("text", "")),
                headers,
            )
            for _, payload in points
        ]
        store.set_sparse(ids, keywords.documents(texts))
        store.flush()
        added += len(ids)
        previous = ids
        if on_page is not None:
            on_page(len(ids))
    log.info("event=sparse_vectors_added chunks=%d", added)
    return added

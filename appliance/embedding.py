"""sentence-transformers behind a small protocol; vectors come out as plain float lists."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from appliance.errors import ModelError
from appliance.threads import ThreadPlan

log = logging.getLogger(__name__)


class Embedder(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def model_display_name(model_dir: Path) -> str:
    """A packaged model lives in `<package>/model`: the package name says more."""
    return model_dir.name if model_dir.name != "model" else model_dir.parent.name


def declared_dimension(model_dir: Path) -> int | None:
    """The output dimension a sentence-transformers folder declares, without loading it."""
    pooling = model_dir / "1_Pooling" / "config.json"
    if pooling.is_file():
        value = json.loads(pooling.read_text(encoding="utf-8")).get("word_embedding_dimension")
        return int(value) if value else None
    return None


class SentenceTransformerEmbedder:
    def __init__(self, model_dir: Path, batch_size: int = 32, device: str | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        try:
            self._model = SentenceTransformer(str(model_dir), device=device, local_files_only=True)
        except Exception as exc:
            raise ModelError(f"cannot load embedding model {model_dir}: {exc}") from exc
        self._name = model_display_name(model_dir)
        self._batch_size = batch_size
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise ModelError(f"embedding model {model_dir} does not declare its dimension")
        self._dimension = int(dimension)
        log.info("event=embedder_loaded model=%s dimension=%d", self._name, self._dimension)

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        rows: list[list[float]] = vectors.tolist()
        return rows


class LazyEmbedder:
    """A SentenceTransformerEmbedder loaded on first use: `appliance ingest` of a folder whose
    files are all unchanged never loads the model. Name and dimension come from the model
    folder's declarations while it is not loaded."""

    def __init__(self, model_dir: Path, batch_size: int = 32, device: str | None = None) -> None:
        self._model_dir = model_dir
        self._batch_size = batch_size
        self._device = device
        self._loaded: SentenceTransformerEmbedder | None = None
        self._loading: threading.Thread | None = None
        self._error: ModelError | None = None
        self._lock = threading.Lock()
        self.load_seconds = 0.0
        self._declared = declared_dimension(model_dir)

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def name(self) -> str:
        return model_display_name(self._model_dir) if self._loaded is None else self._loaded.name

    @property
    def dimension(self) -> int:
        if self._loaded is None and self._declared:
            return self._declared
        return self._model().dimension

    def warm_up(self) -> None:
        """Start loading in the background: embedding will be needed soon."""
        with self._lock:
            if self._loaded is None and self._loading is None:
                self._loading = threading.Thread(
                    target=self._load, name="embedder-load", daemon=True
                )
                self._loading.start()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._model().embed(texts)

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            self._loaded = SentenceTransformerEmbedder(
                self._model_dir, self._batch_size, self._device
            )
        except ModelError as exc:
            self._error = exc
        self.load_seconds = time.perf_counter() - started

    def _model(self) -> SentenceTransformerEmbedder:
        self.warm_up()
        loading = self._loading
        if loading is not None:
            loading.join()
        if self._error is not None:
            raise self._error
        assert self._loaded is not None
        return self._loaded


def set_torch_threads(threads: int) -> int:
    """Set the calling thread's torch intra-op threads; returns the previous number."""
    import torch

    previous = int(torch.get_num_threads())
    if threads != previous:
        torch.set_num_threads(threads)
    return previous


DEFAULT_BATCH_SIZE = 32


class PacedEmbedder:
    """Ingestion's embedder: embeds `batch_size` chunks at a time, longest first, each batch
    with the threads the thread plan gives it (none while an answer streams on a small
    machine: it waits). Questions use the plain embedder and never wait."""

    def __init__(self, inner: Embedder, plan: ThreadPlan) -> None:
        self._inner = inner
        self._plan = plan
        self._batch_size = int(getattr(inner, "batch_size", DEFAULT_BATCH_SIZE))

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def dimension(self) -> int:
        return self._inner.dimension

    def warm_up(self) -> None:
        warm_up = getattr(self._inner, "warm_up", None)
        if warm_up is not None:
            warm_up()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        # Longest first, as sentence-transformers orders one call: batches pad little.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        rows: list[list[float]] = [[] for _ in texts]
        previous: int | None = None
        try:
            for start in range(0, len(order), self._batch_size):
                batch = order[start : start + self._batch_size]
                before = set_torch_threads(self._plan.embed_threads())
                previous = before if previous is None else previous
                vectors = self._inner.embed([texts[i] for i in batch])
                for index, row in zip(batch, vectors, strict=True):
                    rows[index] = row
        finally:
            self._plan.embedding_done()
            if previous is not None:
                set_torch_threads(previous)
        return rows

"""sentence-transformers behind a small protocol; vectors come out as plain float lists."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from appliance.errors import ModelError

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
            raise ModelError(f"cannot load embedding model {model_dir}: {exc}") from None
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

"""Stand-ins for the code around the real parts; the parts themselves are tested for real."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from appliance.domain import ChunkText
from appliance.errors import LoadError
from ingest.chunking import ChunkConfig, Chunker
from ingest.loaders import load_sections


class HashEmbedder:
    """Deterministic vectors from text hashes: enough to exercise storage, not retrieval."""

    name = "hash-embedder"

    def __init__(self, dimension: int = 8) -> None:
        self.dimension = dimension
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        return [
            [b / 255 + 0.01 for b in hashlib.sha256(t.encode()).digest()[: self.dimension]]
            for t in texts
        ]


class InlineParser:
    """Parses in this process, without the worker's time limit."""

    def __init__(self, config: ChunkConfig) -> None:
        self._chunker = Chunker(config)

    def parse_stream(
        self, paths: Iterable[Path]
    ) -> Iterator[tuple[Path, list[ChunkText] | LoadError]]:
        for path in paths:
            try:
                yield path, self._chunker.split(load_sections(path))
            except LoadError as exc:
                yield path, exc

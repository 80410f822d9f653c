"""Stand-ins for the code around the real parts; the parts themselves are tested for real."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from appliance.domain import ChunkText
from appliance.errors import LoadError
from appliance.generation import ModelIdentity, Prompt, PromptMode
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


class BagOfWordsEmbedder:
    """Word-count vectors, normalised: texts sharing words score high, unrelated ones near 0."""

    name = "bag-of-words"

    def __init__(self, dimension: int = 256) -> None:
        self.dimension = dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            vector = [0.0] * self.dimension
            for word in text.lower().replace("?", " ").replace(".", " ").split():
                vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dimension] += 1.0
            norm = sum(v * v for v in vector) ** 0.5 or 1.0
            vectors.append([v / norm for v in vector])
        return vectors


class ScriptedGenerator:
    """Streams a fixed answer word by word, and remembers the prompts it was given."""

    mode: PromptMode = "completion"
    context_size = 2048

    def __init__(self, answer: str = "The answer is 42 [1].", fail: Exception | None = None):
        self.answer = answer
        self.fail = fail
        self.prompts: list[Prompt] = []

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity(path="/models/scripted.gguf", sha256="ab" * 32)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def sanitize(self, text: str) -> str:
        return text.replace("<end_of_turn>", "(end_of_turn)")

    def stream(self, prompt: Prompt, max_tokens: int) -> Iterator[str]:
        self.prompts.append(prompt)
        for number, word in enumerate(self.answer.split(" ")):
            if self.fail is not None and number == 1:
                raise self.fail
            yield word if number == 0 else " " + word

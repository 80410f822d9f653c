"""Split text sections into chunks measured in the embedding model's own tokens.

Measuring in the embedder's tokens guarantees that no chunk is silently truncated by the
embedder's window (256 word pieces for all-MiniLM-L6-v2).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.domain import ChunkText, TextSection
from appliance.errors import ConfigError, ModelError

# [CLS] and [SEP] (or their equivalents) take two places in the embedder's window.
SPECIAL_TOKENS = 2


@dataclass(frozen=True)
class ChunkConfig:
    tokenizer_dir: Path
    chunk_size: int
    chunk_overlap: int


def embedder_window(model_dir: Path) -> int | None:
    """The embedder's max sequence length, as sentence-transformers declares it."""
    config = model_dir / "sentence_bert_config.json"
    if not config.is_file():
        return None
    value = json.loads(config.read_text(encoding="utf-8")).get("max_seq_length")
    return int(value) if value else None


def check_chunk_size(model_dir: Path, chunk_size: int) -> None:
    window = embedder_window(model_dir)
    if window is not None and chunk_size + SPECIAL_TOKENS > window:
        raise ConfigError(
            f"APPLIANCE_CHUNK_SIZE={chunk_size} does not fit the embedding model's window of "
            f"{window} tokens: the end of each chunk would be ignored. Use at most "
            f"{window - SPECIAL_TOKENS}."
        )


def load_token_counter(model_dir: Path) -> Callable[[str], list[int]]:
    tokenizer_file = model_dir / "tokenizer.json"
    if tokenizer_file.is_file():
        from tokenizers import Tokenizer

        fast = Tokenizer.from_file(str(tokenizer_file))
        # tokenizer.json may carry the model's padding and truncation; counting needs neither.
        fast.no_padding()
        fast.no_truncation()
        return lambda text: fast.encode(text, add_special_tokens=False).ids
    try:
        from transformers import AutoTokenizer

        slow = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except Exception as exc:
        raise ModelError(f"no tokenizer in embedding model folder {model_dir}: {exc}") from None
    return lambda text: list(slow.encode(text, add_special_tokens=False))


class Chunker:
    def __init__(self, config: ChunkConfig) -> None:
        from llama_index.core.node_parser import SentenceSplitter

        self._splitter = SentenceSplitter(
            chunk_size=config.chunk_size,
            chunk_overlap=config.chunk_overlap,
            tokenizer=load_token_counter(config.tokenizer_dir),
        )

    def split(self, sections: Sequence[TextSection]) -> list[ChunkText]:
        chunks: list[ChunkText] = []
        for section in sections:
            for text in self._splitter.split_text(section.text):
                if text.strip():
                    chunks.append(
                        ChunkText(len(chunks), text, page=section.page, section=section.section)
                    )
        return chunks

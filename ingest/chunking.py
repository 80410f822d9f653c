"""Split text sections into chunks measured in the embedding model's own tokens.

Measuring in the embedder's tokens guarantees that no chunk is silently truncated by the
embedder's window (256 word pieces for all-MiniLM-L6-v2).
"""

from __future__ import annotations

import json
import re
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


# Where a BERT pre-tokenizer always splits: ASCII whitespace (its normalizer turns \t \n \r
# into spaces) and ASCII punctuation (each is a token of its own). Other characters stay in the
# piece that the real tokenizer counts, so its normalization and word splitting still apply.
_PIECE = re.compile(r"[^ \t\n\r!-/:-@\[-`{-~]+|[!-/:-@\[-`{-~]")
# Pieces whose counts are remembered; the cache starts over beyond this (unusual corpora).
PIECE_CACHE_LIMIT = 200_000


class TokenCounter:
    """Counts the embedder's tokens of a text, as the fast tokenizer would, without
    tokenizing the same words again and again.

    The splitter counts a section, then each of its paragraphs, sentences and phrases: the
    same words several times over. With a BERT pre-tokenizer (all-MiniLM-L6-v2's), a text's
    count is the sum of its pieces' counts, split where that pre-tokenizer always splits;
    each distinct piece is tokenized once. Other tokenizers count each text whole.
    Called, it returns a range of that many places: the splitter only takes its length.
    """

    def __init__(self, count_one: Callable[[str], int], by_pieces: bool) -> None:
        self._count_one = count_one
        self._by_pieces = by_pieces
        self._pieces: dict[str, int] = {}

    def count(self, text: str) -> int:
        if not self._by_pieces:
            return self._count_one(text)
        pieces = self._pieces
        if len(pieces) > PIECE_CACHE_LIMIT:
            pieces.clear()
        total = 0
        for piece in _PIECE.findall(text):
            known = pieces.get(piece)
            if known is None:
                known = pieces[piece] = self._count_one(piece)
            total += known
        return total

    def __call__(self, text: str) -> range:
        return range(self.count(text))


def _splits_like_bert(tokenizer_file: Path) -> bool:
    spec = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    normalizer = (spec.get("normalizer") or {}).get("type")
    pre_tokenizer = (spec.get("pre_tokenizer") or {}).get("type")
    model = (spec.get("model") or {}).get("type")
    return (
        normalizer in (None, "BertNormalizer")
        and pre_tokenizer == "BertPreTokenizer"
        and model == "WordPiece"
    )


def load_token_counter(model_dir: Path) -> TokenCounter:
    tokenizer_file = model_dir / "tokenizer.json"
    if tokenizer_file.is_file():
        from tokenizers import Tokenizer

        fast = Tokenizer.from_file(str(tokenizer_file))
        # tokenizer.json may carry the model's padding and truncation; counting needs neither.
        fast.no_padding()
        fast.no_truncation()
        return TokenCounter(
            lambda text: len(fast.encode(text, add_special_tokens=False).ids),
            by_pieces=_splits_like_bert(tokenizer_file),
        )
    try:
        from transformers import AutoTokenizer

        slow = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except Exception as exc:
        raise ModelError(f"no tokenizer in embedding model folder {model_dir}: {exc}") from None
    return TokenCounter(lambda text: len(slow.encode(text, add_special_tokens=False)), False)


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

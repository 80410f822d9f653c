"""The chunker's token counter: the embedder's own counts, and the same chunks as before."""

from pathlib import Path

import pytest
from llama_index.core.node_parser import SentenceSplitter
from tokenizers import Tokenizer

from appliance.domain import TextSection
from ingest.chunking import ChunkConfig, Chunker, TokenCounter, load_token_counter

TRICKY = [
    "",
    "plain words, with punctuation; and (brackets) [1] {x: y}",
    "os.path.join('a', \"b\") -> 'a/b'  # 3.14 == pi?",
    "Ünïcödé café naïve façade — “quotes” and \u2018single\u2019 … ellipsis",
    "tabs\tand\nnew\r\nlines  and\u00a0no-break\u2003em spaces",
    "control\x00chars\x0bvertical\x0cfeed\x1fseparator",
    "CJK 漢字かなカナ한국어 mixed with latin汉字text",
    "Greek question mark\u037e and varia\u1fef inside wordsx\u037ey",
    "emoji 🙂👍🏽 and symbols © ® ™ ° ± \u00d7 ÷ § ¶",
    "a" * 150 + " " + "verylongidentifier_" * 8 + " short",
    "__init__ __dict__ ** // := ... ->>= <<= !=",
    "https://docs.python.org/3.11/library/os.html#os.walk?x=1&y=2",
    "  leading and trailing spaces  \n\n\n  ",
]


@pytest.fixture(scope="module")
def tokenizer(embed_model_dir: Path) -> Tokenizer:
    fast = Tokenizer.from_file(str(embed_model_dir / "tokenizer.json"))
    fast.no_padding()
    fast.no_truncation()
    return fast


def _real_count(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def _documents() -> list[str]:
    samples = Path(__file__).resolve().parents[2] / "samples"
    texts = [
        p.read_text(encoding="utf-8")
        for p in sorted(samples.glob("*.*"))
        if p.suffix in (".md", ".txt", ".csv", ".html")
    ]
    return [*texts, " ".join(TRICKY) * 20]


def test_counts_equal_the_tokenizer_on_every_text(
    embed_model_dir: Path, tokenizer: Tokenizer
) -> None:
    counter = load_token_counter(embed_model_dir)
    texts = TRICKY + _documents()
    texts += [line for text in texts for line in text.splitlines()]
    # Twice: the second pass reads every piece from the cache.
    for _ in range(2):
        assert [counter.count(t) for t in texts] == [_real_count(tokenizer, t) for t in texts]
    assert len(counter("one two three")) == 3  # what the splitter takes: the length


def test_chunk_boundaries_are_those_of_the_plain_tokenizer(
    embed_model_dir: Path, tokenizer: Tokenizer
) -> None:
    """The faster counter changes no chunk: same texts as counting each text whole."""
    plain = SentenceSplitter(
        chunk_size=64,
        chunk_overlap=8,
        tokenizer=lambda t: tokenizer.encode(t, add_special_tokens=False).ids,
    )
    chunker = Chunker(ChunkConfig(embed_model_dir, 64, 8))
    documents = _documents()
    split = [[c.text for c in chunker.split([TextSection(text)])] for text in documents]
    assert split == [[c for c in plain.split_text(t) if c.strip()] for t in documents]
    assert sum(map(len, split)) > 2 * len(documents)  # the texts were split, not kept whole


def test_other_tokenizers_count_each_text_whole() -> None:
    calls: list[str] = []

    def count(text: str) -> int:
        calls.append(text)
        return len(text.split())

    counter = TokenCounter(count, by_pieces=False)
    assert counter.count("a b, c") == 3
    assert calls == ["a b, c"]

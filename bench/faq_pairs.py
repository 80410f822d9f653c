"""Question/answer pairs from the Python 3.11 FAQ pages, for `appliance finetune build-data`.

Each FAQ question is a heading ending in "?"; its answer is the first sentence of the text
that follows the heading in the same section. A first sentence of fewer than MIN_WORDS words
("Yes.", "No.") says nothing a passage can be checked against, so the next sentence is
joined to it. Pairs carry their page as `sources` (relative to the HTML root, like the eval set).

    .venv/bin/python -m bench.faq_pairs [--root /usr/share/doc/python3.11/html] --out QA.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

from bs4 import BeautifulSoup, Tag

DOCS_ROOT = Path("/usr/share/doc/python3.11/html")
MIN_WORDS = 4
# A sentence ends at . ! or ? followed by a space and a capital, a quote or a bracket; "e.g. x"
# and "i.e. x" continue (lower case follows), so do decimals and dotted names like os.path.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(\[`])")
ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "Mr.", "Dr.")


def clean(text: str) -> str:
    return " ".join(text.replace("\u00b6", " ").split())


def sentences(text: str) -> list[str]:
    parts = SENTENCE_END.split(clean(text))
    merged: list[str] = []
    for part in parts:
        if merged and merged[-1].endswith(ABBREVIATIONS):
            merged[-1] = f"{merged[-1]} {part}"
        else:
            merged.append(part)
    return [p for p in merged if p]


def first_answer(paragraphs: list[str]) -> str | None:
    """The first sentence of the answer, joined with the next while it is too short."""
    found = [s for paragraph in paragraphs for s in sentences(paragraph)]
    if not found:
        return None
    answer = found[0]
    for following in found[1:]:
        if len(answer.split()) >= MIN_WORDS:
            break
        answer = f"{answer} {following}"
    return answer


def _answer_paragraphs(heading: Tag) -> list[str]:
    """Text of the paragraphs after the heading, up to the next heading or subsection."""
    texts: list[str] = []
    for sibling in heading.find_next_siblings():
        if sibling.name in ("h1", "h2", "h3", "h4", "section"):
            break
        if sibling.name in ("p", "ul", "ol", "dl", "blockquote"):
            # The same text extraction as ingestion's HTML reader, so the answer can be found
            # verbatim (after whitespace is collapsed) in the indexed passages.
            texts.append(sibling.get_text("\n", strip=True))
        if len(texts) >= 3:
            break
    return texts


def pairs_from_html(html: str, source: str) -> Iterator[dict[str, object]]:
    soup = BeautifulSoup(html, "html.parser")
    for heading in soup.find_all(["h2", "h3", "h4"]):
        question = clean(heading.get_text("\n", strip=True))
        if not question.endswith("?"):
            continue
        answer = first_answer(_answer_paragraphs(heading))
        if answer:
            yield {"question": question, "answer": answer, "sources": [source]}


def faq_pairs(root: Path) -> list[dict[str, object]]:
    pages = sorted((root / "faq").glob("*.html"))
    if not pages:
        raise SystemExit(
            f"no FAQ pages under {root / 'faq'}: install them (apt-get install python3.11-doc) "
            "or pass --root"
        )
    found: list[dict[str, object]] = []
    for page in pages:
        relative = page.relative_to(root).as_posix()
        found.extend(pairs_from_html(page.read_text(encoding="utf-8"), relative))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DOCS_ROOT, help="HTML root of the docs")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSONL pairs")
    args = parser.parse_args(argv)
    pairs = faq_pairs(args.root)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as out:
        for pair in pairs:
            out.write(json.dumps(pair, ensure_ascii=False) + "\n")
    print(f"{len(pairs)} pairs written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

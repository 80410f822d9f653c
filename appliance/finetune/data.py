"""Training examples from question/answer pairs: retrieval-augmented, with distractors.

For each pair the question is searched in the appliance's own index exactly as at question
time (same retriever, groups, k and score threshold) and the prompt is built by
`appliance.prompting.build_prompt` with the serving model's tokenizer and context budget, so
the model is trained on the very prompts it will see. The passages that contain the answer
are cited in the target answer; the others stay in the prompt as distractors. A pair whose
answer no numbered passage contains is unsupported: reported, and left out unless asked.

A pair approved from feedback names the documents behind it and their groups, and who wrote
its answer when a person did (see appliance.audit.pairs); built for an audience (the groups
the adapter is for), a pair with a document that none of those groups may read (when
approved, or in the index now), or whose answer was written by a user holding groups beyond
them, is left out, with a line saying why.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.audit.pairs import (
    CurrentGroups,
    PairDocument,
    Writer,
    audience_refusal,
    writer_refusal,
)
from appliance.domain import RetrievedPassage
from appliance.errors import QuestionError
from appliance.evaluation import json_object_line, normalize, source_matches
from appliance.finetune import FinetuneError
from appliance.generation import Generator
from appliance.prompting import BuiltPrompt, build_prompt
from appliance.retrieval import is_relevant

Search = Callable[[str], Sequence[RetrievedPassage]]


@dataclass(frozen=True)
class QAPair:
    id: str
    question: str
    answer: str
    sources: tuple[str, ...] = ()
    # The documents behind a pair approved from feedback, with their groups (None: a pair
    # written by hand, which names none).
    documents: tuple[PairDocument, ...] | None = None
    written_by: Writer | None = None  # who wrote the answer of such a pair, if a person did


@dataclass(frozen=True)
class Example:
    """One training example: the inference prompt and the answer the model should give."""

    id: str
    question: str
    answer: str
    mode: str
    prompt: str
    completion: str
    citations: tuple[int, ...]
    passages: tuple[dict[str, Any], ...]
    # Chat mode: the (role, content) turns before `prompt`, the rules and worked exchange the
    # model is given at inference time.
    preamble: tuple[tuple[str, str], ...] = ()

    @property
    def supported(self) -> bool:
        return bool(self.citations)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "mode": self.mode,
            "prompt": self.prompt,
            "completion": self.completion,
            "citations": list(self.citations),
            "supported": self.supported,
            "passages": list(self.passages),
            "preamble": [list(turn) for turn in self.preamble],
        }


@dataclass
class BuildReport:
    pairs: int = 0
    examples: list[Example] = field(default_factory=list)
    unsupported: list[QAPair] = field(default_factory=list)
    nothing_found: list[QAPair] = field(default_factory=list)
    refused: list[tuple[QAPair, str]] = field(default_factory=list)
    # Left out for the audience: a document behind the pair is not readable by it.
    restricted: list[tuple[QAPair, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        written = self.examples
        distractors = sum(len(e.passages) - len(e.citations) for e in written)
        return {
            "pairs": self.pairs,
            "examples": len(written),
            "supported": sum(1 for e in written if e.supported),
            "unsupported": [_pair_json(p) for p in self.unsupported],
            "nothing_found": [_pair_json(p) for p in self.nothing_found],
            "refused": [{**_pair_json(p), "error": error} for p, error in self.refused],
            "restricted": [{**_pair_json(p), "reason": why} for p, why in self.restricted],
            "distractors_per_example": round(distractors / len(written), 2) if written else 0.0,
        }


def _pair_json(pair: QAPair) -> dict[str, str]:
    return {"id": pair.id, "question": pair.question, "answer": pair.answer}


def load_pairs(path: Path) -> list[QAPair]:
    """Read `{"question", "answer", "sources"?, "id"?}` lines; a bad line is named."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FinetuneError(f"cannot read the question/answer file {path}: {exc}") from None
    pairs = [_parse_pair(path, n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    if not pairs:
        raise FinetuneError(
            f'{path} holds no pairs: write one JSON object per line, {{"question", "answer"}}'
        )
    return pairs


def _parse_pair(path: Path, number: int, line: str) -> QAPair:
    where = f"{path}:{number}"
    data = json_object_line(where, line, FinetuneError, ("question", "answer"), ("sources",))
    sources = data.get("sources", [])
    pair_id = data.get("id", f"line-{number}")
    documents, written_by = _feedback_fields(where, data) if "documents" in data else (None, None)
    return QAPair(
        str(pair_id),
        data["question"].strip(),
        data["answer"].strip(),
        tuple(sources),
        documents,
        written_by,
    )


def _feedback_fields(
    where: str, data: dict[str, Any]
) -> tuple[tuple[PairDocument, ...], Writer | None]:
    """The documents and writer of a pair exported from feedback."""
    if "written_by" not in data:
        raise FinetuneError(
            f"{where}: this pair names its documents but not who wrote its answer (field "
            "'written_by'): it was exported by an older version; export the pairs again with "
            "`appliance finetune pairs export`"
        )
    try:
        if not isinstance(data["documents"], list):
            raise ValueError("'documents' must be a list")
        documents = tuple(PairDocument.from_json(d) for d in data["documents"])
        return documents, Writer.from_json(data["written_by"])
    except (ValueError, KeyError, TypeError) as exc:
        raise FinetuneError(
            f"{where}: a feedback field is not as `finetune pairs export` writes it ({exc})"
        ) from None


def supports(pair: QAPair, passage: RetrievedPassage) -> bool:
    """The passage contains the answer (normalised text, final punctuation aside), and comes
    from one of the pair's sources when the pair names any."""
    if pair.sources and not any(source_matches(passage.source, s) for s in pair.sources):
        return False
    return normalize(pair.answer).rstrip(".!?") in normalize(passage.text)


def cited_answer(answer: str, citations: Sequence[int]) -> str:
    """The answer with its citations before the final punctuation: "It is X [2]." """
    marks = "".join(f"[{n}]" for n in citations)
    if not marks:
        return answer
    if answer[-1:] in ".!?":
        return f"{answer[:-1].rstrip()} {marks}{answer[-1]}"
    return f"{answer} {marks}"


def build_examples(
    pairs: Sequence[QAPair],
    search: Search,
    generator: Generator,
    *,
    score_threshold: float,
    max_tokens: int,
    keep_unsupported: bool = False,
    audience: Sequence[str] | None = None,
    current: CurrentGroups | None = None,
) -> BuildReport:
    """`audience`: the adapter's groups (search with the same); `current`: the groups the
    index gives a document now. See appliance.audit.pairs for the rule."""
    report = BuildReport(pairs=len(pairs))
    for pair in pairs:
        refusal = _audience_refusal(pair, audience, current)
        if refusal is not None:
            report.restricted.append((pair, refusal))
            continue
        relevant = [p for p in search(pair.question) if is_relevant(p, score_threshold)]
        if not relevant:  # at question time the model is not even asked
            report.nothing_found.append(pair)
            continue
        try:
            built = build_prompt(
                pair.question,
                relevant,
                mode=generator.mode,
                count_tokens=generator.count_tokens,
                context_size=generator.context_size,
                max_tokens=max_tokens,
                sanitize=generator.sanitize,
            )
        except QuestionError as exc:
            report.refused.append((pair, str(exc)))
            continue
        citations = tuple(
            n for n, passage in enumerate(built.passages, start=1) if supports(pair, passage)
        )
        if not citations:
            report.unsupported.append(pair)
            if not keep_unsupported:
                continue
        report.examples.append(_example(pair, built, citations))
    return report


def _example(pair: QAPair, built: BuiltPrompt, citations: tuple[int, ...]) -> Example:
    """`built`: the prompt build_prompt made for the pair's question."""
    target = cited_answer(pair.answer, citations)
    return Example(
        id=pair.id,
        question=pair.question,
        answer=pair.answer,
        mode=built.prompt.mode,
        prompt=built.prompt.text,
        preamble=built.prompt.preamble,
        # A completion prompt ends with "Answer:"; the model writes " It ...".
        completion=f" {target}" if built.prompt.mode == "completion" else target,
        citations=citations,
        passages=tuple(
            _passage_json(n, p, n in citations) for n, p in enumerate(built.passages, start=1)
        ),
    )


def _audience_refusal(
    pair: QAPair, audience: Sequence[str] | None, current: CurrentGroups | None
) -> str | None:
    """Why a pair approved from feedback may not train an adapter for `audience`."""
    if audience is None or pair.documents is None:
        return None
    return audience_refusal(pair.id, pair.documents, audience, current) or writer_refusal(
        pair.id, pair.written_by, audience
    )


def _passage_json(n: int, passage: RetrievedPassage, cited: bool) -> dict[str, Any]:
    return {
        "n": n,
        "chunk_id": passage.chunk_id,
        "source": passage.source,
        "score": round(passage.score, 4),
        "cited": cited,
    }


def write_examples(examples: Sequence[Example], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")
    temporary.replace(out)


def load_examples(path: Path) -> list[Example]:
    """Read a file written by `build-data`; a bad line is named."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise FinetuneError(f"cannot read the training file {path}: {exc}") from None
    examples = [_parse_example(path, n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not examples:
        raise FinetuneError(
            f"{path} holds no examples: make it with `appliance finetune build-data`"
        )
    return examples


def _parse_example(path: Path, number: int, line: str) -> Example:
    try:
        data = json.loads(line)
        mode = data["mode"]
        if mode not in ("completion", "chat"):
            raise ValueError(f"mode must be completion or chat, not {mode!r}")
        for name in ("prompt", "completion"):
            if not isinstance(data[name], str) or not data[name].strip():
                raise ValueError(f"'{name}' must be a non-empty string")
        return Example(
            id=str(data.get("id", f"line-{number}")),
            question=str(data.get("question", "")),
            answer=str(data.get("answer", "")),
            mode=mode,
            prompt=data["prompt"],
            completion=data["completion"],
            citations=tuple(int(n) for n in data.get("citations", [])),
            passages=tuple(data.get("passages", [])),
            preamble=tuple((str(role), str(text)) for role, text in data.get("preamble", [])),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise FinetuneError(
            f"{path}:{number}: not a training example ({exc}); make the file with "
            "`appliance finetune build-data`"
        ) from None

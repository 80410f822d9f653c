"""The prompt: numbered passages, the question, the instruction to cite; and citation parsing.

Fitting rule (the passages never overflow the context window):
  budget = context size - answer tokens (APPLIANCE_LLM_MAX_TOKENS) - the prompt without
  passages (instructions + question) - a margin for special and chat-template tokens.
Passages go in by rank. The first one that does not fit whole is cut to the remaining
budget if at least MIN_PASSAGE_TOKENS remain, and no further passage goes in; passages left
out are not numbered, so the model can only cite what it saw. When not even the question
fits, the question is refused with a message saying how long it may be.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from appliance.domain import RetrievedPassage
from appliance.errors import QuestionError
from appliance.generation import Prompt, PromptMode

MIN_PASSAGE_TOKENS = 48
TEMPLATE_MARGIN_TOKENS = 32

INSTRUCTIONS = (
    "Answer the question using only the numbered passages. "
    "Cite the passage that supports each statement with its number in square brackets, "
    "like [1]. If the passages do not contain the answer, say you do not know."
)

# Worked examples teach a base model the format (a short answer, then the citation); chat
# models follow the instructions without them. Two examples citing different passages did
# better than one on the sample documents.
EXAMPLE = (
    "Passages:\n"
    "[1] The office is open from 8 am to 6 pm on weekdays.\n"
    "[2] Visitors must sign in at the front desk and wear a badge.\n\n"
    "Question: Where do visitors sign in?\n"
    "Answer: Visitors sign in at the front desk [2].\n\n"
    "Question: When is the office open?\n"
    "Answer: The office is open from 8 am to 6 pm on weekdays [1].\n\n"
)

# "\n[" : a base model that starts a new "[6] ..." line is inventing passages, not answering.
COMPLETION_STOP = ("\nQuestion:", "\nPassages:", "\n\n\n", "\n[")

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")

CITATION = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")


@dataclass(frozen=True)
class BuiltPrompt:
    prompt: Prompt
    passages: tuple[RetrievedPassage, ...]  # numbered [1]..[n] in this order


def passage_block(number: int, passage: RetrievedPassage) -> str:
    text = " ".join(passage.text.split())
    return f"[{number}] {text}\n"


def render(mode: PromptMode, question: str, blocks: Sequence[str]) -> Prompt:
    passages = "".join(blocks) if blocks else "(none)\n"
    question = " ".join(question.split())
    if mode == "chat":
        text = f"{INSTRUCTIONS}\n\nPassages:\n{passages}\nQuestion: {question}"
        return Prompt(mode="chat", text=text)
    text = f"{INSTRUCTIONS}\n\n{EXAMPLE}Passages:\n{passages}\nQuestion: {question}\nAnswer:"
    return Prompt(mode="completion", text=text, stop=COMPLETION_STOP)


def build_prompt(
    question: str,
    passages: Sequence[RetrievedPassage],
    *,
    mode: PromptMode,
    count_tokens: Callable[[str], int],
    context_size: int,
    max_tokens: int,
    sanitize: Callable[[str], str] = str,
) -> BuiltPrompt:
    """Number the passages that fit (see the module docstring) and render the prompt.

    Passages and question go through `sanitize` (the model's control-token defence) first.
    """
    question = sanitize(question)
    fixed = count_tokens(render(mode, question, []).text) + TEMPLATE_MARGIN_TOKENS
    budget = context_size - max_tokens - fixed
    if budget < 0:
        allowed = max(context_size - max_tokens - (fixed - count_tokens(question)), 0)
        raise QuestionError(
            f"the question is too long for the model's context: about {count_tokens(question)} "
            f"tokens, at most about {allowed} fit. Shorten it (or raise "
            "APPLIANCE_LLM_CONTEXT_SIZE)."
        )
    blocks: list[str] = []
    used: list[RetrievedPassage] = []
    for passage in passages:
        block = sanitize(passage_block(len(blocks) + 1, passage))
        cost = count_tokens(block)
        if cost <= budget:
            blocks.append(block)
            used.append(passage)
            budget -= cost
            continue
        if budget >= MIN_PASSAGE_TOKENS:
            blocks.append(_cut_to(block, budget, count_tokens))
            used.append(passage)
        break
    if not used:
        raise QuestionError(
            "the question leaves no room for any passage in the model's context: shorten it "
            "(or raise APPLIANCE_LLM_CONTEXT_SIZE)"
        )
    return BuiltPrompt(render(mode, question, blocks), tuple(used))


def _cut_to(block: str, budget: int, count_tokens: Callable[[str], int]) -> str:
    """The longest prefix of `block` (cut at a space) that fits in `budget` tokens."""
    low, high = 0, len(block)
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(block[:middle] + " ...\n") <= budget:
            low = middle
        else:
            high = middle - 1
    prefix = block[:low]
    if " " in prefix:
        prefix = prefix[: prefix.rindex(" ")]
    return prefix + " ...\n"


def parse_citations(answer: str, passage_count: int) -> tuple[int, ...]:
    """Passage numbers cited as [n], [n, m] or [n][m], in order of first use, valid ones only."""
    cited: list[int] = []
    for group in CITATION.findall(answer):
        for part in re.split(r"\s*[,;]\s*", group):
            number = int(part)
            if 1 <= number <= passage_count and number not in cited:
                cited.append(number)
    return tuple(cited)


def without_repetition(text: str) -> str | None:
    """`text` cut before its first sentence that repeats an earlier one; None if none does.

    Small models at temperature 0 fall into loops ("X is Y. X is Y. X is Y."). Generation
    stops at the first repeated sentence instead of filling the token budget with it.
    """
    sentences = SENTENCE_END.split(text.strip())
    complete = sentences if text.rstrip()[-1:] in (".", "!", "?") else sentences[:-1]
    seen: set[str] = set()
    for index, sentence in enumerate(complete):
        key = " ".join(sentence.lower().split())
        if key in seen:
            return " ".join(sentences[:index]).strip()
        seen.add(key)
    return None

"""The prompt: numbered passages, the question, the instruction to cite; and citation parsing.

Chat models (a chat template in the GGUF) get system rules and a worked exchange before the
question (see SYSTEM_RULES for what was measured); base models get a completion prompt with
worked examples in the text. The rules and the exchange come first and never change, so
llama.cpp keeps them evaluated between questions.

Fitting rule (the passages never overflow the context window):
  budget = context size - answer tokens (APPLIANCE_LLM_MAX_TOKENS) - the prompt without
  passages (rules, examples, question) - a margin for special and chat-template tokens.
Passages go in by rank. The first one that does not fit whole is cut to the remaining
budget if at least MIN_PASSAGE_TOKENS remain, and no further passage goes in; passages left
out are not numbered, so the model can only cite what it saw. When not even the question
fits, the question is refused with a message saying how long it may be.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePath

from appliance.domain import RetrievedPassage
from appliance.errors import QuestionError
from appliance.generation import Prompt, PromptMode

MIN_PASSAGE_TOKENS = 48
TEMPLATE_MARGIN_TOKENS = 32
MESSAGE_MARGIN_TOKENS = 8  # role markers a chat template wraps around each turn

# Chat models get these rules, then one worked exchange (an answer citing the passage that
# holds it, which is not the first). Measured on the dev set with Qwen2.5-Coder-1.5B: without
# the exchange it cited nothing or lumped citations at the end. A second exchange teaching it
# to reply "The documents do not say." made it refuse 9 of 40 questions whose answer was in a
# passage (accuracy 0.48 against 0.55 without it), so there is none: an answer the passages
# do not support is caught by the sentence check (appliance.verification) instead.
SYSTEM_RULES = (
    "You answer questions from the numbered passages of the organisation's documents that "
    "come with each question.\n"
    "- Use only what the passages say: no outside knowledge, no guesses.\n"
    "- Answer in one to three short sentences. Copy the exact names, values and words of "
    "the passage.\n"
    "- End every sentence with the number of the passage it comes from, like [2]."
)

CHAT_EXAMPLES = (
    (
        "Passages:\n"
        "[1] (network.html, Ports) The web interface listens on port 8443 by default.\n"
        "[2] (backup.html, Scheduling) Backups run every night at 02:00. To change the time, "
        "set backup_time in appliance.conf and restart the service.\n\n"
        "Question: how do I make the nightly backup run at another hour?",
        "Set backup_time in appliance.conf and restart the service [2]. By default backups "
        "run every night at 02:00 [2].",
    ),
)

# The completion prompt (base models).
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


def passage_block(number: int, passage: RetrievedPassage, mode: PromptMode) -> str:
    """One numbered passage; chat models also see where it comes from."""
    text = " ".join(passage.text.split())
    if mode == "chat":
        return f"[{number}] ({passage_label(passage)}) {text}\n"
    return f"[{number}] {text}\n"


def passage_label(passage: RetrievedPassage) -> str:
    """Where a passage comes from, as the model sees it: file name and section or page."""
    where = PurePath(passage.source).name or passage.source
    if passage.section:
        where += f", {' '.join(passage.section.split())[:80]}"
    elif passage.page:
        where += f", page {passage.page}"
    return where


def chat_preamble() -> tuple[tuple[str, str], ...]:
    turns: list[tuple[str, str]] = [("system", SYSTEM_RULES)]
    for question, answer in CHAT_EXAMPLES:
        turns += [("user", question), ("assistant", answer)]
    return tuple(turns)


def render(mode: PromptMode, question: str, blocks: Sequence[str]) -> Prompt:
    passages = "".join(blocks) if blocks else "(none)\n"
    question = " ".join(question.split())
    if mode == "chat":
        text = f"Passages:\n{passages}\nQuestion: {question}"
        return Prompt(mode="chat", text=text, preamble=chat_preamble())
    text = f"{INSTRUCTIONS}\n\n{EXAMPLE}Passages:\n{passages}\nQuestion: {question}\nAnswer:"
    return Prompt(mode="completion", text=text, stop=COMPLETION_STOP)


def prompt_tokens(prompt: Prompt, count_tokens: Callable[[str], int]) -> int:
    """Tokens the prompt takes in the context, chat-template markers estimated."""
    if prompt.mode == "completion":
        return count_tokens(prompt.text)
    return sum(count_tokens(m["content"]) + MESSAGE_MARGIN_TOKENS for m in prompt.messages())


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
    fixed = prompt_tokens(render(mode, question, []), count_tokens) + TEMPLATE_MARGIN_TOKENS
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
        block = sanitize(passage_block(len(blocks) + 1, passage, mode))
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

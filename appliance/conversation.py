"""Follow-up questions rewritten into standalone ones before retrieval.

"Can they carry them over?" retrieves nothing useful on its own; the conversation says who
"they" are. The local model rewrites the question from the last turns. Its rewrite is
accepted only when it looks like a question about the same thing; otherwise (small base
models often ramble) a follow-up that leans on the conversation is joined to the previous
standalone question, which is what retrieval needs, and a self-contained one is kept as is.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from appliance.answers import MAX_QUESTION_CHARS, Turn
from appliance.gate import SharedModel
from appliance.generation import Generator, Prompt
from appliance.prompting import TEMPLATE_MARGIN_TOKENS, prompt_tokens

log = logging.getLogger(__name__)

HISTORY_TURNS = 3
ANSWER_CHARS = 300
TURN_QUESTION_CHARS = 600
REWRITE_MAX_TOKENS = 48
MAX_REWRITE_CHARS = 400

INSTRUCTION = (
    "Rewrite the last question so that it can be understood without the conversation. "
    "Keep its meaning; name what pronouns refer to."
)
EXAMPLE = (
    "Conversation:\n"
    "Q: Where is the colour printer on the third floor?\n"
    "A: The colour printer is next to the kitchen [1].\n"
    "Last question: Does it print on both sides?\n"
    "Standalone question: Does the colour printer on the third floor print on both sides?\n"
)
DEPENDENT_WORDS = frozenset(
    [
        "it",
        "its",
        "it's",
        "they",
        "them",
        "their",
        "theirs",
        "this",
        "that",
        "these",
        "those",
        "he",
        "she",
        "him",
        "her",
        "his",
        "hers",
        "there",
        "then",
        "one",
        "ones",
        "same",
        "above",
        "previous",
        "former",
        "latter",
        "also",
        "too",
        "else",
        "more",
    ]
)
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "for",
        "and",
        "or",
        "is",
        "are",
        "was",
        "were",
        "be",
        "can",
        "could",
        "do",
        "does",
        "did",
        "how",
        "what",
        "which",
        "who",
        "whom",
        "why",
        "when",
        "where",
        "with",
        "about",
        "as",
        "at",
        "by",
        "from",
        "i",
        "you",
        "we",
        "my",
        "your",
        "our",
    ]
)
WORD = re.compile(r"[A-Za-z0-9_]+")


def content_words(text: str) -> set[str]:
    return {w for w in (m.lower() for m in WORD.findall(text)) if w not in STOPWORDS}


FOLLOW_UP_OPENINGS = ("and ", "but ", "what about", "how about", "also ", "so ")


def leans_on_conversation(question: str) -> bool:
    words = [w.lower() for w in WORD.findall(question)]
    opening = question.strip().lower().startswith(FOLLOW_UP_OPENINGS)
    return opening or len(words) <= 3 or any(w in DEPENDENT_WORDS for w in words)


def normalised(text: str) -> str:
    return " ".join(WORD.findall(text.lower()))


def merged(history: Sequence[Turn], question: str) -> str:
    return f"{history[-1].question} {question}" if history else question


def rewrite_prompt(history: Sequence[Turn], question: str, mode: str) -> Prompt:
    lines = ["Conversation:"]
    for turn in history[-HISTORY_TURNS:]:
        lines.append(f"Q: {turn.question[:TURN_QUESTION_CHARS]}")
        lines.append(f"A: {turn.answer[:ANSWER_CHARS]}")
    lines.append(f"Last question: {question}")
    lines.append("Standalone question:")
    text = f"{INSTRUCTION}\n\n{EXAMPLE}\n" + "\n".join(lines)
    if mode == "chat":
        text += "\n\nReply with the standalone question only."
        return Prompt("chat", text)
    return Prompt("completion", text, stop=("\n",))


def acceptable(rewrite: str, history: Sequence[Turn], question: str) -> bool:
    if not rewrite or len(rewrite) > MAX_REWRITE_CHARS or "\n" in rewrite:
        return False
    if any(normalised(rewrite) == normalised(turn.question) for turn in history):
        return False  # the model copied an earlier question instead of rewriting this one
    if normalised(rewrite) == normalised(question) and leans_on_conversation(question):
        return False  # an echo: the pronouns still point nowhere
    asked = content_words(question)
    return not asked or bool(asked & content_words(rewrite))


class FollowUpRewriter:
    """The rewrite step of the assistant's question flow (`Assistant.stream`)."""

    def __init__(self, model: SharedModel) -> None:
        self._model = model

    def standalone(self, history: Sequence[Turn], question: str) -> str:
        """The question as retrieval should see it; `question` itself when there is no history.

        The rewrite prompt is fitted like an answer's: the oldest turns go first, and when not
        even the question fits with one turn the model is not asked (the answer's own fitting
        then refuses a question too long, and records it).
        """
        question = question.strip()
        if not history or len(question) > MAX_QUESTION_CHARS:
            return question
        with self._model.hold() as generator:
            prompt = fitted_prompt(generator, history, question)
            rewrite = (
                "".join(generator.stream(prompt, REWRITE_MAX_TOKENS)).strip() if prompt else ""
            )
        if acceptable(rewrite, history, question):
            return rewrite
        log.info("event=rewrite_rejected fallback=%s", leans_on_conversation(question))
        return merged(history, question) if leans_on_conversation(question) else question


def fitted_prompt(generator: Generator, history: Sequence[Turn], question: str) -> Prompt | None:
    """The rewrite prompt with as many recent turns as the context holds, or None."""
    budget = generator.context_size - REWRITE_MAX_TOKENS - TEMPLATE_MARGIN_TOKENS
    turns = [Turn(generator.sanitize(t.question), generator.sanitize(t.answer)) for t in history]
    turns = turns[-HISTORY_TURNS:]
    while turns:
        prompt = rewrite_prompt(turns, generator.sanitize(question), generator.mode)
        if prompt_tokens(prompt, generator.count_tokens) <= budget:
            return prompt
        turns = turns[1:]
    log.info("event=rewrite_skipped reason=context")
    return None

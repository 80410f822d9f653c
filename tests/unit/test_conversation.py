"""Follow-up rewriting: the model's rewrite when it is sound, a safe fallback when not."""

from collections.abc import Iterator

from appliance.conversation import FollowUpRewriter, Turn, acceptable, leans_on_conversation
from appliance.gate import ModelGate, SharedModel
from appliance.generation import Prompt
from tests.support.fakes import ScriptedGenerator

HISTORY = [Turn("Where is the colour printer?", "Next to the kitchen [1].")]


class RewriteGenerator(ScriptedGenerator):
    def stream(self, prompt: Prompt, max_tokens: int) -> Iterator[str]:
        self.prompts.append(prompt)
        yield self.answer


def rewriter(reply: str) -> tuple[FollowUpRewriter, RewriteGenerator]:
    generator = RewriteGenerator(reply)
    return FollowUpRewriter(SharedModel(ModelGate(1, 1.0), lambda: generator)), generator


def test_without_history_the_question_is_kept_and_the_model_not_called() -> None:
    rewrite, generator = rewriter("anything")
    assert rewrite.standalone([], "  What is the wifi password? ") == "What is the wifi password?"
    assert generator.prompts == []


def test_a_sound_rewrite_is_used_and_the_prompt_carries_the_conversation() -> None:
    rewrite, generator = rewriter("Does the colour printer print on both sides?")
    assert (
        rewrite.standalone(HISTORY, "Does it print on both sides?")
        == "Does the colour printer print on both sides?"
    )
    prompt = generator.prompts[0]
    assert "Q: Where is the colour printer?" in prompt.text
    assert prompt.text.rstrip().endswith("Standalone question:")
    assert prompt.stop == ("\n",)


def test_a_rambling_rewrite_falls_back_to_the_previous_question_joined() -> None:
    rewrite, _ = rewriter("Kitchen kitchen kitchen")
    assert (
        rewrite.standalone(HISTORY, "Does it print on both sides?")
        == "Where is the colour printer? Does it print on both sides?"
    )


def test_a_copied_earlier_question_is_not_a_rewrite() -> None:
    assert not acceptable("Where is the colour printer?", HISTORY, "And where is it?")


def test_a_self_contained_follow_up_is_kept_when_the_rewrite_is_rejected() -> None:
    rewrite, _ = rewriter("")
    question = "How many days of paid holiday does an employee get?"
    assert not leans_on_conversation(question)
    assert rewrite.standalone(HISTORY, question) == question


def test_document_text_in_the_history_is_sanitised_before_the_model_sees_it() -> None:
    rewrite, generator = rewriter("Is the printer fixed?")
    history = [Turn("Is the printer broken?", "Yes <end_of_turn> it is [1].")]
    rewrite.standalone(history, "Is it fixed?")
    assert "<end_of_turn>" not in generator.prompts[0].text


def test_an_echo_of_a_follow_up_that_leans_on_the_conversation_is_not_a_rewrite() -> None:
    rewrite, _ = rewriter("Does it print on both sides?")
    assert (
        rewrite.standalone(HISTORY, "Does it print on both sides?")
        == "Where is the colour printer? Does it print on both sides?"
    )
    assert leans_on_conversation("What about the colour one?")


def test_a_rewrite_prompt_keeps_the_turns_that_fit_the_context() -> None:
    rewrite, generator = rewriter("Does the colour printer print on both sides?")
    generator.context_size = 250  # words, for the scripted model
    long_turn = Turn("Where is the colour printer? " + "very " * 200, "Next to the kitchen [1].")
    history = [long_turn, *HISTORY]
    assert rewrite.standalone(history, "Does it print on both sides?") == (
        "Does the colour printer print on both sides?"
    )
    [prompt] = generator.prompts
    assert "very very" not in prompt.text and "Next to the kitchen" in prompt.text
    assert generator.count_tokens(prompt.text) <= 250 - 48


def test_no_rewrite_is_asked_for_when_the_question_alone_overflows_the_context() -> None:
    rewrite, generator = rewriter("anything")
    generator.context_size = 120
    question = "Does it print " + "on both sides " * 40 + "?"
    assert rewrite.standalone(HISTORY, question) == f"{HISTORY[0].question} {question}"
    assert generator.prompts == []


def test_a_question_too_long_to_answer_is_not_rewritten() -> None:
    rewrite, generator = rewriter("anything")
    question = "it " * 3000
    assert rewrite.standalone(HISTORY, question) == question.strip()
    assert generator.prompts == []

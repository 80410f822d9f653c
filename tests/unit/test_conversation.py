"""Follow-up rewriting: the model's rewrite when it is sound, a safe fallback when not."""

from collections.abc import Iterator

from appliance.conversation import FollowUpRewriter, Turn, acceptable, leans_on_conversation
from appliance.gate import ModelGate
from appliance.generation import Prompt
from tests.fakes import ScriptedGenerator

HISTORY = [Turn("Where is the colour printer?", "Next to the kitchen [1].")]


class RewriteGenerator(ScriptedGenerator):
    def stream(self, prompt: Prompt, max_tokens: int) -> Iterator[str]:
        self.prompts.append(prompt)
        yield self.answer


def rewriter(reply: str) -> tuple[FollowUpRewriter, RewriteGenerator]:
    generator = RewriteGenerator(reply)
    return FollowUpRewriter(ModelGate(1, 1.0), lambda: generator), generator


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

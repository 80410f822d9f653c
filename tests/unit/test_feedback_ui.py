"""The chat's thumbs and the Audit page's feedback view: the handlers, with the real user
store, guard-less identifier and audit log behind them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import pytest

from tests.support.feedback_api import Api
from ui.chat import build_chat_tab
from ui.feedback import feedback_html, rate_handler, rated_answer


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    opened = Api(tmp_path)
    yield opened
    opened.close()


def request_of(api: Api, who: str) -> Any:
    """What a Gradio request carries that the handlers read: the caller's headers."""
    raw = SimpleNamespace(
        headers={"authorization": f"Bearer {api.keys[who]}"}, cookies={}, client=None
    )
    return SimpleNamespace(request=raw)


def like(index: int, liked: Any) -> gr.LikeData:
    return gr.LikeData(None, {"index": index, "value": "", "liked": liked})


def test_a_thumb_names_the_answer_it_was_clicked_on() -> None:
    ids = {1: "audit-1", 3: "audit-2"}
    assert rated_answer(ids, 3, True) == ("audit-2", "up")
    assert rated_answer(ids, [1, 0], False) == ("audit-1", "down")
    assert rated_answer(ids, 1, "Dislike") == ("audit-1", "down")
    assert rated_answer(ids, 0, True) is None  # the user's own question
    assert rated_answer(ids, 1, "") is None  # a thumb taken back


def test_the_chat_handler_records_a_rating_with_its_correction(api: Api) -> None:
    audit_id = api.ask("ann", "what is the guest wifi password?")
    rate = rate_handler(api.feedback, api.identifier)
    note, correction = rate({1: audit_id}, "BLUEFALCON", like(1, False), request_of(api, "ann"))
    assert "👎 recorded with a correction" in note and correction == ""
    [item] = api.feedback.items()
    assert (item.user, item.rating, item.correction, item.record_id) == (
        "ann",
        "down",
        "BLUEFALCON",
        audit_id,
    )
    with pytest.raises(gr.Error, match="no answer of yours"):
        rate({1: audit_id}, "", like(1, True), request_of(api, "hugo"))
    assert len(api.feedback.items()) == 1


def test_the_chat_offers_thumbs_only_with_feedback(api: Api) -> None:
    with gr.Blocks() as plain:
        build_chat_tab(engine=Any, identifier=Any, max_question_chars=100)  # type: ignore[arg-type]
    with gr.Blocks() as rated:
        build_chat_tab(
            engine=Any,  # type: ignore[arg-type]
            identifier=Any,  # type: ignore[arg-type]
            max_question_chars=100,
            feedback=api.feedback,
        )

    def chatbot(blocks: gr.Blocks) -> gr.Chatbot:
        return next(b for b in blocks.blocks.values() if isinstance(b, gr.Chatbot))

    assert chatbot(plain).feedback_options is None
    assert list(chatbot(rated).feedback_options or ()) == ["Like", "Dislike"]
    assert "rate_answer" in {d.api_name for d in rated.fns.values()}


def test_the_audit_page_shows_feedback_as_plain_text(api: Api) -> None:
    audit_id = api.ask("ann", "what is the guest wifi password?")
    api.feedback.rate(_user(api, "ann"), audit_id, "down", "<img src=x onerror=alert(1)>")
    shown = feedback_html(api.feedback.about(audit_id))
    assert "rated down" in shown and "&lt;img src=x" in shown and "<img" not in shown


def _user(api: Api, name: str) -> Any:
    user = api.users.user_for_key(api.keys[name])
    assert user is not None
    return user

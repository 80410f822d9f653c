"""Feedback in a real headless Chromium: a user clicks 👎 on an answer with a correction, an
auditor finds it in the Audit page's review queue, picks it and approves it."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.integration.browser import HOLIDAY_QUESTION, ask, sign_in
from tests.integration.web_server import WebServer

pytestmark = pytest.mark.integration

CORRECTION = "28 days of paid holiday per calendar year"


def test_a_user_corrects_an_answer_and_an_auditor_approves_it(
    browser: Browser, web_server: WebServer
) -> None:
    page = sign_in(browser, web_server, "bob")
    ask(page, HOLIDAY_QUESTION)
    page.locator("#correction textarea").fill(CORRECTION)
    page.locator("#chatbot").get_by_label("Dislike").last.click()
    expect(page.locator("#feedback-note")).to_contain_text("👎 recorded with a correction")
    expect(page.locator("#correction textarea")).to_have_value("")
    page.context.close()

    auditor = sign_in(browser, web_server, "carol")
    auditor.get_by_role("tab", name="Audit").click()
    auditor.click("#review-refresh")
    queue = auditor.locator("#review-queue")
    expect(queue).to_contain_text(CORRECTION)
    queue.get_by_text(CORRECTION, exact=True).filter(visible=True).first.click()
    expect(auditor.locator("#review-answer textarea")).to_have_value(CORRECTION)
    expect(auditor.locator("#review-question textarea")).to_have_value(HOLIDAY_QUESTION)
    auditor.click("#review-ok")
    expect(auditor.locator("#review-outcome")).to_contain_text("approved")
    expect(queue).not_to_contain_text(CORRECTION)  # the queue holds open feedback only
    auditor.context.close()

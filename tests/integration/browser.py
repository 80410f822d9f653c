"""Headless Chromium against a real `appliance serve`: signing in and asking in the chat."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.integration.web_server import PASSWORD, WebServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 60_000
HOLIDAY_QUESTION = "How many days of paid holiday does an employee get?"


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def sign_in(browser: Browser, web_server: WebServer, user: str, start: str = "/ui/") -> Page:
    page = browser.new_context().new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(web_server.url + start)
    assert "/login" in page.url  # every page starts at the sign-in form
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/")
    expect(page.locator("#whoami")).to_contain_text(f"Signed in as {user}")
    return page


def ask(page: Page, question: str) -> str:
    """Ask in the chat box and wait for the whole answer; the final text of the answer."""
    page.locator("#question textarea").fill(question)
    page.click("#ask")
    expect(page.locator("#sources .source").first).to_be_visible()
    answer = page.locator('#chatbot [data-testid="bot"]').last
    expect(answer).to_be_visible()
    expect(answer).not_to_have_text("…")
    # The answer is complete once its text stops changing.
    text, stable_since = answer.inner_text(), time.monotonic()
    while time.monotonic() - stable_since < 2:
        time.sleep(0.25)
        now = answer.inner_text()
        if now != text:
            text, stable_since = now, time.monotonic()
    return text.strip()

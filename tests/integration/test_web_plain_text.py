"""Model output and file names are plain text in the real UI (headless Chromium against a real
`appliance serve`): a model that writes URLs gets no link, image or HTML into the chat, and a
watched file named like an HTML tag injects nothing into the documents view.

The model is a scripted OpenAI-compatible server (APPLIANCE_LLM_URL): what is tested is what
the UI does with any words, so the words are fixed rather than left to a small model.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.integration.browser import ask, sign_in
from tests.integration.scripted_llm import scripted_llm
from tests.integration.web_server import WebServer, ingest, prepare

pytestmark = pytest.mark.integration

PORTAL = "The security portal is at http://evil.example/x and its mirror is www.evil.example"
PORTAL_DOC = f"{PORTAL} for all staff.\n"
ANSWER = f"{PORTAL} for all staff [1]. Its logo is ![logo](http://evil.example/l.png) [1]."
EVIL_NAMES = ("<img src=x onerror=alert(1)>.txt", "<img src=y onerror=alert(2)>.pdf")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    root = tmp_path_factory.mktemp("plain")
    with scripted_llm(ANSWER) as (url, _):
        server = prepare(root, with_secret=False, model=root / "unused.gguf", APPLIANCE_LLM_URL=url)
        portal = root / "portal"
        portal.mkdir()
        (portal / "portal.txt").write_text(PORTAL_DOC, encoding="utf-8")
        ingest(server.data_dir, portal, "everyone")
        server.start()
        try:
            yield server
        finally:
            server.stop()


def test_urls_in_an_answer_and_its_sources_are_no_links(
    browser: Browser, server: WebServer
) -> None:
    page = sign_in(browser, server, "bob")
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if "evil.example" in r.url else None)

    answer = ask(page, "Where is the security portal and its mirror?")

    first = page.locator("#sources .source").first
    expect(first).to_contain_text("portal.txt")  # the passage [1] the answer cites
    messages = page.locator('#chatbot [data-testid="bot"], #chatbot [data-testid="user"]')
    assert messages.count() == 2
    assert page.locator('#chatbot [data-testid="bot"] a').count() == 0
    assert page.locator("#chatbot img, #chatbot [data-testid='bot'] :is(code, pre)").count() == 0
    assert "http://evil.example/x" in answer and "www.evil.example" in answer, answer
    assert "![logo](http://evil.example/l.png)" in answer, answer  # shown exactly as written
    expect(first.locator("blockquote")).to_contain_text("http://evil.example/x")
    assert page.locator("#sources blockquote a, #sources img").count() == 0
    assert outside == []
    page.context.close()


def test_file_names_like_html_inject_nothing_into_the_documents_view(
    browser: Browser, server: WebServer
) -> None:
    for name in EVIL_NAMES:  # the .pdf is no PDF: it fails, and the status names it
        (server.docs_dir / name).write_text("Parking rules for visitors.\n", encoding="utf-8")
    admin = sign_in(browser, server, "alice")
    alerts: list[str] = []
    admin.on("dialog", lambda d: (alerts.append(d.message), d.dismiss()))
    admin.get_by_role("tab", name="Documents").click()
    table, status = admin.locator("#documents-table"), admin.locator("#ingest-status")
    for _ in range(60):  # the folder watch picks the files up within seconds
        admin.click("#refresh-documents")
        if "onerror=alert(2)" in status.inner_text():
            break
        admin.wait_for_timeout(1000)
    expect(table).to_contain_text(EVIL_NAMES[0])
    expect(status).to_contain_text(EVIL_NAMES[1])
    assert admin.locator("#documents-table img, #ingest-status img").count() == 0
    assert alerts == []
    admin.context.close()

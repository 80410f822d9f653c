"""The web UI in a real headless Chromium against a real `appliance serve`: sign-in, a streamed
answer with its sources, an admin's upload, an auditor's search, and what each role sees."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.integration.browser import HOLIDAY_QUESTION, TIMEOUT_MS, ask, sign_in
from tests.integration.web_server import WebServer

pytestmark = pytest.mark.integration

# Markup in a document is untrusted text: shown as written, never rendered or fetched.
CANTEEN_FACT = (
    "The canteen serves ZORBLAX soup on Fridays, cooked by chef Ingrid Valdottir. "
    '<img src="http://evil.example/pixel.png" onerror="document.title=1"> '
    "![menu](http://evil.example/menu.png)\n"
)
# Records the text of the last assistant message each time the chat changes.
WATCH_ANSWER = """() => {
  window.__answers = [];
  const chat = document.querySelector('#chatbot');
  new MutationObserver(() => {
    const bots = chat.querySelectorAll('[data-testid="bot"]');
    const text = bots.length ? bots[bots.length - 1].innerText.trim() : '';
    const seen = window.__answers;
    if (text && seen[seen.length - 1] !== text) seen.push(text);
  }).observe(chat, {subtree: true, childList: true, characterData: true});
}"""


def tab_names(page: Page) -> list[str]:
    return [name.strip() for name in page.get_by_role("tab").all_inner_texts()]


def test_a_user_signs_in_asks_and_opens_the_cited_document(
    browser: Browser, web_server: WebServer
) -> None:
    page = sign_in(browser, web_server, "bob", start="/")
    assert tab_names(page) == ["Chat"]  # no Documents, no Audit for a plain user
    page.evaluate(WATCH_ANSWER)

    answer = ask(page, HOLIDAY_QUESTION)

    assert "28" in answer
    assert "not supported" not in answer
    expect(page.locator('#chatbot [data-testid="user"]').last).to_contain_text(HOLIDAY_QUESTION)
    # Checked sentences show while the model is still writing ("…" after them).
    seen: list[str] = page.evaluate("window.__answers")
    streaming = [s for s in seen if s != "…" and s.endswith("…")]
    assert any(answer.startswith(s.removesuffix("…").strip()) for s in streaming), seen

    handbook = web_server.doc_id(web_server.sample("employee-handbook.md"))
    first = page.locator("#sources .source").first
    expect(first).to_contain_text("employee-handbook.md")
    expect(first.locator("blockquote")).to_contain_text("28 days of paid holiday")
    # The words that support the answer are highlighted in the passage.
    expect(first.locator("blockquote mark")).to_contain_text("28 days")
    link = first.locator("a")
    assert link.get_attribute("href") == f"/documents/{handbook}"

    opened = page.request.get(web_server.url + f"/documents/{handbook}")
    assert opened.status == 200 and "28 days of paid holiday" in opened.text()
    with page.expect_popup() as popup:
        link.click()
    expect(popup.value.locator("body")).to_contain_text("28 days of paid holiday")
    page.context.close()


def test_an_admin_uploads_a_document_and_a_user_gets_answers_from_it(
    browser: Browser, web_server: WebServer, tmp_path: Path
) -> None:
    upload = tmp_path / "canteen-menu.txt"
    upload.write_text(CANTEEN_FACT, encoding="utf-8")
    admin = sign_in(browser, web_server, "alice")
    assert tab_names(admin) == ["Chat", "Documents"]
    admin.get_by_role("tab", name="Documents").click()
    expect(admin.locator("#documents-table")).to_contain_text("employee-handbook.md")

    admin.locator("#upload-files input[type=file]").set_input_files(upload)
    expect(admin.locator("#upload-files")).to_contain_text("canteen-menu.txt")
    admin.locator("#upload-groups textarea").fill("everyone")
    admin.click("#upload-ingest")

    status = admin.locator("#ingest-status")
    expect(status).to_contain_text("Done (upload: canteen-menu.txt): 1 new")
    expect(admin.locator("#documents-table")).to_contain_text("canteen-menu.txt")
    admin.context.close()

    user = sign_in(browser, web_server, "bob")
    outside: list[str] = []
    user.on("request", lambda r: outside.append(r.url) if "evil.example" in r.url else None)
    ask(user, "What soup does the canteen serve on Fridays?")
    first = user.locator("#sources .source").first
    expect(first).to_contain_text("canteen-menu.txt")
    passage = first.locator("blockquote")
    expect(passage).to_contain_text("ZORBLAX soup on Fridays")
    expect(passage).to_contain_text('<img src="http://evil.example/pixel.png"')
    assert user.locator("#sources img, #chatbot img").count() == 0
    assert outside == [] and user.title() != "1"
    user.context.close()


def test_an_auditor_finds_a_users_question_and_opens_its_record(
    browser: Browser, web_server: WebServer
) -> None:
    asked = web_server.ask(web_server.keys["bob"], HOLIDAY_QUESTION)
    assert asked.status_code == 200, asked.text
    record_id = asked.json()["audit_id"]
    passage = asked.json()["sources"][0]
    passage_hash = hashlib.sha256(passage["text"].encode("utf-8")).hexdigest()

    page = sign_in(browser, web_server, "carol")
    assert tab_names(page) == ["Chat", "Audit"]
    page.get_by_role("tab", name="Audit").click()
    expect(page.locator("#audit-chain")).to_contain_text("Chain verified")
    page.locator("#audit-user textarea").fill("bob")
    page.click("#audit-search")
    results = page.locator("#audit-results")
    expect(results).to_contain_text(record_id)
    expect(results).not_to_contain_text("carol")

    results.get_by_text(record_id, exact=True).filter(visible=True).first.click()
    expect(page.locator("#audit-record-id textarea")).to_have_value(record_id)
    page.click("#audit-open")
    record = page.locator("#audit-record")
    expect(record).to_contain_text(record_id)
    expect(record).to_contain_text(HOLIDAY_QUESTION)
    expect(record).to_contain_text("bob (groups: everyone)")
    expect(record).to_contain_text(passage["chunk_id"])
    expect(record).to_contain_text(passage_hash)
    expect(record).to_contain_text(passage["doc_id"])
    # Each sentence of the answer, with whether its citations support it.
    sentences = record.locator("table.audit-sentences")
    expect(sentences).to_contain_text(asked.json()["sentences"][0]["text"])
    page.context.close()


def test_a_wrong_password_shows_an_error_and_sets_no_session(
    browser: Browser, web_server: WebServer
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(web_server.url + "/login")
    page.fill("#username", "bob")
    page.fill("#password", "this is not bob's password")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    assert "/login" in page.url
    assert [c for c in context.cookies() if c["name"] == "appliance_session"] == []
    page.goto(web_server.url + "/ui/")
    assert "/login" in page.url
    context.close()


def test_an_auditor_downloads_an_export_from_the_appliance_not_from_gradio(
    browser: Browser, web_server: WebServer
) -> None:
    asked = web_server.ask(web_server.keys["bob"], HOLIDAY_QUESTION)
    assert asked.status_code == 200, asked.text
    page = sign_in(browser, web_server, "carol")
    page.get_by_role("tab", name="Audit").click()
    page.locator("#audit-user textarea").fill("bob")
    page.click("#audit-export-csv")
    link = page.locator("#audit-download a")
    expect(link).to_contain_text("audit-export-")
    href = link.get_attribute("href") or ""
    assert href.startswith("/audit/exports/audit-export-"), href
    with page.expect_download() as pending:
        link.click()
    saved = pending.value.path()
    assert asked.json()["audit_id"] in Path(saved).read_text(encoding="utf-8")
    page.context.close()

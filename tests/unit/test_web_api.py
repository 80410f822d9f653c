"""The HTTP layer around the assistant: the guard, the login form and the /v1 protocol.

Real guard, real user store (a cheap argon2 setting), real Qdrant Edge and audit log; the
model is scripted, so what is checked here is the protocol, not the model.
"""

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.auth import LoginLimiter, ProxyAuth, Role, UserStore
from appliance.auth.identity import SESSION_COOKIE, Identifier
from appliance.chat import ChatEngine
from appliance.metrics import Metrics
from appliance.web import login, openai_api, ops
from appliance.web.guard import AuthGuard, SessionOwners
from tests.support.fakes import ScriptedGenerator
from tests.support.rag import Harness

PASSWORD = "correct horse battery"


class Web:
    def __init__(self, root: Path, answer: str) -> None:
        self.harness = Harness(root, ScriptedGenerator(answer))
        self.users = UserStore(
            root / "users.sqlite3", hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        )
        self.users.add_user("ann", PASSWORD, ["everyone"], Role.USER)
        self.users.add_user("hugo", PASSWORD, ["everyone", "hr"], Role.USER)
        self.ann_key = self.users.create_key("ann")[1]
        self.hugo_key = self.users.create_key("hugo")[1]
        assistant = self.harness.assistant
        self.metrics = Metrics(lambda: {})
        engine = ChatEngine(assistant, self.metrics, top_k=3)
        app = FastAPI()
        app.include_router(
            ops.build_router(
                lambda: {"model_loaded": True, "store_open": True, "audit_writable": True},
                self.metrics,
            )
        )
        app.include_router(login.build_router(self.users, LoginLimiter(2, 60), 1, False))
        app.include_router(openai_api.build_router(engine))
        app.add_middleware(
            AuthGuard, identifier=Identifier(self.users, ProxyAuth(None, None, None, []))
        )
        self.client = TestClient(app, follow_redirects=False)

    def close(self) -> None:
        self.client.close()
        self.users.close()
        self.harness.close()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Web]:
    opened = Web(tmp_path, "The password is BLUEFALCON [1].")
    yield opened
    opened.close()


def chat(web: Web, key: str, content: str, **extra: object) -> dict:  # type: ignore[type-arg]
    response = web.client.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"messages": [{"role": "user", "content": content}], **extra},
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_every_route_but_health_and_login_needs_a_user(web: Web) -> None:
    assert web.client.get("/healthz").status_code == 200
    assert web.client.get("/login").status_code == 200
    for method, path in [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/metrics"),
        ("GET", "/anything/else"),
    ]:
        response = web.client.request(method, path)
        assert response.status_code == 401, path
        assert response.json()["error"]["type"] == "authentication_error"
    bogus = web.client.get("/v1/models", headers={"Authorization": "Bearer apl_0_nope"})
    assert bogus.status_code == 401
    forged = web.client.get("/v1/models", cookies={SESSION_COOKIE: "forged"})
    assert forged.status_code == 401


def test_a_browser_is_sent_to_the_login_page_and_every_response_is_hardened(web: Web) -> None:
    response = web.client.get("/ui/", headers={"Accept": "text/html"})
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fui%2F"
    csp = response.headers["content-security-policy"]
    assert "img-src 'self' data: blob:" in csp and "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"


def test_login_sets_a_strict_http_only_session_that_opens_the_api(web: Web) -> None:
    response = web.client.post(
        "/login", data={"username": "ann", "password": PASSWORD, "next": "//evil.example/x"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/"  # never off-site
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert web.client.get("/v1/models").status_code == 200
    web.client.get("/logout")
    assert web.client.get("/v1/models").status_code == 401


def test_failed_logins_are_limited_even_with_the_right_password_after(web: Web) -> None:
    for _ in range(2):
        wrong = web.client.post("/login", data={"username": "ann", "password": "nope-nope"})
        assert wrong.status_code == 401
        assert SESSION_COOKIE not in wrong.cookies
    locked = web.client.post("/login", data={"username": "ann", "password": PASSWORD})
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 0


def test_a_completion_carries_sources_audit_id_and_is_recorded(web: Web) -> None:
    body = chat(web, web.ann_key, "what is the guest wifi password?")
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "The password is BLUEFALCON [1]."
    assert body["sources"][0]["source"] == "/docs/wifi.txt"
    assert body["citations"] == [1]
    record = web.harness.audit.get(body["audit_id"])
    assert record is not None
    assert record.entry.user == "ann" and record.entry.channel == "api"


def test_the_key_owner_groups_filter_retrieval(web: Web) -> None:
    question = "what are the salary bands for engineers?"
    ann = chat(web, web.ann_key, question)
    assert all(s["source"] != "/docs/salaries.txt" for s in ann["sources"])
    hugo = chat(web, web.hugo_key, question)
    assert hugo["sources"][0]["source"] == "/docs/salaries.txt"


def test_a_keyword_only_hr_passage_reaches_hr_and_nobody_else_over_the_api(web: Web) -> None:
    question = "What does HRX-7731 apply to?"
    ann = chat(web, web.ann_key, question)
    assert all(s["source"] != "/docs/severance.txt" for s in ann.get("sources", []))
    hugo = chat(web, web.hugo_key, question)
    assert hugo["sources"][0]["source"] == "/docs/severance.txt"
    record = web.harness.audit.get(hugo["audit_id"])
    assert record is not None and record.entry.retrieval["mode"] == "hybrid"
    assert record.entry.retrieval["keyword_matches"][0][1] == "hrx-7731"


def test_streamed_deltas_add_up_to_the_recorded_answer(tmp_path: Path) -> None:
    # The scripted model repeats itself: the recorded answer is cut before the repetition,
    # and a streaming client must end up with exactly that text, not more.
    web = Web(tmp_path, "The password is BLUEFALCON [1]. The password is BLUEFALCON [1].")
    try:
        response = web.client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {web.ann_key}"},
            json={
                "stream": True,
                "messages": [{"role": "user", "content": "what is the guest wifi password?"}],
            },
        )
        assert response.status_code == 200
        events = [
            line[len("data: ") :]
            for line in response.text.splitlines()
            if line.startswith("data: ")
        ]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        last = chunks[-1]
        record = web.harness.audit.get(last["audit_id"])
        assert record is not None
        assert text == record.entry.answer == "The password is BLUEFALCON [1]."
        assert last["choices"][0]["finish_reason"] == "stop"
        assert last["sources"][0]["source"] == "/docs/wifi.txt"
    finally:
        web.close()


def test_an_unsupported_answer_is_never_streamed(tmp_path: Path) -> None:
    made_up = "The password is rotated by the facilities team every Tuesday [1]."
    web = Web(tmp_path, made_up)
    try:
        response = web.client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {web.ann_key}"},
            json={
                "stream": True,
                "messages": [{"role": "user", "content": "what is the guest wifi password?"}],
            },
        )
        events = [
            json.loads(line[len("data: ") :])
            for line in response.text.splitlines()
            if line.startswith("data: {")
        ]
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
        assert "facilities" not in text and "not supported" in text
        assert events[-1]["outcome"] == "unsupported"
        assert events[-1]["sentences"][0]["supported"] is False
        record = web.harness.audit.get(events[-1]["audit_id"])
        assert record is not None and record.entry.answer == made_up
    finally:
        web.close()


def test_a_stream_whose_start_cannot_be_recorded_sends_no_answer_text(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit log's write lock is taken by another process once the question is checked."""
    audit = web.harness.audit
    other = sqlite3.connect(audit.path, isolation_level=None, check_same_thread=False)
    audit._db.execute("PRAGMA busy_timeout = 200")
    check = audit.check_writable

    def checked_then_locked() -> None:
        check()
        other.execute("BEGIN IMMEDIATE")

    monkeypatch.setattr(audit, "check_writable", checked_then_locked)
    try:
        response = web.client.post(
            "/v1/chat/completions",
            headers={"Authorization": f"Bearer {web.ann_key}"},
            json={
                "stream": True,
                "messages": [{"role": "user", "content": "what is the guest wifi password?"}],
            },
        )
    finally:
        assert other.in_transaction  # the lock was held while the question was answered
        other.execute("ROLLBACK")
        other.close()
    assert response.status_code == 503, response.text
    assert "BLUEFALCON" not in response.text and "audit" in response.text


def test_a_streamed_answer_has_a_started_record_and_a_plain_one_has_none(web: Web) -> None:
    streamed = web.client.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {web.ann_key}"},
        json={
            "stream": True,
            "messages": [{"role": "user", "content": "what is the guest wifi password?"}],
        },
    )
    assert streamed.status_code == 200
    plain = chat(web, web.ann_key, "what is the guest wifi password?")
    records = web.harness.audit.query(with_completed_starts=True)
    assert [r.entry.outcome for r in records] == ["started", "answered", "answered"]
    assert records[1].entry.started_id == records[0].id
    assert records[2].id == plain["audit_id"] and records[2].entry.started_id is None


def test_a_follow_up_whose_rewrite_fails_is_recorded(web: Web) -> None:
    web.harness.generator.fail = RuntimeError("Requested tokens exceed context window")
    response = web.client.post(
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {web.ann_key}"},
        json={
            "messages": [
                {"role": "user", "content": "what is the guest wifi password?"},
                {"role": "assistant", "content": "The password is BLUEFALCON [1]."},
                {"role": "user", "content": "does it change?"},
            ]
        },
    )
    assert response.status_code == 503, response.text
    [record] = web.harness.audit.query()
    assert record.entry.outcome == "error" and record.entry.question == "does it change?"
    assert "rewriting the follow-up failed" in (record.entry.error or "")


def test_a_busy_model_is_a_429_and_a_bad_request_a_400(web: Web) -> None:
    headers = {"Authorization": f"Bearer {web.ann_key}"}
    with web.harness.gate.hold():  # someone else is answering; the queue holds nobody
        busy = web.client.post(
            "/v1/chat/completions",
            headers=headers,
            json={"messages": [{"role": "user", "content": "what is the guest wifi password?"}]},
        )
    assert busy.status_code == 429
    assert "busy" in busy.json()["error"]["message"]
    empty = web.client.post(
        "/v1/chat/completions",
        headers=headers,
        json={"messages": [{"role": "assistant", "content": "hi"}]},
    )
    assert empty.status_code == 400


def test_metrics_count_answers_by_channel_and_outcome(web: Web) -> None:
    chat(web, web.ann_key, "what is the guest wifi password?")
    text = web.client.get("/metrics", headers={"Authorization": f"Bearer {web.ann_key}"}).text
    assert 'appliance_questions_total{channel="api",outcome="answered"} 1.0' in text


def test_only_admins_reach_the_upload_route(web: Web) -> None:
    web.users.add_user("ada", PASSWORD, ["everyone"], Role.ADMIN)
    admin_key = web.users.create_key("ada")[1]
    user = web.client.post(
        "/ui/gradio_api/upload", headers={"Authorization": f"Bearer {web.ann_key}"}
    )
    assert user.status_code == 403
    admin = web.client.post(
        "/ui/gradio_api/upload", headers={"Authorization": f"Bearer {admin_key}"}
    )
    assert admin.status_code == 404  # passed the guard; this test app mounts no Gradio


def test_bad_passwords_for_a_made_up_name_do_not_lock_real_users_out(web: Web) -> None:
    """Behind a reverse proxy all users share one address: guessing there locks nobody real."""
    for n in range(5):
        web.client.post("/login", data={"username": f"made-up-{n}", "password": "nope-nope"})
    guessed = web.client.post("/login", data={"username": "made-up-9", "password": "nope-nope"})
    assert guessed.status_code == 429  # unknown names from this address are paused
    signed_in = web.client.post("/login", data={"username": "ann", "password": PASSWORD})
    assert signed_in.status_code == 303 and signed_in.cookies.get(SESSION_COOKIE)
    for _ in range(2):
        web.client.post("/login", data={"username": "ann", "password": "nope-nope"})
    locked = web.client.post("/login", data={"username": "ann", "password": PASSWORD})
    assert locked.status_code == 429  # the account itself still locks
    # While names are being guessed from this address, a wrong password for a real name is
    # answered like an unknown name: the pause does not tell which names exist.
    real = web.client.post("/login", data={"username": "hugo", "password": "nope-nope"})
    unknown = web.client.post("/login", data={"username": "made-up-8", "password": "nope-nope"})
    assert real.status_code == unknown.status_code == 429
    assert re.sub(r"[0-9]+", "N", real.text) == re.sub(r"[0-9]+", "N", unknown.text)
    hugo = web.client.post("/login", data={"username": "hugo", "password": PASSWORD})
    assert hugo.status_code == 303  # and only that account


def test_schema_errors_of_the_v1_api_are_400_in_the_openai_shape(web: Web) -> None:
    headers = {"Authorization": f"Bearer {web.ann_key}"}
    bodies: list[dict[str, object]] = [
        {},
        {"messages": "what is the guest wifi password?"},
        {"messages": [{"content": "no role"}]},
        {"messages": [{"role": "user", "content": 42}]},
        {"messages": [{"role": "user", "content": "hi"}], "stream": "sometimes"},
    ]
    for body in bodies:
        response = web.client.post("/v1/chat/completions", headers=headers, json=body)
        assert response.status_code == 400, (body, response.status_code)
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == 400, body
        assert "messages" in error["message"] or "stream" in error["message"], error
    broken = web.client.post(
        "/v1/chat/completions",
        headers={**headers, "content-type": "application/json"},
        content=b'{"messages": [',
    )
    assert broken.status_code == 400
    assert broken.json()["error"]["type"] == "invalid_request_error"


def test_sign_in_and_out_refuse_requests_from_another_origin(web: Web) -> None:
    form = {"username": "ann", "password": PASSWORD}
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/csrf.html"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "https://other.testserver"},
    ):
        refused = web.client.post("/login", data=form, headers=headers)
        assert refused.status_code == 403, headers
        assert SESSION_COOKIE not in refused.cookies
    for headers in (
        {"Origin": "http://testserver"},
        {"Referer": "http://testserver/login?next=%2Fui%2F"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "https://assistant.example.org"},
        {},
    ):
        web.client.cookies.clear()
        signed_in = web.client.post("/login", data=form, headers=headers)
        assert signed_in.status_code == 303, headers
    page = web.client.get("/login")
    assert page.headers["referrer-policy"] == "same-origin"  # so the form sends its Origin
    assert web.client.get("/logout", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert web.client.post("/logout", headers={"Origin": "https://evil.example"}).status_code == 403
    assert web.client.get("/v1/models").status_code == 200  # still signed in
    assert web.client.get("/logout", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 303
    assert web.client.get("/v1/models").status_code == 401


def test_every_gradio_upload_route_is_for_admins(web: Web) -> None:
    web.users.add_user("ada", PASSWORD, ["everyone"], Role.ADMIN)
    admin = {"Authorization": f"Bearer {web.users.create_key('ada')[1]}"}
    user = {"Authorization": f"Bearer {web.ann_key}"}
    for method, path in [
        ("POST", "/ui/gradio_api/process_recording"),
        ("POST", "/ui/gradio_api/upload/"),
        ("POST", "/ui/gradio_api/upload?upload_id=x"),
        ("GET", "/ui/gradio_api/upload_progress?upload_id=x"),
        ("POST", "/gradio_api/upload"),
    ]:
        assert web.client.request(method, path, headers=user).status_code == 403, path
        assert web.client.request(method, path, headers=admin).status_code == 404, path


def test_no_route_fetches_a_remote_url(web: Web) -> None:
    headers = {"Authorization": f"Bearer {web.hugo_key}"}
    for path in [
        "/ui/gradio_api/file=http://example.com/x",
        "/ui/gradio_api/file=https://example.com/x",
        "/ui/gradio_api/file/http://example.com/x",
        "/ui/gradio_api/file=%68ttp://example.com/x",
        "/ui/gradio_api/file=//example.com/x",
        "/ui/gradio_api/proxy=https://evil.hf.space/x",
    ]:
        response = web.client.get(path, headers=headers)
        assert response.status_code == 403, path
        assert "remote" in response.json()["error"]["message"]
    local = web.client.get("/ui/gradio_api/file=/tmp/x.txt", headers=headers)
    assert local.status_code == 404  # passed the guard; this test app mounts no Gradio


def test_nobody_can_push_another_users_session_binding_out(web: Web) -> None:
    ann = {"Authorization": f"Bearer {web.ann_key}"}
    hugo = {"Authorization": f"Bearer {web.hugo_key}"}
    assert web.client.get("/ui/gradio_api/heartbeat/hugos", headers=hugo).status_code == 404
    crowd = "&".join(f"session_hash=r{n}" for n in range(50))
    flood = web.client.get(f"/ui/gradio_api/queue/data?{crowd}", headers=ann)
    assert flood.status_code == 400  # one session per request, as Gradio reads it
    form = {**ann, "content-type": "application/x-www-form-urlencoded"}
    repeated = web.client.post(
        "/ui/gradio_api/component_server", headers=form, content="session_hash=a&session_hash=b"
    )
    assert repeated.status_code == 400
    single = web.client.post(
        "/ui/gradio_api/component_server", headers=form, content="session_hash=a&x=1"
    )
    assert single.status_code == 404
    owners = SessionOwners(limit=10, per_user=3)
    assert owners.claim("carols", "carol")
    for n in range(20):  # many sessions of one user: their own oldest go, not carol's
        assert owners.claim(f"dave-{n}", "dave")
    assert not owners.claim("carols", "dave") and owners.claim("carols", "carol")
    assert owners.claim("dave-0", "erin")  # forgotten by dave, so free again


def test_a_gradio_session_hash_is_bound_to_the_user_who_first_used_it(web: Web) -> None:
    ann = {"Authorization": f"Bearer {web.ann_key}"}
    hugo = {"Authorization": f"Bearer {web.hugo_key}"}
    session = "hugos-session"
    # Hugo opens the session; from then on only he passes the guard with it (404: no Gradio).
    assert web.client.get(f"/ui/gradio_api/heartbeat/{session}", headers=hugo).status_code == 404
    body = {"session_hash": session, "fn_index": 0, "data": []}
    attempts = [
        ("GET", f"/ui/gradio_api/queue/data?session_hash={session}", {}),
        ("GET", f"/ui/gradio_api/queue/data?session%5Fhash={session}", {}),
        ("GET", f"/ui/gradio_api/heartbeat/{session}", {}),
        ("GET", f"/ui/gradio_api/stream/{session}/r/1/playlist-file", {}),
        ("GET", f"/ui/gradio_api/call/chat/{session}", {}),
        ("POST", "/ui/gradio_api/queue/join", {"json": body}),
        ("POST", "/ui/gradio_api/call/respond", {"json": body}),
        ("POST", "/ui/gradio_api/cancel", {"json": body}),
        ("POST", "/ui/gradio_api/component_server", {"data": body}),
        ("POST", "/ui/gradio_api/component_server", {"files": {"x": ("x", b"x")}, "data": body}),
    ]
    for method, path, extra in attempts:
        assert web.client.request(method, path, headers=hugo, **extra).status_code == 404, path
        refused = web.client.request(method, path, headers=ann, **extra)
        assert refused.status_code == 403, (method, path)
        assert refused.json()["error"]["type"] == "permission_error"
    # Ann's own session, and a request naming hers and his at once (nothing of hers is bound).
    own = {"session_hash": "anns-session", "event_id": session}
    assert web.client.post("/ui/gradio_api/cancel", headers=ann, json=own).status_code == 403
    mine = web.client.post("/ui/gradio_api/cancel", headers=ann, json={"session_hash": "anns"})
    assert mine.status_code == 404
    assert web.client.get("/ui/gradio_api/heartbeat/anns", headers=hugo).status_code == 403

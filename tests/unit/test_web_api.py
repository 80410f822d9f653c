"""The HTTP layer around the assistant: the guard, the login form and the /v1 protocol.

Real guard, real user store (a cheap argon2 setting), real Qdrant Edge and audit log; the
model is scripted, so what is checked here is the protocol, not the model.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.auth import LoginLimiter, ProxyAuth, Role, UserStore
from appliance.conversation import FollowUpRewriter
from appliance.web import login, openai_api, ops
from appliance.web.chat import ChatEngine
from appliance.web.guard import AuthGuard
from appliance.web.identity import SESSION_COOKIE, Identifier
from appliance.web.metrics import Metrics
from tests.fakes import ScriptedGenerator
from tests.unit.test_rag import Harness

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
        engine = ChatEngine(
            assistant,
            FollowUpRewriter(assistant.gate, assistant.generator),
            self.metrics,
            top_k=3,
        )
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

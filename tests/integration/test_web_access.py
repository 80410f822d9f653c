"""Who may reach what on a real `appliance serve`: group isolation in answers and documents,
every route closed without a login, file routes closed to traversal, logins rate-limited."""

from __future__ import annotations

import re
import socket
from http.client import HTTPConnection
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from appliance.audit import AuditLog
from appliance.auth import Role, UserStore
from tests.integration.web_server import (
    CODEWORD,
    LOGIN_MAX_FAILURES,
    PASSWORD,
    WebServer,
    gradio_call,
)

pytestmark = pytest.mark.integration

SECRET_QUESTION = f"What is the budget of Project {CODEWORD}?"
# Text only the board minutes contain (the codeword itself is in the question).
SECRET_ONLY = ("41 million", "Contoso", "14 November")
SQLITE_HEADER = b"SQLite format 3"


def answer_json(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def names(sources: list[dict[str, Any]]) -> list[str]:
    return [s["source"].rsplit("/", 1)[-1] for s in sources]


# (a) group isolation


def stream_text(web_server: WebServer, key: str, question: str) -> str:
    """Everything a streamed answer sends: its deltas, then the final chunk with sources."""
    body = {"messages": [{"role": "user", "content": question}], "stream": True}
    with (
        web_server.client(key) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        text = response.read().decode()
    assert text.rstrip().endswith("data: [DONE]"), text[-300:]
    return text


def test_a_user_outside_the_group_gets_no_passage_and_no_text_of_a_secret_document(
    web_server: WebServer,
) -> None:
    secret_id = web_server.doc_id(web_server.secret_path)
    outsider = answer_json(web_server.ask(web_server.keys["bob"], SECRET_QUESTION))
    assert secret_id not in {s["doc_id"] for s in outsider["sources"]}
    assert "board-minutes.txt" not in names(outsider["sources"])
    text = outsider["choices"][0]["message"]["content"] + str(outsider["sources"])
    assert not [secret for secret in SECRET_ONLY if secret in text], text

    streamed = stream_text(web_server, web_server.keys["bob"], SECRET_QUESTION)
    assert "board-minutes.txt" not in streamed
    assert not [secret for secret in SECRET_ONLY if secret in streamed], streamed

    insider = answer_json(web_server.ask(web_server.keys["dana"], SECRET_QUESTION))
    assert names(insider["sources"])[0] == "board-minutes.txt"
    assert insider["sources"][0]["doc_id"] == secret_id
    assert "41 million" in insider["sources"][0]["text"]


def test_the_original_of_a_secret_document_opens_only_for_its_group(
    web_server: WebServer,
) -> None:
    secret = f"/documents/{web_server.doc_id(web_server.secret_path)}"
    handbook = f"/documents/{web_server.doc_id(web_server.sample('employee-handbook.md'))}"
    with web_server.as_user("bob") as bob, web_server.client(web_server.keys["bob"]) as bob_key:
        for client in (bob, bob_key):
            refused = client.get(secret)
            assert refused.status_code == 404, refused.text
            assert CODEWORD not in refused.text
            opened = client.get(handbook)
            assert opened.status_code == 200 and "28 days of paid holiday" in opened.text
    with web_server.as_user("dana") as dana:
        opened = dana.get(secret)
        assert opened.status_code == 200, opened.text
        assert f"Project {CODEWORD}" in opened.text
        assert "sandbox" in opened.headers["content-security-policy"]


def test_ui_handlers_of_the_admin_and_audit_pages_refuse_a_plain_user(
    web_server: WebServer,
) -> None:
    """Hiding a tab is not access control: the handlers behind it check the role again."""
    filters = ["", "", "", "", "", False]
    calls: list[tuple[str, list[Any]]] = [
        ("run_search", filters),
        ("show", ["any-record-id"]),
        ("as_csv", filters),
        ("as_jsonl", filters),
        ("chain_state", []),
        ("listing", []),
        ("upload", [None, "everyone"]),
        ("remove", [None]),
    ]
    with web_server.as_user("bob") as bob:
        for api_name, data in calls:
            kind, message = gradio_call(bob, api_name, data)
            assert kind == "error", (api_name, message)
            assert "not available to your role" in str(message), (api_name, message)
    with web_server.as_user("carol") as carol:
        kind, state = gradio_call(carol, "chain_state", [])
        assert kind == "complete" and "Chain verified" in state[0]
    with web_server.as_user("alice") as alice:
        kind, listing = gradio_call(alice, "listing", [])
        assert kind == "complete"
        assert str(web_server.secret_path) in str(listing[0])  # still indexed


# (b) nothing is reachable without a login


def closed_routes(web_server: WebServer) -> list[tuple[str, str, dict[str, Any]]]:
    handbook = web_server.sample("employee-handbook.md")
    return [
        ("GET", "/", {}),
        ("GET", "/ui", {}),
        ("GET", "/ui/", {}),
        ("GET", "/ui/config", {}),
        ("GET", "/ui/gradio_api/info", {}),
        ("GET", "/ui/gradio_api/startup-events", {}),
        ("GET", "/ui/gradio_api/heartbeat/abc", {}),
        ("POST", "/ui/gradio_api/upload", {"files": {"files": ("x.txt", b"MARKER-UNAUTH")}}),
        (
            "POST",
            "/ui/gradio_api/queue/join",
            {"json": {"data": ["", False], "fn_index": 13, "session_hash": "abc"}},
        ),
        ("GET", "/ui/gradio_api/queue/data?session_hash=abc", {}),
        ("POST", "/ui/gradio_api/call/chain_state", {"json": {"data": []}}),
        ("POST", "/ui/gradio_api/run/chain_state", {"json": {"data": []}}),
        ("GET", "/ui/gradio_api/file=/etc/passwd", {}),
        ("GET", "/ui/file=/etc/passwd", {}),
        ("GET", f"/ui/gradio_api/file={handbook}", {}),
        ("GET", "/ui/assets/index.js", {}),
        ("GET", "/ui/theme.css", {}),
        ("GET", "/ui/manifest.json", {}),
        ("GET", "/v1/models", {}),
        (
            "POST",
            "/v1/chat/completions",
            {"json": {"messages": [{"role": "user", "content": "How many days of holiday?"}]}},
        ),
        ("GET", "/metrics", {}),
        ("GET", f"/documents/{web_server.doc_id(handbook)}", {}),
        ("GET", f"/documents/{web_server.doc_id(web_server.secret_path)}", {}),
        ("GET", "/healthz/", {}),
        ("GET", "/login/../ui/", {}),
    ]


def assert_refused(response: httpx.Response, what: str) -> None:
    if response.status_code == 303:
        assert response.headers["location"].startswith("/login?next="), what
        assert not response.content, what
        return
    assert response.status_code in (401, 403), (what, response.status_code, response.text[:200])
    assert "authentication_error" in response.text or not response.content, what
    for leaked in ("28 days", "root:", CODEWORD, "appliance_questions", "named_endpoints"):
        assert leaked not in response.text, (what, leaked)


CREDENTIALS = {
    "none": {},
    "bogus key": {"authorization": "Bearer sk-not-a-real-key-0123456789abcdef"},
    "bearer without key": {"authorization": "Bearer"},
    "basic auth": {"authorization": "Basic Ym9iOmNvcnJlY3QgaG9yc2UgYmF0dGVyeSBzdGFwbGU="},
    "forged cookie": {"cookie": "appliance_session=bxwMRjAHpcPlfBmzjRkszrTUWLLKaIAnXIl9HrAfabA"},
    "empty cookie": {"cookie": "appliance_session="},
    "bogus proxy headers": {"x-forwarded-user": "alice", "x-remote-user": "alice"},
}


def test_every_route_refuses_requests_without_valid_credentials(web_server: WebServer) -> None:
    with web_server.client(follow_redirects=False) as http:
        for label, headers in CREDENTIALS.items():
            for accept in ("application/json", "text/html"):
                for method, path, extra in closed_routes(web_server):
                    response = http.request(
                        method, path, headers={**headers, "accept": accept}, **extra
                    )
                    assert_refused(response, f"{method} {path} ({label}, {accept})")
    uploads = web_server.data_dir / "tmp"
    leaked = [p for p in uploads.rglob("*") if p.is_file() and b"MARKER-UNAUTH" in p.read_bytes()]
    assert leaked == []


def test_a_bogus_key_is_refused_even_next_to_a_valid_session(web_server: WebServer) -> None:
    cookie = web_server.session_cookie("bob")
    with web_server.client(follow_redirects=False) as http:
        response = http.get(
            "/v1/models",
            headers={"authorization": "Bearer sk-bogus", "cookie": f"appliance_session={cookie}"},
        )
        assert response.status_code == 401
        assert http.get("/v1/models", cookies={"appliance_session": cookie}).status_code == 200


def test_the_same_routes_open_with_a_login_so_the_refusals_are_the_guards(
    web_server: WebServer,
) -> None:
    handbook = web_server.doc_id(web_server.sample("employee-handbook.md"))
    with web_server.as_user("bob") as bob:
        page = bob.get("/ui/", headers={"accept": "text/html"})
        assert page.status_code == 200
        asset = re.search(r'src="\./(assets/[^"]+\.js)"', page.text)
        assert asset, page.text[:500]
        for path in (
            "/ui/config",
            "/ui/gradio_api/info",
            f"/ui/{asset.group(1)}",
            "/v1/models",
            "/metrics",
            f"/documents/{handbook}",
        ):
            assert bob.get(path).status_code == 200, path
        with web_server.client(follow_redirects=False) as anonymous:
            assert_refused(anonymous.get(f"/ui/{asset.group(1)}"), "asset")


def test_health_and_login_are_open_and_say_nothing_secret(web_server: WebServer) -> None:
    with web_server.client(follow_redirects=False) as http:
        health = http.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        login = http.get("/login")
        assert login.status_code == 200 and 'id="username"' in login.text
        for response in (health, login):
            assert CODEWORD not in response.text and "28 days" not in response.text
            assert response.headers["x-frame-options"] == "DENY"
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_a_websocket_without_a_login_is_refused(web_server: WebServer) -> None:
    host, port = web_server.url.removeprefix("http://").split(":")
    handshake = (
        "GET /ui/gradio_api/queue/join HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(handshake.encode())
        reply = sock.recv(4096).decode("latin-1")
    status = reply.split("\r\n", 1)[0]
    assert " 101 " not in status and re.search(r" 40[13] ", status), reply


def test_a_removed_user_is_out_at_once(web_server: WebServer) -> None:
    cookie = web_server.session_cookie("frank")
    with UserStore(web_server.data_dir / "users.sqlite3") as users:
        key = users.create_key("frank")[1]
    with web_server.client(follow_redirects=False) as http:
        assert http.get("/v1/models", cookies={"appliance_session": cookie}).status_code == 200
        assert http.get("/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 200
        with UserStore(web_server.data_dir / "users.sqlite3") as users:
            users.remove_user("frank")
        assert http.get("/v1/models", cookies={"appliance_session": cookie}).status_code == 401
        assert http.get("/v1/models", headers={"authorization": f"Bearer {key}"}).status_code == 401
    # From its own address: a failed login counts against the address.
    login = login_from(web_server, "127.0.0.80", "frank", PASSWORD)
    assert login.status_code == 401 and "appliance_session" not in login.cookies


def test_logout_ends_the_session_on_the_server(web_server: WebServer) -> None:
    cookie = web_server.session_cookie("bob")
    with web_server.client(follow_redirects=False) as http:
        jar = {"appliance_session": cookie}
        assert http.get("/v1/models", cookies=jar).status_code == 200
        assert http.post("/logout", cookies=jar).status_code == 303
        http.cookies.clear()
        assert http.get("/v1/models", cookies=jar).status_code == 401


# (c) file routes and traversal, logged in


def raw_get(web_server: WebServer, path: str, cookie: str) -> tuple[int, bytes]:
    """The path exactly as written: no client-side normalising of '..' or escapes."""
    host, port = web_server.url.removeprefix("http://").split(":")
    connection = HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.putheader("Cookie", f"appliance_session={cookie}")
        connection.putheader("Accept", "*/*")
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_file_routes_serve_no_file_outside_what_the_user_may_open(
    web_server: WebServer,
) -> None:
    cookie = web_server.session_cookie("bob")
    data = web_server.data_dir
    private_files = [
        "/etc/passwd",
        str(data / "users.sqlite3"),
        str(data / "audit.sqlite3"),
        str(data / "manifest-documents.sqlite3"),
        str(web_server.secret_path),
    ]
    paths = [
        "/documents/..%2F..%2Fetc%2Fpasswd",
        "/documents/%2e%2e/%2e%2e/etc/passwd",
        "/documents/../../etc/passwd",
        "/documents/..%252F..%252Fetc%252Fpasswd",
        "/documents/%2Fetc%2Fpasswd",
        f"/documents/{'0' * 64}/../../etc/passwd",
        "/ui/gradio_api/file=..%2F..%2Fetc%2Fpasswd",
        "/ui/gradio_api/file=%2Fetc%2Fpasswd",
        "/ui/gradio_api/file=../../../../../../etc/passwd",
        "/ui/gradio_api/file=data/users.sqlite3",
        "/ui/gradio_api/file=../data/audit.sqlite3",
        f"/ui/gradio_api/file={data}/tmp/gradio/../../users.sqlite3",
        f"/ui/gradio_api/file={data}/tmp/gradio/..%2F..%2Faudit.sqlite3",
        "/ui/static/../../../../../../etc/passwd",
        "/ui/assets/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/ui/assets/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    ]
    for target in private_files:
        paths += [f"/ui/gradio_api/file={target}", f"/ui/file={target}", f"/ui/file/{target}"]
    for path in paths:
        status, body = raw_get(web_server, path, cookie)
        assert status >= 400, (path, status, body[:200])
        assert b"root:" not in body and SQLITE_HEADER not in body, path
        assert CODEWORD.encode() not in body, path


# (d) login rate limit


def login_from(web_server: WebServer, address: str, user: str, password: str) -> httpx.Response:
    """A login POSTed from another loopback address, so its failures lock only that address."""
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(base_url=web_server.url, transport=transport, timeout=30) as http:
        return http.post("/login", data={"username": user, "password": password})


def test_repeated_wrong_passwords_pause_logins_for_the_user_not_the_address(
    web_server: WebServer,
) -> None:
    attacker = "127.0.0.77"
    for _ in range(LOGIN_MAX_FAILURES):
        wrong = login_from(web_server, attacker, "mallory", "not the password at all")
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    locked = login_from(web_server, attacker, "mallory", PASSWORD)
    assert locked.status_code == 429, locked.text
    assert int(locked.headers["retry-after"]) > 0
    assert "appliance_session" not in locked.cookies
    # The user is paused from any address, under any spelling.
    elsewhere = login_from(web_server, "127.0.0.78", "mallory", PASSWORD)
    assert elsewhere.status_code == 429
    assert login_from(web_server, "127.0.0.78", " MALLORY ", PASSWORD).status_code == 429
    # The address is not: behind a reverse proxy it is every user's.
    other_user = login_from(web_server, attacker, "carol", PASSWORD)
    assert other_user.status_code == 303 and other_user.cookies.get("appliance_session")
    # Made-up names are paused per address, whatever forwarding headers claim, and real
    # users at that address still sign in.
    for n in range(LOGIN_MAX_FAILURES):
        assert login_from(web_server, attacker, f"nobody{n}", "guess").status_code == 401
    transport = httpx.HTTPTransport(local_address=attacker)
    with httpx.Client(base_url=web_server.url, transport=transport, timeout=30) as http:
        spoofed = http.post(
            "/login",
            data={"username": "nobody-else", "password": "guess"},
            headers={"x-forwarded-for": "10.1.2.3", "x-real-ip": "10.1.2.3"},
        )
    assert spoofed.status_code == 429
    fine = login_from(web_server, attacker, "carol", PASSWORD)
    assert fine.status_code == 303 and fine.cookies.get("appliance_session")


# (e) files passed through the UI's own handlers


def test_the_upload_handler_takes_only_files_uploaded_through_gradio(
    web_server: WebServer,
) -> None:
    """A file input names a path: a client may name any file on the server instead of one it
    uploaded. Gradio refuses such paths only for apps started with `launch()`; mounted with
    `mount_gradio_app` the app must turn that check on, and the handler must not trust the path."""
    server_only = web_server.root / "server-only" / "deploy-notes.txt"
    server_only.parent.mkdir(exist_ok=True)
    server_only.write_text(
        "Deployment notes: the backup tapes are kept in vault WALRUS-7781.\n", encoding="utf-8"
    )
    forged = {
        "path": str(server_only),
        "orig_name": "deploy-notes.txt",
        "meta": {"_type": "gradio.FileData"},
    }
    with web_server.as_user("alice") as alice:
        kind, result = gradio_call(alice, "upload", [[forged], "everyone"])
        listing = gradio_call(alice, "listing", [])[1]
    ingested = [row[0] for row in listing[0]["data"] if row[0].endswith("deploy-notes.txt")]
    assert kind == "error" and ingested == [], (
        f"the server ingested {server_only}, which nobody uploaded, for everyone: "
        f"{result[0] if kind == 'complete' else result}"
    )


def test_an_audit_export_is_not_readable_by_a_plain_user(web_server: WebServer) -> None:
    """The export holds every user's questions and answers (board ones included)."""
    answer_json(web_server.ask(web_server.keys["dana"], SECRET_QUESTION))
    with web_server.as_user("carol") as carol:
        kind, files = gradio_call(carol, "as_csv", ["dana", "", "", "", "", False])
        assert kind == "complete", files
        url = httpx.URL(export_href(files[0]))
        exported = carol.get(url.raw_path.decode())
        assert exported.status_code == 200 and "41 million" in exported.text
    with web_server.client(follow_redirects=False) as anonymous:
        assert_refused(anonymous.get(url.raw_path.decode()), "export, anonymous")
    with web_server.as_user("bob") as bob:
        response = bob.get(url.raw_path.decode())
    assert response.status_code in (403, 404), (
        f"GET {url.raw_path.decode()} as bob (role user): {response.status_code} "
        f"{response.text[:200]!r}"
    )
    assert "41 million" not in response.text


def export_href(link_html: str) -> str:
    """The download link the audit tab shows for an export."""
    found = re.search(r'href="([^"]+)"', link_html)
    assert found, link_html
    return found.group(1)


# (f) a Gradio session belongs to the user who opened it


def fn_index(http: httpx.Client, api_name: str) -> int:
    config = http.get("/ui/config")
    assert config.status_code == 200, config.text[:200]
    for dependency in config.json()["dependencies"]:
        if dependency.get("api_name") == api_name:
            return int(dependency["id"])
    raise AssertionError(f"no UI event named {api_name}")


def stream_status(http: httpx.Client, method: str, path: str, **kwargs: Any) -> int:
    """The status of a route that may stream for ever: only its head is read."""
    with http.stream(method, path, **kwargs) as response:
        return response.status_code


def test_a_gradio_session_is_refused_to_every_other_user(web_server: WebServer) -> None:
    """An hr answer once reached a user outside hr who learnt the session hash (it travels in
    URLs): every route keyed by a session hash or event id now answers only its owner."""
    session = "victimsession01"
    with web_server.as_user("carol") as carol, web_server.as_user("bob") as bob:
        chain = fn_index(carol, "chain_state")
        joined = carol.post(
            "/ui/gradio_api/queue/join",
            json={"data": [], "fn_index": chain, "session_hash": session, "trigger_id": None},
        )
        assert joined.status_code == 200, joined.text
        event_id = joined.json()["event_id"]
        body = {"data": [], "fn_index": chain, "session_hash": session, "event_id": event_id}
        attempts: list[tuple[str, str, dict[str, Any]]] = [
            ("GET", f"/ui/gradio_api/queue/data?session_hash={session}", {}),
            ("GET", f"/ui/gradio_api/queue/data?session_hash=bob1&session_hash={session}", {}),
            ("POST", "/ui/gradio_api/queue/join", {"json": body}),
            ("POST", "/ui/gradio_api/call/chain_state", {"json": body}),
            ("POST", "/ui/gradio_api/call/v2/chain_state", {"json": {"session_hash": session}}),
            ("POST", "/ui/gradio_api/run/chain_state", {"json": body}),
            ("POST", "/ui/gradio_api/api/chain_state", {"json": body}),
            ("GET", f"/ui/gradio_api/call/chain_state/{event_id}", {}),
            ("GET", f"/ui/gradio_api/call/chain_state/{session}", {}),
            ("POST", "/ui/gradio_api/cancel", {"json": body}),
            ("POST", "/ui/gradio_api/cancel", {"json": {**body, "session_hash": "bob1"}}),
            ("POST", f"/ui/gradio_api/stream/{event_id}", {"json": body}),
            ("POST", f"/ui/gradio_api/stream/{event_id}/close", {}),
            ("GET", f"/ui/gradio_api/heartbeat/{session}", {}),
            ("GET", f"/ui/gradio_api/deep_link?session_hash={session}", {}),
            ("GET", f"/ui/gradio_api/stream/{session}/run/1/playlist.m3u8", {}),
            (
                "POST",
                "/ui/gradio_api/component_server",
                {"json": {"session_hash": session, "component_id": 1, "fn_name": "x", "data": 1}},
            ),
            (
                "POST",
                "/ui/gradio_api/component_server",
                {"data": {"session_hash": session, "component_id": "1", "fn_name": "x"}},
            ),
        ]
        for method, path, extra in attempts:
            status = stream_status(bob, method, path, **extra)
            # Two session hashes at once is no request Gradio makes: refused as malformed.
            expected = 400 if path.count("session_hash=") > 1 else 403
            assert status == expected, (method, path, status)
        # The owner still gets the answer, which nobody else has taken from the stream.
        answer = ""
        with carol.stream("GET", f"/ui/gradio_api/queue/data?session_hash={session}") as stream:
            assert stream.status_code == 200
            for line in stream.iter_lines():
                if "process_completed" in line:
                    answer = line
                    break
        assert "Chain verified" in answer, answer
        # Bob's own session works as before.
        assert stream_status(bob, "GET", "/ui/gradio_api/queue/data?session_hash=bob1") == 200


# (g) uploads, remote fetches, exports and cross-site requests


def test_every_gradio_upload_route_is_for_admins_only(web_server: WebServer) -> None:
    wav: dict[str, Any] = {"files": {"data": ("rec.wav", b"RIFF0000WAVEfmt MARKER-USER-RECORDING")}}
    routes = [
        ("POST", "/ui/gradio_api/process_recording", wav),
        ("POST", "/ui/gradio_api/upload", {"files": {"files": ("x.txt", b"MARKER-USER")}}),
        ("POST", "/ui/gradio_api/upload/", {"files": {"files": ("x.txt", b"MARKER-USER")}}),
        ("POST", "/ui/gradio_api/upload?upload_id=abc", {"files": {"files": ("x", b"M")}}),
        ("GET", "/ui/gradio_api/upload_progress?upload_id=abc", {}),
    ]
    with web_server.as_user("bob") as bob, web_server.as_user("carol") as carol:
        for method, path, extra in routes:
            for who, http in (("bob", bob), ("carol", carol)):
                response = http.request(method, path, **extra)
                assert response.status_code == 403, (who, path, response.status_code)
    uploads = web_server.data_dir / "tmp"
    leaked = [p for p in uploads.rglob("*") if p.is_file() and b"MARKER-USER" in p.read_bytes()]
    assert leaked == []
    with web_server.as_user("alice") as alice:
        response = alice.post("/ui/gradio_api/process_recording", **wav)
        assert response.status_code != 403


def test_gradio_fetches_no_remote_url_for_anyone(web_server: WebServer) -> None:
    paths = [
        "/ui/gradio_api/file=http://example.com/index.html",
        "/ui/gradio_api/file=https://example.com/index.html",
        "/ui/gradio_api/file=HTTP://example.com/index.html",
        "/ui/gradio_api/file/http://example.com/index.html",
        "/ui/gradio_api/file=http%3A%2F%2Fexample.com%2Findex.html",
        "/ui/gradio_api/proxy=https://evil.hf.space/file=x",
        "/ui/gradio_api/proxy=http://127.0.0.1:1/",
    ]
    with web_server.as_user("alice") as alice:
        for path in paths:
            for method in ("GET", "HEAD"):
                response = alice.request(method, path)
                assert response.status_code in (403, 404), (method, path, response.status_code)
                if method == "GET":
                    assert "fetches no remote URLs" in response.text, (path, response.text)


def test_an_audit_export_is_served_only_by_the_auditors_route(web_server: WebServer) -> None:
    """A plain user and an admin once fetched an export through Gradio's file routes."""
    with web_server.as_user("carol") as carol:
        kind, link = gradio_call(carol, "as_jsonl", ["", "", "", "", "", False])
        assert kind == "complete", link
        href = export_href(link[0])
        assert href.startswith("/audit/exports/audit-export-"), href
        assert carol.get(href).status_code == 200
    name = href.rsplit("/", 1)[-1]
    exported = next(web_server.data_dir.rglob(name))
    assert oct(exported.stat().st_mode & 0o777) == "0o600"
    gradio_routes = [
        f"/ui/gradio_api/file={exported}",
        f"/ui/gradio_api/file/{exported}",
        f"/ui/gradio_api/file={quote(str(exported))}",
    ]
    for user in ("bob", "alice", "carol"):
        with web_server.as_user(user) as http:
            for path in gradio_routes:
                response = http.get(path)
                assert response.status_code in (403, 404), (user, path, response.status_code)
                assert b'"question"' not in response.content, (user, path)
            if user != "carol":
                refused = http.get(href)
                assert refused.status_code == 403, (user, refused.status_code)
    with web_server.as_user("carol") as carol:
        for bogus in ("../users.sqlite3", "audit-export-x.csv", "%2e%2e%2fusers.sqlite3"):
            assert carol.get(f"/audit/exports/{bogus}").status_code == 404


def test_sign_in_and_out_refuse_another_origin(web_server: WebServer) -> None:
    form = {"username": "bob", "password": PASSWORD}
    foreign: list[dict[str, str]] = [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"referer": "https://evil.example/login-csrf.html"},
        {"sec-fetch-site": "cross-site", "origin": "https://evil.example"},
        {"sec-fetch-site": "same-site"},
    ]
    with web_server.client(follow_redirects=False) as http:
        for headers in foreign:
            response = http.post("/login", data=form, headers=headers)
            assert response.status_code == 403, (headers, response.status_code)
            assert "appliance_session" not in response.cookies, headers
        same = http.post("/login", data=form, headers={"origin": web_server.url})
        assert same.status_code == 303 and same.cookies.get("appliance_session")
        jar = {"appliance_session": same.cookies["appliance_session"]}
        http.cookies.clear()
        logout = http.post("/logout", cookies=jar, headers={"origin": "https://evil.example"})
        assert logout.status_code == 403
        http.cookies.clear()
        assert http.get("/v1/models", cookies=jar).status_code == 200  # still signed in


def test_gradio_echoes_no_foreign_origin_with_credentials(web_server: WebServer) -> None:
    """Gradio's own CORS middleware allows any Origin whenever the Host is not localhost."""
    evil = "https://evil.example"
    host = {"host": "assistant.example.org", "origin": evil}
    with web_server.as_user("bob") as bob:
        for path in ("/ui/config", "/ui/gradio_api/info", "/v1/models"):
            response = bob.get(path, headers=host)
            assert response.status_code == 200, (path, response.status_code)
            assert response.headers.get("access-control-allow-origin") != evil, path
            assert "access-control-allow-credentials" not in response.headers, path
        preflight = bob.options(
            "/ui/gradio_api/queue/join",
            headers={**host, "access-control-request-method": "POST"},
        )
        assert preflight.headers.get("access-control-allow-origin") != evil


# (f) refusals leave a trace for the auditor


def denied_records(web_server: WebServer, user: str) -> list[tuple[str, str]]:
    with AuditLog(web_server.data_dir / "audit.sqlite3", read_only=True) as log:
        records = log.query(user=user)
    return [
        (r.entry.retrieval["action"], r.entry.retrieval["target"])
        for r in records
        if r.entry.outcome == "denied"
    ]


def test_refused_actions_and_lockouts_are_in_the_audit_log(web_server: WebServer) -> None:
    secret_id = web_server.doc_id(web_server.secret_path)
    with UserStore(web_server.data_dir / "users.sqlite3") as users:
        # A user of their own: each signed-in user has a budget of denial records a minute.
        users.add_user("frank-denied", PASSWORD, ["everyone"], Role.USER)
    with web_server.as_user("frank-denied") as bob:
        upload = bob.post("/ui/gradio_api/upload", files={"files": ("x.txt", b"bob was here")})
        assert upload.status_code == 403
        assert bob.get(f"/documents/{secret_id}").status_code == 404
        assert bob.get("/audit/exports/audit-export-x.csv").status_code == 403
        kind, _ = gradio_call(bob, "remove", [None])
        assert kind == "error"
    with UserStore(web_server.data_dir / "users.sqlite3") as users:
        users.add_user("erin-denied", PASSWORD, ["everyone"], Role.USER)
    attacker = "127.0.0.79"
    for _ in range(LOGIN_MAX_FAILURES):
        assert login_from(web_server, attacker, "erin-denied", "guess").status_code == 401
    assert login_from(web_server, attacker, "erin-denied", PASSWORD).status_code == 429

    denied = denied_records(web_server, "frank-denied")
    assert ("POST request", "/ui/gradio_api/upload") in denied
    assert ("open a document", f"{secret_id} ({web_server.secret_path})") in denied
    assert ("download an audit export", "audit-export-x.csv") in denied
    assert ("documents: delete", "the documents page") in denied
    assert ("sign in", f"from {attacker}") in denied_records(web_server, "erin-denied")
    key = web_server.data_dir.parent / "audit-key" / "audit.key"  # as cli_env sets it
    with AuditLog(web_server.data_dir / "audit.sqlite3", read_only=True, key_file=key) as log:
        assert log.verify().ok

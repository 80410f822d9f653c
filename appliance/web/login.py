"""The login form: a plain page of our own, so nothing of Gradio is reachable before login.

Signing in and out change state: both refuse a request that a browser says came from
another site or origin (Sec-Fetch-Site, Origin, Referer), so no page elsewhere can sign a
visitor in to an account of its choosing, or out.
"""

from __future__ import annotations

import html
import threading
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from appliance.audit.denials import Denials
from appliance.auth import LoginLimiter, UserStore
from appliance.auth.identity import SESSION_COOKIE
from appliance.auth.ratelimit import login_keys, unknown_names_key

HOME = "/ui/"
CONCURRENT_LOGINS = 4
LOGIN_WAIT_S = 10

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Private assistant</title>
<style>
body {{ font-family: system-ui, sans-serif; background: #f4f5f7; display: flex;
       justify-content: center; padding-top: 12vh; margin: 0; }}
form {{ background: #fff; padding: 2rem 2.5rem; border-radius: 8px; width: 20rem;
        box-shadow: 0 1px 4px rgba(0,0,0,.15); }}
h1 {{ font-size: 1.3rem; margin: 0 0 1.2rem; }}
label {{ display: block; margin: .8rem 0 .3rem; font-size: .9rem; }}
input[type=text], input[type=password] {{ width: 100%; padding: .5rem; box-sizing: border-box;
        border: 1px solid #bbb; border-radius: 4px; font-size: 1rem; }}
button {{ margin-top: 1.2rem; width: 100%; padding: .6rem; font-size: 1rem; border: 0;
          border-radius: 4px; background: #2f5bd3; color: #fff; cursor: pointer; }}
.error {{ color: #a40000; font-size: .9rem; margin: .5rem 0 0; }}
</style></head>
<body><form method="post" action="/login">
<h1>Private assistant</h1>
{error}
<label for="username">User name</label>
<input id="username" name="username" type="text" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<input type="hidden" name="next" value="{next}">
<button type="submit">Sign in</button>
</form></body></html>
"""


def safe_next(target: str | None) -> str:
    """Only a path on this server: never an absolute or protocol-relative URL."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return HOME
    parts = urlsplit(target)
    return HOME if parts.scheme or parts.netloc else target


def login_page(next_path: str, error: str | None = None, status: int = 200) -> HTMLResponse:
    shown = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    body = PAGE.format(error=shown, next=html.escape(safe_next(next_path), quote=True))
    # "same-origin", not "no-referrer": the form's POST must carry its real Origin.
    headers = {"cache-control": "no-store", "referrer-policy": "same-origin"}
    return HTMLResponse(body, status_code=status, headers=headers)


def from_this_site(request: Request) -> bool:
    """False when the browser says the request came from another origin. Clients that are
    not browsers send none of these headers, and cannot carry a victim's cookies anyway."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:  # set by the browser itself, whatever Host a proxy passes on
        return fetch_site in ("same-origin", "none")
    host = request.headers.get("host", "").lower()
    origin = request.headers.get("origin")
    if origin is not None:
        return origin != "null" and urlsplit(origin).netloc.lower() == host
    referer = request.headers.get("referer")
    return referer is None or urlsplit(referer).netloc.lower() == host


def paused(next: str, wait: float) -> Response:
    response = login_page(next, f"Too many failed sign-ins. Try again in {int(wait) + 1} s.", 429)
    response.headers["retry-after"] = str(int(wait) + 1)
    return response


def cross_site_refusal() -> Response:
    return PlainTextResponse(
        "Refused: this sign-in or sign-out came from another site. Open the sign-in page "
        "of the appliance itself and try again.",
        status_code=403,
        headers={"cache-control": "no-store"},
    )


def build_router(
    users: UserStore,
    limiter: LoginLimiter,
    session_hours: float,
    secure_cookies: bool,
    denials: Denials | None = None,
) -> APIRouter:
    router = APIRouter()
    sign_in = SignIn(users, limiter, session_hours, secure_cookies, denials)

    @router.get("/login", response_class=HTMLResponse)
    def show(next: str = HOME) -> HTMLResponse:
        return login_page(next)

    @router.post("/login", response_model=None)
    def submit(
        request: Request,
        username: str = Form(..., max_length=64),
        password: str = Form(..., max_length=1024),
        next: str = Form(HOME),
    ) -> Response:
        return sign_in.submit(request, username, password, next)

    @router.api_route("/logout", methods=["GET", "POST"], response_model=None)
    def logout(request: Request) -> Response:
        return sign_out(users, request)

    return router


class SignIn:
    """The checks of one sign-in, in order: same site, not locked out, a password check slot,
    the password; then the session cookie."""

    def __init__(
        self,
        users: UserStore,
        limiter: LoginLimiter,
        session_hours: float,
        secure_cookies: bool,
        denials: Denials | None,
    ) -> None:
        self._users = users
        self._limiter = limiter
        self._session_hours = session_hours
        self._secure_cookies = secure_cookies
        self._denials = denials
        # Each password check costs argon2's memory: a flood of logins must not exhaust it.
        self._checks = threading.BoundedSemaphore(CONCURRENT_LOGINS)

    def submit(self, request: Request, username: str, password: str, next: str) -> Response:
        client = request.client.host if request.client else "unknown"
        if not from_this_site(request):
            self._denied(username, client, "the request came from another site")
            return cross_site_refusal()
        keys = login_keys(username, client, self._users.get(username.strip()) is not None)
        wait = self._limiter.retry_after(keys[0])
        if wait > 0:
            self._denied(username, client, "locked out after repeated failed sign-ins")
            return paused(next, wait)
        # Guessing names from this address is paused; so that the pause tells nothing about
        # which names exist, a wrong password for a real one gets the same answer, and the
        # right password still signs its user in.
        guessing = self._limiter.retry_after(unknown_names_key(client))
        if not self._checks.acquire(timeout=LOGIN_WAIT_S):
            return login_page(next, "The server is busy signing others in. Try again.", 503)
        try:
            user = self._users.authenticate(username.strip(), password)  # as slow for any name
        finally:
            self._checks.release()
        if user is None:
            self._limiter.failed(*keys)
            if guessing > 0:
                self._denied(username, client, "repeated sign-ins with unknown names")
                return paused(next, guessing)
            return login_page(next, "Wrong user name or password.", 401)
        self._limiter.succeeded(keys[0])  # not the address: one good account must not reset it
        return self._signed_in(user.name, next)

    def _signed_in(self, name: str, next: str) -> Response:
        redirect = RedirectResponse(safe_next(next), status_code=303)
        redirect.set_cookie(
            SESSION_COOKIE,
            self._users.create_session(name),
            max_age=int(self._session_hours * 3600),
            httponly=True,
            secure=self._secure_cookies,
            samesite="strict",
            path="/",
        )
        return redirect

    def _denied(self, name: str, client: str, reason: str) -> None:
        if self._denials is not None:
            self._denials.record(
                name.strip() or "(no name)", "sign in", f"from {client}", reason, signed_in=False
            )


def sign_out(users: UserStore, request: Request) -> Response:
    if not from_this_site(request):
        return cross_site_refusal()
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        users.end_session(token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response

"""Run the web app with uvicorn until interrupted."""

from __future__ import annotations

import secrets
import socket
import sys

import uvicorn

from appliance.auth import Role
from appliance.errors import ConfigError
from appliance.services.web import WebServices, build_web_services
from appliance.settings import Settings
from appliance.web.app import create_app

FIRST_USER = "admin"


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}): stop whatever uses that port, "
                "or choose another with --port (or APPLIANCE_PORT)"
            ) from None


def ensure_first_user(services: WebServices) -> None:
    """A fresh appliance gets one admin with a random password, shown once on the console,
    so that `make run` leads straight to a working sign-in. Not when SSO headers are used."""
    users = services.users
    if users.list_users() or services.identifier.proxy.enabled:
        return
    password = secrets.token_urlsafe(12)
    users.add_user(FIRST_USER, password, ["everyone"], Role.ADMIN)
    print(
        f"first start: sign in as '{FIRST_USER}' with password '{password}' (shown only now; "
        f"change it with `appliance users passwd {FIRST_USER}`, add people with "
        "`appliance users add`)",
        file=sys.stderr,
        flush=True,
    )


def run_server(settings: Settings, host: str, port: int) -> None:
    check_port_free(host, port)

    services = build_web_services(settings)
    try:
        ensure_first_user(services)
        app = create_app(services)
        services.start()
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            proxy_headers=False,  # the peer address is what trusted-proxy checks rely on
            server_header=False,
            access_log=False,
            log_level=settings.log_level.lower(),
            timeout_graceful_shutdown=5,
        )
        print(f"serving on http://{host}:{port}/ (Ctrl+C to stop)", file=sys.stderr, flush=True)
        uvicorn.Server(config).run()
    finally:
        services.close()

"""`users` and `keys`: the web app's local accounts and API keys from the command line.

A password comes from a hidden prompt (typed twice) or, with --password-stdin, from the first
line of standard input; it is never printed or logged. An API key is printed once, when it is
created: only its hash is kept.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from appliance.auth import ApiKeyInfo, Role, User, UserStore
from appliance.auth.accounts import check_groups, check_name
from appliance.cli.common import print_json, settings_for_command, user_errors
from appliance.errors import AuthError

users_app = typer.Typer(
    help="Manage the local accounts that log in to the web app.", no_args_is_help=True
)
keys_app = typer.Typer(
    help="Manage the API keys of the OpenAI-compatible /v1 API.", no_args_is_help=True
)

GROUPS_HELP = "Comma-separated groups whose documents the user may read."
GroupsOption = Annotated[str | None, typer.Option("--groups", help=GROUPS_HELP)]
RoleOption = Annotated[
    Role | None,
    typer.Option(
        "--role", help="user (asks), admin (manages documents and users), auditor (audit trail)."
    ),
]
PasswordStdinOption = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from the first line of standard input."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@contextmanager
def _open_store() -> Iterator[UserStore]:
    settings = settings_for_command()
    store = UserStore(settings.users_path, settings.session_hours)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def _existing_store() -> Iterator[UserStore | None]:
    """The store, or None when there is none yet (a listing does not create it)."""
    settings = settings_for_command()
    if not settings.users_path.exists():
        yield None
        return
    store = UserStore(settings.users_path, settings.session_hours)
    try:
        yield store
    finally:
        store.close()


def _split(groups: str) -> list[str]:
    return groups.split(",")


def _read_password(from_stdin: bool) -> str:
    if not from_stdin:
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise AuthError("no password on standard input: give it as the first line")
    return password


def _describe(user: User) -> str:
    return f"{user.name} (role {user.role}, groups {', '.join(user.groups)})"


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Login name: letters, digits, '.', '_', '@', '-'.")],
    groups: Annotated[str, typer.Option("--groups", help=GROUPS_HELP)],
    role: RoleOption = None,
    password_stdin: PasswordStdinOption = False,
) -> None:
    """Add a local account that logs in to the web app with a password.

    The password is asked for twice, hidden, unless --password-stdin is given. It must have at
    least 8 characters. The user reads the documents of the groups given with --groups.
    """
    with user_errors(), _open_store() as store:
        check_name(name)
        check_groups(_split(groups))
        if store.get(name) is not None:
            raise AuthError(f"user {name!r} already exists: change it with `appliance users set`")
        password = _read_password(password_stdin)
        user = store.add_user(name, password, _split(groups), role or Role.USER)
    typer.echo(f"added {_describe(user)}")


@users_app.command("remove")
def remove(name: Annotated[str, typer.Argument(help="The user to remove.")]) -> None:
    """Remove a user: their browser sessions end and their API keys are revoked at once."""
    with user_errors(), _open_store() as store:
        store.remove_user(name)
    typer.echo(f"removed {name}; their sessions were ended and their API keys revoked")


@users_app.command("passwd")
def passwd(
    name: Annotated[str, typer.Argument(help="The user whose password changes.")],
    password_stdin: PasswordStdinOption = False,
) -> None:
    """Set a user's password; their browser sessions end (their API keys keep working)."""
    with user_errors(), _open_store() as store:
        if store.get(name) is None:
            raise AuthError(f"no user named {name!r}: list them with `appliance users list`")
        store.set_password(name, _read_password(password_stdin))
    typer.echo(f"password of {name} changed; their sessions were ended")


@users_app.command("set")
def set_user(
    name: Annotated[str, typer.Argument(help="The user to change.")],
    groups: GroupsOption = None,
    role: RoleOption = None,
) -> None:
    """Change a user's groups (replaced as a whole) or role; effective on their next request."""
    with user_errors():
        if groups is None and role is None:
            raise AuthError("nothing to change: give --groups, --role or both")
        with _open_store() as store:
            user: User | None = None
            if groups is not None:
                user = store.set_groups(name, _split(groups))
            if role is not None:
                user = store.set_role(name, role)
    assert user is not None
    typer.echo(f"changed {_describe(user)}")


@users_app.command("list")
def list_users(as_json: JsonOption = False) -> None:
    """List the users with their role and groups."""
    with user_errors(), _existing_store() as store:
        users = store.list_users() if store is not None else []
    if as_json:
        print_json(
            {
                "users": [
                    {"name": u.name, "role": u.role.value, "groups": list(u.groups)} for u in users
                ]
            }
        )
        return
    if not users:
        typer.echo("no users yet: add one with `appliance users add NAME --groups ...`")
        return
    width = max(len(u.name) for u in users)
    for u in users:
        typer.echo(f"{u.name:<{width}}  {u.role.value:<7}  {','.join(u.groups)}")


@keys_app.command("create")
def create_key(name: Annotated[str, typer.Argument(help="The user the key acts as.")]) -> None:
    """Create an API key for a user and print it, once, on standard output.

    Clients send it as `Authorization: Bearer KEY`. Only its hash is kept: it cannot be shown
    again; revoke it and create another if it is lost.
    """
    with user_errors(), _open_store() as store:
        info, key = store.create_key(name)
    typer.echo(key)
    typer.echo(
        f"API key {info.key_id} created for {name}: it will not be shown again, store it now",
        err=True,
    )


def _key_json(key: ApiKeyInfo) -> dict[str, str | None]:
    return {
        "key_id": key.key_id,
        "user": key.user,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
    }


@keys_app.command("list")
def list_keys(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's keys.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List API keys by id, owner and use; the keys themselves are never shown."""
    with user_errors(), _existing_store() as store:
        keys = store.list_keys(user) if store is not None else []
    if as_json:
        print_json({"keys": [_key_json(key) for key in keys]})
        return
    if not keys:
        typer.echo("no API keys")
        return
    width = max(len(key.user) for key in keys)
    for key in keys:
        state = f"revoked {key.revoked_at}" if key.revoked_at else "active"
        used = key.last_used_at or "never used"
        typer.echo(f"{key.key_id}  {key.user:<{width}}  {key.created_at}  {used}  {state}")


@keys_app.command("revoke")
def revoke_key(key_id: Annotated[str, typer.Argument(help="The id shown by `keys list`.")]) -> None:
    """Revoke an API key: requests with it are refused from now on."""
    with user_errors(), _open_store() as store:
        store.revoke_key(key_id)
    typer.echo(f"API key {key_id} revoked")

"""The data directory is private whatever the caller's umask: real `appliance` commands run
with umask 022 leave every file 0600 and every folder 0700, and a data folder left open to
others is closed (with a warning)."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from tests.integration.cli import cli_env, command
from tests.integration.scripted_llm import scripted_llm

pytestmark = pytest.mark.integration

FACT = "The staff car park opens at 06:30 and closes at 22:00 on weekdays.\n"
ANSWER = "The staff car park opens at 06:30 and closes at 22:00 on weekdays [1]."


def run(data: Path, *args: str, stdin: str | None = None, **env: str) -> str:
    result = subprocess.run(
        command(*args),
        env=cli_env(data, **env),
        cwd=data.parent,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        umask=0o022,  # a usual shell umask: without the fix, files come out 0644
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stderr


def test_every_data_file_is_0600_in_0700_folders_under_a_022_umask(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "car-park.txt").write_text(FACT, encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # left open by an operator: the first command closes it
    key = {"APPLIANCE_AUDIT_KEY_FILE": str(tmp_path / "keys" / "audit.key")}

    warned = run(data, "ingest", str(docs), "--acl", "everyone", "--json")
    assert "data_dir_not_private" in warned
    add_user = ["users", "add", "ann", "--groups", "everyone", "--password-stdin"]
    run(data, *add_user, stdin="a long password\n")
    with scripted_llm(ANSWER) as (url, _):
        question = ["ask", "When does the car park open?", "--user", "ann", "--json"]
        run(data, *question, APPLIANCE_LLM_URL=url, **key)

    entries = sorted(data.rglob("*"))
    names = {p.relative_to(data).as_posix() for p in entries}
    assert {"audit.sqlite3", "users.sqlite3", "qdrant"} <= names, names
    assert any(n.startswith("manifest-") for n in names), names
    modes = {p.relative_to(data).as_posix(): stat.S_IMODE(p.lstat().st_mode) for p in entries}
    open_to_others = {
        name: oct(mode) for name, mode in modes.items() if mode & 0o077 or not mode & stat.S_IRUSR
    }
    assert open_to_others == {}, open_to_others
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert all(modes[n] == 0o700 for n in names if (data / n).is_dir())
    assert all(modes[n] == 0o600 for n in names if (data / n).is_file())

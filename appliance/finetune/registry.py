"""Adapters as versions: the GGUF LoRA adapters an operator may serve, and which one is served.

Each registered adapter is copied to `<data_dir>/adapters/<name>.gguf` (a training run folder
can then be deleted without breaking serving) and described in `registry.json`: its sha256,
the architecture and base model sha256 it declares, where it came from and when. Promotions
form a stack: the top one is served; `rollback` removes it, and the adapter promoted before
it (or the base model alone, when none was) is served again. Every change rewrites the file
atomically under an exclusive lock.

The served adapter is APPLIANCE_LLM_ADAPTER when that is set (an operator's override), else
the promoted one: `with_served_adapter` puts it into the settings when a command starts.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from appliance.filehash import sha256_of_file
from appliance.finetune import FinetuneError
from appliance.finetune.manifest import now
from appliance.private_files import private_dir
from appliance.settings import Settings

REGISTRY_FILE = "registry.json"
FORMAT = 1
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class AdapterVersion:
    name: str
    file: Path
    sha256: str
    arch: str
    base_sha256: str | None  # as the adapter declares it (`finetune train` writes it)
    source: str  # the path it was registered from
    added_at: str

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "file": str(self.file)}


@dataclass(frozen=True)
class Promotion:
    name: str
    sha256: str
    at: str
    forced: bool
    user: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def adapters_dir(settings: Settings) -> Path:
    return settings.data_dir / "adapters"


class AdapterRegistry:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / REGISTRY_FILE

    def versions(self) -> list[AdapterVersion]:
        state = self._read()
        return [self._version(name, data) for name, data in sorted(state["adapters"].items())]

    def get(self, name: str) -> AdapterVersion:
        data = self._read()["adapters"].get(name)
        if data is None:
            raise FinetuneError(
                f"no adapter named {name!r} is registered: see `appliance adapters list`"
            )
        return self._version(name, data)

    def history(self) -> list[Promotion]:
        """The promotions still in force, oldest first; the last one is served."""
        return [Promotion(**p) for p in self._read()["promotions"]]

    def promoted(self) -> AdapterVersion | None:
        promotions = self.history()
        return self.get(promotions[-1].name) if promotions else None

    def add(
        self, path: Path, name: str, record: Callable[[AdapterVersion], object]
    ) -> AdapterVersion:
        """Copy a GGUF LoRA adapter in under `name`; the same file again changes nothing.
        `record(version)` (the audit record) runs before the registry is written."""
        from appliance.finetune.gguf_adapter import read_adapter

        check_name(name)
        info = read_adapter(path)  # refuses a file that is not a GGUF LoRA adapter
        sha256 = sha256_of_file(path)
        with self._locked() as state:
            known = state["adapters"].get(name)
            if known is not None:
                if known["sha256"] == sha256:
                    return self._version(name, known)
                raise FinetuneError(
                    f"an adapter named {name!r} is registered already (sha256 "
                    f"{known['sha256'][:12]}): choose another name"
                )
            target = self.folder / f"{name}.gguf"
            temporary = target.with_name(target.name + ".tmp")
            shutil.copyfile(path, temporary)
            os.replace(temporary, target)
            data = {
                "sha256": sha256,
                "arch": info.arch,
                "base_sha256": info.metadata.get("base_model.sha256"),
                "source": str(path.resolve()),
                "added_at": now(),
            }
            version = self._version(name, data)
            record(version)
            state["adapters"][name] = data
        return version

    def promote(
        self,
        name: str,
        *,
        user: str,
        forced: bool,
        expected: str | None,
        record: Callable[[Promotion], object],
    ) -> Promotion:
        """Serve `name` from now on. `expected`: the promoted adapter's name the decision was
        taken against; if another promotion happened since, nothing changes. `record` (the
        audit record) runs before the registry is written."""
        version = self.get(name)
        with self._locked() as state:
            _check_unchanged(state, expected)
            promotion = Promotion(name, version.sha256, now(), forced, user)
            record(promotion)
            state["promotions"].append(promotion.to_json())
        return promotion

    def rollback(
        self, record: Callable[[Promotion, AdapterVersion | None], object]
    ) -> tuple[Promotion, AdapterVersion | None]:
        """Undo the last promotion: (the promotion undone, the adapter served now or None).
        `record` (the audit record) runs before the registry is written."""
        with self._locked() as state:
            promotions = state["promotions"]
            if not promotions:
                raise FinetuneError(
                    "no adapter is promoted: the base model alone is served already"
                )
            undone = Promotion(**promotions[-1])
            before = promotions[-2]["name"] if len(promotions) > 1 else None
            served = self._version(before, state["adapters"][before]) if before else None
            record(undone, served)
            promotions.pop()
        return undone, served

    def _version(self, name: str, data: dict[str, Any]) -> AdapterVersion:
        return AdapterVersion(
            name=name,
            file=self.folder / f"{name}.gguf",
            sha256=data["sha256"],
            arch=data["arch"],
            base_sha256=data.get("base_sha256"),
            source=data["source"],
            added_at=data["added_at"],
        )

    def _read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"format": FORMAT, "adapters": {}, "promotions": []}
        try:
            state = json.loads(text)
            if not (
                isinstance(state, dict)
                and isinstance(state.get("adapters"), dict)
                and isinstance(state.get("promotions"), list)
            ):
                raise ValueError("expected an object with 'adapters' and 'promotions'")
        except ValueError as exc:
            raise FinetuneError(
                f"the adapter registry {self.path} is damaged ({exc}): restore it from a backup"
            ) from None
        return state

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The state, read under an exclusive lock and written back when the block ends."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        private_dir(self.folder)
        with (self.folder / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._read()
            yield state
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
            os.replace(temporary, self.path)


def _check_unchanged(state: dict[str, Any], expected: str | None) -> None:
    promotions = state["promotions"]
    current = promotions[-1]["name"] if promotions else None
    if current != expected:
        raise FinetuneError(
            f"the promoted adapter changed to {current or 'none'} while this promotion was "
            "being evaluated: run the command again"
        )


def check_name(name: str) -> None:
    if not NAME.match(name):
        raise FinetuneError(
            f"adapter name {name!r}: use up to 64 letters, digits, '.', '-' and '_'"
        )


def with_served_adapter(settings: Settings) -> Settings:
    """The settings with the promoted adapter as `llm_adapter`, unless APPLIANCE_LLM_ADAPTER
    is set (the operator's override) or the answers come from an LLM server."""
    if settings.llm_adapter is not None or settings.llm_url:
        return settings
    promoted = AdapterRegistry(adapters_dir(settings)).promoted()
    if promoted is None:
        return settings
    if not promoted.file.is_file():
        raise FinetuneError(
            f"the promoted adapter {promoted.name!r} is missing its file {promoted.file}: "
            "restore it, or serve the one before with `appliance adapters rollback`"
        )
    return settings.model_copy(update={"llm_adapter": promoted.file})

"""How every bench hands over its results: a table, or JSON, and optionally a JSON file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def emit(
    result: dict[str, Any],
    *,
    as_json: bool,
    out: Path | None,
    print_table: Callable[[dict[str, Any]], None],
) -> None:
    text = json.dumps(result, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
    if as_json:
        print(text)
    else:
        print_table(result)

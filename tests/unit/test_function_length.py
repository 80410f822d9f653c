"""No function over 60 lines outside the tests (DESIGN: style): split a long one into named steps.

The check reads the sources with `ast` (nothing is imported). A function's length runs from its
`def` line to its last line, signature and docstring included, decorators not; a nested
function or a method counts on its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("appliance", "ingest", "ui", "bench")
MAX_LINES = 60


def long_functions(source: str, where: str) -> list[str]:
    """`where:function:lines` for each function in `source` longer than MAX_LINES."""
    found = []
    for node in ast.walk(ast.parse(source, filename=where)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > MAX_LINES:
                found.append(f"{where}:{node.name}:{lines}")
    return found


def _sources() -> list[Path]:
    files = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    return [path for path in files if "tests" not in path.relative_to(ROOT).parts]


def _function(name: str, lines: int, indent: str = "") -> str:
    """Source of a function `lines` long: its `def` line and `lines - 1` statements."""
    body = "".join(f"{indent}    x{n} = {n}\n" for n in range(lines - 1))
    return f"{indent}def {name}():\n{body}"


def test_the_check_names_a_long_function_and_its_length() -> None:
    source = (
        _function("just_fits", MAX_LINES)
        + "class Thing:\n"
        + _function("method_too_long", MAX_LINES + 1, indent="    ")
    )
    assert long_functions(source, "pkg/mod.py") == [f"pkg/mod.py:method_too_long:{MAX_LINES + 1}"]


def test_the_packages_are_found() -> None:
    files = {path.relative_to(ROOT).parts[0] for path in _sources()}
    assert files == set(PACKAGES)


def test_no_function_is_over_60_lines() -> None:
    found = [
        problem
        for path in _sources()
        for problem in long_functions(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert not found, (
        f"functions over {MAX_LINES} lines (file:function:lines); split them into named "
        "steps: " + ", ".join(found)
    )

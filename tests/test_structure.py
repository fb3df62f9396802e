"""Every module under pcxbatch/ stays small enough to read.

No module is longer than 500 lines and no function or method (nested ones included) is longer
than 60 lines, counted from its ``def`` line to its last line (``end_lineno - lineno + 1``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _functions(node: ast.AST, prefix: str = "") -> Iterator[tuple[str, int]]:
    """``(qualified name, length in lines)`` of every function and method under ``node``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            name = prefix + child.name
            assert child.end_lineno is not None
            yield name, child.end_lineno - child.lineno + 1
            yield from _functions(child, name + ".")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, prefix + child.name + ".")
        else:
            yield from _functions(child, prefix)


def offenders() -> dict[str, str]:
    """Every module or function over its limit, ``name -> what is too long``."""
    found: dict[str, str] = {}
    for path in sorted((REPO / "pcxbatch").rglob("*.py")):
        where = path.relative_to(REPO).as_posix()
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            found[where] = f"module of {lines} lines (limit {MAX_MODULE_LINES})"
        for name, length in _functions(ast.parse(text, filename=where)):
            if length > MAX_FUNCTION_LINES:
                found[f"{where}:{name}"] = f"{length} lines (limit {MAX_FUNCTION_LINES})"
    return found


def test_no_module_or_function_is_too_long() -> None:
    new = offenders()
    assert not new, "too long; split it into named pieces:\n" + "\n".join(
        f"  {name}: {why}" for name, why in sorted(new.items())
    )

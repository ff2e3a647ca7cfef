"""No function or method in the source is longer than 80 lines.

A function is counted from its ``def`` line to its last line (decorators excluded, its docstring and
comments included), as :mod:`ast` places them. Long functions are split into named steps; the test
names each offender with its file, line and length.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mloop", "flows", "models", "serving", "monitoring")
MAX_LINES = 80


def long_functions(source: str, limit: int = MAX_LINES) -> list[tuple[str, int, int]]:
    """``(qualified name, def line, lines)`` of each function in ``source`` longer than ``limit``."""
    found: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    length = (child.end_lineno or child.lineno) - child.lineno + 1
                    if length > limit:
                        found.append((name, child.lineno, length))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def test_counts_from_def_to_last_line_without_decorators() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(78))
    source = f"@decorator\n@other\ndef f():\n    '''doc'''\n{body}\n"  # 80 lines: allowed
    assert long_functions(source) == []
    method = body.replace("    ", "        ")
    source = f"class C:\n    def m(self):\n        pass\n{method}\n        y = 1\n"  # 81 lines
    assert long_functions(source) == [("C.m", 2, 81)]


def test_no_function_over_80_lines() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} {name} ({length} lines)"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for name, line, length in long_functions(path.read_text())
    ]
    assert not offenders, f"functions over {MAX_LINES} lines (split them):\n" + "\n".join(offenders)

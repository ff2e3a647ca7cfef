"""Every suppression comment in the tree names what it suppresses and says why, on its own line.

A ``noqa``, ``type: ignore``, ``pyright: ignore`` or ``nosec`` comment must name a specific code
(``noqa: E402``, ``type: ignore[arg-type]``, ``pyright: ignore[reportArgumentType]``,
``nosec B603``) and carry a reason after it, e.g. ``# noqa: E402  # why: ...`` or
``# nosec B603 - argv list, no shell`` (the bandit config in pyproject.toml asks the same of every
nosec). A bare marker silences every finding on its line, for reasons nobody can check later.
"""

from __future__ import annotations

import io
import re
import subprocess
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

MARKER = re.compile(r"#\s*(noqa|type:\s*ignore|pyright:\s*ignore|nosec)\b", re.IGNORECASE)
# what each marker's code looks like, right after the marker
CODES = {
    "noqa": re.compile(r":\s*[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*"),
    "ignore": re.compile(r"\[\s*[\w-]+(?:\s*,\s*[\w-]+)*\s*\]"),
    "nosec": re.compile(r"[ \t]+B[0-9]{3}(?:\s*,\s*B[0-9]{3})*\b"),
}
# what may stand between the code and the reason: separators and a "why:" label
LEAD = re.compile(r"^(?:[\s#:;,\-\u2013\u2014]|why\b)*", re.IGNORECASE)
REASON = re.compile(r"[A-Za-z]{3,}")


def comment_problems(comment: str) -> list[str]:
    """What is wrong with the suppressions in one comment (``#`` to the end of the line)."""
    markers = list(MARKER.finditer(comment))
    problems: list[str] = []
    for i, marker in enumerate(markers):
        kind = marker.group(1).lower()
        end = markers[i + 1].start() if i + 1 < len(markers) else len(comment)
        rest = comment[marker.end() : end]
        code = CODES["ignore" if kind.endswith("ignore") else kind].match(rest)
        name = re.sub(r"\s+", " ", kind)
        if code is None:
            problems.append(f"`{name}` names no specific code or rule")
        elif not REASON.search(LEAD.sub("", rest[code.end() :])):
            problems.append(f"`{name}{rest[: code.end()]}` gives no reason on its line")
    return problems


def source_problems(source: str) -> list[tuple[int, str]]:
    """(line, problem) for every bad suppression in the comments of ``source`` (strings are
    skipped: a marker quoted in a string suppresses nothing)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [
        (token.start[0], problem)
        for token in tokens
        if token.type == tokenize.COMMENT
        for problem in comment_problems(token.string)
    ]


def tracked_python_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--", "*.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [REPO / name for name in out.stdout.split("\0") if name]


def test_every_suppression_names_its_code_and_says_why() -> None:
    files = tracked_python_files()
    assert len(files) > 50, f"git ls-files found only {len(files)} Python files under {REPO}"
    bad = [
        f"{path.relative_to(REPO)}:{line}: {problem}"
        for path in files
        if path.is_file()  # a tracked file deleted in the work tree is not checked
        for line, problem in source_problems(path.read_text(encoding="utf-8"))
    ]
    assert not bad, "suppressions without a code or a reason:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "line",
    [
        "import os  # noqa: F401  # why: re-exported",
        "import os  # noqa: F401 - imported early, before the timer starts",
        "import os  # noqa: E402, F401  # why: after the path set-up",
        "x = f()  # type: ignore[arg-type]  # why: the stub says int, it takes str",
        "x = f()  # type: ignore[arg-type, return-value]  # why: untyped library",
        "x = f()  # pyright: ignore[reportArgumentType]  # why: the annotation is too narrow",
        "run(argv)  # nosec B603 - argv list, no shell",
        "HOST = '0.0.0.0'  # nosec B104  # recognised, never bound",
        "x = f()  # pyright: ignore[reportCallIssue]  # why: one  # noqa: E501 - long URL",
        "text = '# noqa'  # a marker inside a string is no suppression",
    ],
)
def test_a_named_and_explained_suppression_passes(line: str) -> None:
    assert source_problems(line + "\n") == []


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("import os  # noqa", "names no specific code"),
        ("import os  # NOQA", "names no specific code"),
        ("import os  # noqa: F401", "gives no reason"),
        ("import os  # noqa: F401  # why:", "gives no reason"),
        ("import os  # noqa: F401 -", "gives no reason"),
        ("x = f()  # type: ignore", "names no specific code"),
        ("x = f()  # type: ignore  # why: the stub is wrong", "names no specific code"),
        ("x = f()  # type: ignore[arg-type]", "gives no reason"),
        ("x = f()  # pyright: ignore", "names no specific code"),
        ("x = f()  # pyright: ignore[reportArgumentType]", "gives no reason"),
        ("run(argv)  # nosec", "names no specific code"),
        ("run(argv)  # nosec - argv list", "names no specific code"),
        ("run(argv)  # nosec B603", "gives no reason"),
        ("x = f()  # pyright: ignore[reportCallIssue]  # why: fine  # noqa", "names no specific"),
    ],
)
def test_a_bare_or_unexplained_suppression_is_named_with_its_line(line: str, problem: str) -> None:
    found = source_problems("import sys\n" + line + "\n")
    assert len(found) == 1 and found[0][0] == 2 and problem in found[0][1], found

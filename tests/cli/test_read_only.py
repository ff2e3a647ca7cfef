"""Read-only commands change nothing on disk: run against an empty MLOOP_HOME, they leave it empty (and
create no home at all when there is none), whatever they answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mloop.cli.app import app
from tests.cli.helpers import empty_home_env

READ_ONLY = [
    ["status"],
    ["status", "--json"],
    ["models", "loans"],
    ["models", "loans", "--json"],
    ["data", "list"],
    ["data", "list", "loans"],
    ["data", "contract", "loans"],
    ["audit", "loans"],
    ["monitor", "loans"],
    ["monitor", "check", "loans", "--json"],
    ["--help"],
    ["--version"],
]


def tree(root: Path) -> list[str]:
    """Every path under ``root`` (relative), sorted; empty when ``root`` does not exist."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
def empty(tmp_path: Path) -> Iterator[Path]:
    """MLOOP_HOME and the project dir under ``tmp_path`` (the home not created), on ports nobody serves;
    os.environ restored afterwards."""
    with empty_home_env(tmp_path) as root:
        yield root


@pytest.mark.parametrize("argv", READ_ONLY, ids=" ".join)
def test_a_read_only_command_creates_no_file(argv: list[str], empty: Path) -> None:
    before = tree(empty)
    result = CliRunner().invoke(app, argv)
    assert "Traceback" not in result.output and result.exit_code in (0, 3), result.output
    assert tree(empty) == before  # no MLOOP_HOME, no database, no state tree


def test_an_existing_empty_home_stays_empty(empty: Path) -> None:
    (empty / "home").mkdir()
    for argv in READ_ONLY:
        CliRunner().invoke(app, argv)
    assert tree(empty / "home") == []

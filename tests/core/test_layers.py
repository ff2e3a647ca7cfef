"""The layer rule (docs/architecture.md §1) is enforced by import-linter, and the check really bites.

``lint-imports`` runs on the real tree (it must pass), then on a copy of the tree with one upward
import planted in the core layer (it must fail and name the contract), so a broken contract file
or a checker that never fails cannot go unnoticed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mloop", "flows", "models", "serving", "monitoring")
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH puts `tree` before the editable install, so grimp reads that copy's sources.
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree), "HOME": str(tree)}
    return subprocess.run(
        [str(LINT), "--config", str(tree / ".importlinter"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy_tree(dest: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / ".importlinter", dest / ".importlinter")
    return dest


def test_contract_names_every_layer() -> None:
    text = (ROOT / ".importlinter").read_text()
    for layer in (
        "mloop.cli",
        "mloop.platform",
        "flows",
        "monitoring : serving : models",
        "mloop.core",
    ):
        assert f"\n    {layer}\n" in text, f".importlinter's layers contract lacks {layer!r}"


def test_real_tree_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint(_copy_tree(tmp_path / "tree"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("mloop/core/errors.py", "mloop.cli.app"),  # core -> CLI
        ("models/split.py", "flows.train"),  # capability -> orchestration
        ("flows/promote.py", "mloop.platform.local"),  # orchestration -> platform
    ],
)
def test_an_upward_import_is_caught(tmp_path: Path, module: str, upward: str) -> None:
    tree = _copy_tree(tmp_path / "tree")
    source = tree / module
    source.write_text(source.read_text() + f"\nimport {upward}  # planted upward import\n")
    result = _lint(tree)
    assert result.returncode != 0, (
        f"lint-imports accepted {module} importing {upward}:\n{result.stdout}"
    )
    assert "BROKEN" in result.stdout and upward in result.stdout, result.stdout

"""Helpers shared by every test area."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_project(root: Path) -> Path:
    """A fresh project checkout: a git repo with one commit (README.md). Returns its path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text("test project\n")
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "README.md"], ["git", "commit", "-q", "-m", "init"]):
        subprocess.run(argv, cwd=root, check=True, capture_output=True)
    return root

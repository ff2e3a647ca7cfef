"""Helpers of the data tests: temporary git projects and a snapshot of everything an ingest may change."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mloop.datasets import IngestResult, list_versions
from mloop.frames import file_md5
from mloop.settings import Settings

DATASET = "loans"
ROWS = 2000


def git_project(root: Path) -> Path:
    """A git repo with one commit (the project checkout of a test)."""
    root.mkdir(parents=True, exist_ok=True)
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "commit", "-q", "--allow-empty", "-m", "init"]):
        subprocess.run(argv, cwd=root, check=True, capture_output=True)
    return root


def head(root: Path) -> str:
    return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def files_with_md5(folder: Path) -> dict[str, str]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): file_md5(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def snapshot(settings: Settings, name: str = DATASET) -> dict[str, object]:
    """Everything an ingest may change: versions, data folder, DVC remote and cache, git HEAD."""
    return {
        "versions": [v.md5 for v in list_versions(settings, name)],
        "data": files_with_md5(settings.project_dir / "data"),
        "remote": files_with_md5(settings.state.dvc_remote),
        "cache": sorted(files_with_md5(settings.state.dvc_cache / "files")),
        "head": head(settings.project_dir),
    }


@dataclass
class Onboarded:
    settings: Settings
    base: pd.DataFrame
    v1: IngestResult
    workdir: Path

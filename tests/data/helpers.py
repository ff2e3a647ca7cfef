"""Helpers of the data tests: temporary git projects and a snapshot of everything an ingest may change."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mloop.core.datasets import IngestResult, list_versions
from mloop.core.frames import file_md5
from mloop.core.settings import Settings

DATASET = "loans"
ROWS = 2000


def head(root: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def files_with_md5(folder: Path) -> dict[str, str]:
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): file_md5(p) for p in sorted(folder.rglob("*")) if p.is_file()
    }


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

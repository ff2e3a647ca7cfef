"""Fixtures of the data tests: an onboarded project (module scope) and a state snapshot helper."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from mloop.datasets import IngestResult, ingest_dataset, list_versions
from mloop.frames import file_md5
from mloop.generate import generate, write_frame
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


@pytest.fixture(scope="module")
def onboarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Onboarded]:
    """A project whose dataset `loans` has one version (baseline, 2,000 rows), shared by a module."""
    root = tmp_path_factory.mktemp("onboarded")
    settings = Settings(home=root / "home", project_dir=git_project(root / "project"))
    settings.state.ensure()
    base = generate("baseline", ROWS, 1)
    source = write_frame(base, root / "v1.csv")
    v1 = ingest_dataset(settings, source, dataset=DATASET)
    yield Onboarded(settings=settings, base=pd.read_csv(source, parse_dates=["event_time"]), v1=v1, workdir=root)

"""Helpers shared by every test area."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pytest

    from mloop.core.settings import Settings


def make_project(root: Path) -> Path:
    """A fresh project checkout: a git repo with one commit (README.md). Returns its path."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text("test project\n")
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "README.md"],
        ["git", "commit", "-q", "-m", "init"],
    ):
        subprocess.run(argv, cwd=root, check=True, capture_output=True)
    return root


@contextmanager
def flow_home(root: Path) -> Iterator[tuple[Settings, pytest.MonkeyPatch]]:
    """A MLOOP_HOME (``root/home``) and a project checkout (``root/project``) that flows run in
    in-process read from the environment: MLOOP_HOME, MLOOP_PROJECT_DIR and MLFLOW_TRACKING_URI are set
    while the block runs (the monkeypatch is yielded for more). Yields (settings, monkeypatch)."""
    import pytest

    from mloop.core.settings import Settings

    settings = Settings(home=root / "home", project_dir=make_project(root / "project"))
    settings.state.ensure()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOOP_HOME", str(settings.state.root))
        mp.setenv("MLOOP_PROJECT_DIR", str(settings.project_dir))
        mp.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)
        yield settings, mp


def assert_openapi_holds(
    openapi_url: str,
    token: str,
    *,
    min_cases: int,
    cwd: Path,
    max_examples: int = 60,
    open_examples: int = 10,
) -> None:
    """Schemathesis' full check set (``--checks all``: no 5xx, every status code, content type,
    header and body as declared, schema-valid requests accepted, invalid ones refused, undeclared
    methods 405, auth not ignored...) against every operation of ``openapi_url``: ``max_examples``
    per operation with the bearer token (so it reaches the handlers), then ``open_examples``
    without it (so it meets the 401s). Seeded; at least ``min_cases`` cases in the first run."""
    import re
    import sys

    runs = (("with the token", max_examples, ["-H", f"Authorization: Bearer {token}"]),
            ("without a token", open_examples, []))  # fmt: skip
    for run, (what, examples, extra) in enumerate(runs):
        cmd = [
            str(Path(sys.executable).with_name("schemathesis")), "run", openapi_url,
            "--checks", "all",
            "--max-examples", str(examples),
            # One worker: with two threads CPython 3.11 sometimes fails inside hypothesis's code
            # generation ("SystemError: AST constructor recursion depth mismatch"), a flaky error.
            "--workers", "1",
            "--phases", "examples,coverage,fuzzing,stateful",
            "--generation-database", "none",
            "--seed", "1",
            "--request-timeout", "20",
            "--continue-on-failure",
            "--no-color",
            *extra,
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd)
        summary = out.stdout.split("SUMMARY")[-1]
        assert out.returncode == 0, f"{what}:\n" + out.stdout[-8000:] + out.stderr[-2000:]
        match = re.search(r"(\d+) generated, (\d+) passed", summary)
        assert match and match.group(1) == match.group(2), f"{what}: {summary}"
        if run == 0:
            assert int(match.group(1)) >= min_cases, summary


def column(frame: pd.DataFrame, name: str) -> pd.Series:
    """``frame[name]``, checked to be one column (pandas ships no stubs here: pyright reads the
    selection as a Series or a DataFrame)."""
    import pandas as pd

    selected = frame[name]
    assert isinstance(selected, pd.Series), f"{name!r} selects a {type(selected).__name__}"
    return selected


def columns(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """``frame[names]``, checked to be a frame (see ``column``)."""
    import pandas as pd

    selected = frame[names]
    assert isinstance(selected, pd.DataFrame), f"{names!r} selects a {type(selected).__name__}"
    return selected

"""Independent MLflow calls run a few at a time against a remote tracking server and one after another on a
local store (models.registry.run_calls), and the model folder's files map to the artifact folders that
``log_artifacts`` would use (models.tracking.artifact_files)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from models.registry import is_remote_store, run_calls
from models.tracking import artifact_files


def test_remote_store_is_recognised_by_scheme() -> None:
    assert is_remote_store("http://127.0.0.1:5000") and is_remote_store("HTTPS://mlflow.example")
    assert not is_remote_store("sqlite:////tmp/mlflow.db") and not is_remote_store(
        "file:///tmp/mlruns"
    )


def test_remote_calls_overlap() -> None:
    """Two calls that each wait for the other can only both finish when they run at the same time."""
    barrier = threading.Barrier(2, timeout=30)
    done: list[int] = []
    run_calls(
        "http://127.0.0.1:5000",
        [lambda: done.append(barrier.wait()), lambda: done.append(barrier.wait())],
    )
    assert sorted(done) == [0, 1]


def test_local_store_calls_run_one_after_another() -> None:
    barrier = threading.Barrier(2, timeout=2)
    with pytest.raises(threading.BrokenBarrierError):
        run_calls("sqlite:////tmp/x.db", [barrier.wait, barrier.wait])


def test_every_remote_call_ends_before_the_first_error_is_raised() -> None:
    ended: list[str] = []

    def fail() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        run_calls(
            "http://127.0.0.1:5000", [fail, lambda: ended.append("a"), lambda: ended.append("b")]
        )
    assert sorted(ended) == ["a", "b"]


def test_artifact_files_keep_sub_folders(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    for name in ("MLmodel", "sub/a.json", "sub/deeper/b.bin"):
        (tmp_path / name).write_text("x")
    assert artifact_files(tmp_path, "model") == [
        (tmp_path / "MLmodel", "model"),
        (tmp_path / "sub" / "a.json", "model/sub"),
        (tmp_path / "sub" / "deeper" / "b.bin", "model/sub/deeper"),
    ]

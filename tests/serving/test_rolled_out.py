"""The persisted rollout and the rule a starting worker follows (pure; the real respawn is in
test_worker_kill.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mloop.core.errors import MloopError
from serving.rolled_out import RolledOut, read_rolled_out, rolled_out_path, startup_tag, write_rolled_out


def _rec(tag: str = "loans:v2", initial: str = "loans:v1") -> RolledOut:
    return RolledOut(model_name="loans", model_tag=tag, initial_tag=initial, rolled_out_at="2026-01-01T00:00:00+00:00")


def test_write_then_read_is_atomic_and_private(tmp_path: Path) -> None:
    record = write_rolled_out(tmp_path, "loans:v2", "loans:v1")
    path = rolled_out_path(tmp_path, "loans")
    assert path == tmp_path.resolve() / "serving" / "loans" / "rolled-out.json"
    assert read_rolled_out(tmp_path, "loans") == record
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["rolled-out.json"]  # no temporary file left
    assert read_rolled_out(tmp_path, "other") is None


def test_an_unreadable_record_is_ignored(tmp_path: Path) -> None:
    path = rolled_out_path(tmp_path, "loans")
    path.parent.mkdir(parents=True)
    path.write_text('{"model_tag": "loans:v2"')  # torn
    assert read_rolled_out(tmp_path, "loans") is None


def test_model_names_cannot_escape_the_folder(tmp_path: Path) -> None:
    with pytest.raises(MloopError):
        rolled_out_path(tmp_path, "../x")


def test_startup_rule() -> None:
    everything = lambda tag: True  # noqa: E731
    nothing = lambda tag: False  # noqa: E731
    assert startup_tag("loans:v1", None, everything) == ("loans:v1", None)
    assert startup_tag("loans:v1", _rec(), everything) == ("loans:v2", None)  # a respawn: the rollout wins
    assert startup_tag("loans:v3", _rec(), everything) == ("loans:v3", None)  # started with another tag since
    assert startup_tag("other:v1", _rec(initial="other:v1"), everything) == ("other:v1", None)  # another model
    tag, warning = startup_tag("loans:v1", _rec(), nothing)
    assert tag == "loans:v1" and warning is not None and "loans:v2" in warning

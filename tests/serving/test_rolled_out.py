"""The persisted rollout and the rule a starting worker follows (pure; the real respawn is in
test_worker_kill.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mloop.core.errors import MloopError
from serving.api.rollout_record import (
    RolledOut,
    initial_tag_for,
    read_all_rolled_out,
    read_rolled_out,
    rolled_out_path,
    start_key,
    startup_tag,
    startup_tags,
    write_rolled_out,
)


def _rec(tag: str = "loans:v2", initial: str = "loans:v1") -> RolledOut:
    return RolledOut(
        model_name="loans",
        model_tag=tag,
        initial_tag=initial,
        rolled_out_at="2026-01-01T00:00:00+00:00",
    )


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
    everything = lambda tag: True  # noqa: E731 - a one-line local helper, read where it is used
    nothing = lambda tag: False  # noqa: E731 - a one-line local helper, read where it is used
    assert startup_tag("loans:v1", None, everything) == ("loans:v1", None)
    assert startup_tag("loans:v1", _rec(), everything) == (
        "loans:v2",
        None,
    )  # a respawn: the rollout wins
    assert startup_tag("loans:v3", _rec(), everything) == (
        "loans:v3",
        None,
    )  # started with another tag since
    assert startup_tag("other:v1", _rec(initial="other:v1"), everything) == (
        "other:v1",
        None,
    )  # another model
    tag, warning = startup_tag("loans:v1", _rec(), nothing)
    assert tag == "loans:v1" and warning is not None and "loans:v2" in warning


def _named(name: str, tag: str, initial: str) -> RolledOut:
    return RolledOut(
        model_name=name,
        model_tag=tag,
        initial_tag=initial,
        rolled_out_at="2026-01-01T00:00:00+00:00",
    )


def test_many_models_each_start_model_follows_its_own_record() -> None:
    everything = lambda tag: True  # noqa: E731 - a one-line local helper, read where it is used
    records = {
        "loans": _named("loans", "loans:v2", "loans:v1"),
        "rates": _named("rates", "rates:v5", "rates:v4"),
    }
    tags, warnings = startup_tags(["loans:v1", "rates:v1"], records, everything)
    assert (
        tags == ["loans:v2", "rates:v1"] and warnings == []
    )  # rates was started with another tag since


def test_an_added_model_is_restored_by_a_worker_started_with_the_same_tags() -> None:
    everything = lambda tag: True  # noqa: E731 - a one-line local helper, read where it is used
    start = ["loans:v1", "rates:v1"]
    assert initial_tag_for("loans", start) == "loans:v1"
    assert initial_tag_for("fraud", start) == start_key(start) == "loans:v1,rates:v1"
    records = {"fraud": _named("fraud", "fraud:v2", start_key(start))}
    assert startup_tags(start, records, everything) == (["loans:v1", "rates:v1", "fraud:v2"], [])


def test_an_added_model_of_another_start_list_is_not_restored() -> None:
    everything = lambda tag: True  # noqa: E731 - a one-line local helper, read where it is used
    records = {"fraud": _named("fraud", "fraud:v2", "loans:v0")}
    assert startup_tags(["loans:v1"], records, everything) == (["loans:v1"], [])


def test_an_added_model_gone_from_the_store_is_not_restored_and_warned_about() -> None:
    records = {"fraud": _named("fraud", "fraud:v2", "loans:v1")}
    tags, warnings = startup_tags(["loans:v1"], records, lambda tag: tag != "fraud:v2")
    assert tags == ["loans:v1"] and len(warnings) == 1 and "fraud:v2" in warnings[0]


def test_every_record_is_read_back_by_model(tmp_path: Path) -> None:
    write_rolled_out(tmp_path, "loans:v2", "loans:v1")
    write_rolled_out(tmp_path, "fraud:v1", "loans:v1")
    (tmp_path / "serving" / "not a model").mkdir()
    assert sorted(read_all_rolled_out(tmp_path)) == ["fraud", "loans"]
    assert read_all_rolled_out(tmp_path / "nowhere") == {}

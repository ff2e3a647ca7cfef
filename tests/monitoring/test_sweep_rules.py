"""The sweep's pure rules: which models, what counts as unchanged, how the artifact reads; the reference cache."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mloop.core.errors import MloopError
from monitoring.reference_cache import cache_path, load_cached, store_cached
from monitoring.sweep import (
    SweepEntry,
    SweepResult,
    WindowMark,
    read_mark,
    select_models,
    sweep_markdown,
    unchanged_reason,
    window_mark,
    write_mark,
)

T0 = datetime(2025, 1, 1, 12, tzinfo=UTC)


def _window(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "prediction_id": ids,
            "timestamp": pd.to_datetime(
                [T0 + timedelta(seconds=i) for i in range(len(ids))], utc=True
            ),
        }
    )


def test_select_every_champion_or_the_requested_ones() -> None:
    champions = {"rates": "2", "loans": "3"}
    assert select_models(champions, None) == (["loans", "rates"], [])
    assert select_models(champions, ["rates", "ghost", "rates"]) == (["rates"], ["ghost"])
    assert select_models({}, None) == ([], [])


def test_unchanged_only_when_version_newest_prediction_and_labels_are_the_same() -> None:
    mark = window_mark(_window(["a", "b"]), feedback_rows=3, model_version="2")
    assert (
        mark.newest_prediction_id == "b"
        and mark.rows == 2
        and mark.newest_timestamp == T0 + timedelta(seconds=1)
    )
    previous = mark.model_copy(update={"checked_at": T0})
    assert unchanged_reason(None, mark) is None
    assert "no new predictions or labels" in (unchanged_reason(previous, mark) or "")
    assert (
        unchanged_reason(previous, window_mark(_window(["a", "b", "c"]), 3, "2")) is None
    )  # a new prediction
    assert (
        unchanged_reason(previous, window_mark(_window(["a", "b"]), 4, "2")) is None
    )  # a new label
    assert (
        unchanged_reason(previous, window_mark(_window(["a", "b"]), 3, "3")) is None
    )  # a new champion
    empty = window_mark(pd.DataFrame({"prediction_id": [], "timestamp": []}), 0, "1")
    assert empty.newest_prediction_id is None and empty.rows == 0


def test_marks_round_trip_and_a_broken_mark_means_check_again(tmp_path: Path) -> None:
    mark = WindowMark(model_version="1", rows=5, newest_prediction_id="x", checked_at=T0)
    write_mark(tmp_path, "loans", mark)
    assert read_mark(tmp_path, "loans") == mark and read_mark(tmp_path, "rates") is None
    (tmp_path / "monitoring" / "marks" / "loans.json").write_text("{torn")
    assert read_mark(tmp_path, "loans") is None
    with pytest.raises(MloopError):
        write_mark(tmp_path, "../up", mark)


def test_sweep_markdown_lists_every_model_with_its_links_and_failures() -> None:
    result = SweepResult(
        models=[
            SweepEntry(
                model_name="loans",
                model_version="3",
                status="drift",
                reason="4/14 columns drifted",
                events=["mloop.drift.detected"],
                task_run_id="f1",
                report_path="/r/drift.html",
            ),
            SweepEntry(
                model_name="rates",
                status="failed",
                reason="NotFoundError: no | dataset",
                task_run_id="f2",
            ),
            SweepEntry(
                model_name="churn",
                model_version="1",
                status="unchanged",
                reason="no new predictions",
            ),
        ],
        unknown=["ghost"],
        seconds=12.34,
    )
    links = {
        "loans": {"flow run": "http://p/runs/flow-run/f1", "report": "file:///r/drift.html"},
        "rates": {"flow run": "http://p/runs/flow-run/f2"},
    }
    md = sweep_markdown(result, links)
    assert md.startswith("# Monitor sweep: 3 models in 12.3 s")
    assert "1 drift, 1 failed, 1 unchanged." in md
    assert (
        "| `loans` | 3 | **drift** | 4/14 columns drifted | mloop.drift.detected | [flow run](http://p/runs/flow-run/f1)"
        " · [report](file:///r/drift.html) |" in md
    )
    assert (
        "| `rates` | - | **failed** | NotFoundError: no \\| dataset | - | [flow run](http://p/runs/flow-run/f2) |"
        in md
    )
    assert "| `churn` | 1 | unchanged | no new predictions | - | - |" in md
    assert "`ghost`" in md and result.failed == ["rates"]
    assert "no served models" in sweep_markdown(SweepResult(), {})


def test_reference_cache_round_trips_and_keeps_one_entry_per_model(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "a": [1.5, None],
            "b": ["x", None],
            "prediction": [0, 1],
            "probability": [0.2, 0.9],
            "event_time": pd.to_datetime([T0, T0], utc=True),
        }
    )
    first = cache_path(tmp_path, "loans", "1", "abc123", 0, 50_000)
    store_cached(first, frame)
    pd.testing.assert_frame_equal(load_cached(first), frame)
    second = cache_path(tmp_path, "loans", "2", "def456", 0, 50_000)
    store_cached(second, frame)
    assert not first.exists() and second.exists()  # a new champion replaces the old entry
    other = cache_path(tmp_path, "rates", "1", "abc123", 0, 50_000)
    store_cached(other, frame)
    assert second.exists()  # models never touch each other's entries
    second.write_bytes(b"not parquet")
    assert load_cached(second) is None and not second.exists()
    assert (
        cache_path(tmp_path, "loans", "1", "abc123", 1, 50_000) != first
    )  # the seed is part of the key
    with pytest.raises(MloopError):
        cache_path(tmp_path, "../x", "1", "abc", 0, 1)
    with pytest.raises(ValueError):
        cache_path(tmp_path, "loans", "1", "../../etc", 0, 1)


def test_log_fingerprint_changes_with_a_new_prediction_or_label_part(tmp_path: Path) -> None:
    from monitoring.sweep import log_fingerprint, unchanged_since_mark

    preds, labels = tmp_path / "predictions", tmp_path / "feedback"
    day = preds / "loans" / "date=2025-01-01"
    day.mkdir(parents=True)
    (day / "part-1.parquet").write_bytes(b"x")
    first = log_fingerprint(preds, labels, "loans")
    assert log_fingerprint(preds, labels, "loans") == first
    mark = WindowMark(model_version="2", rows=1, log_fingerprint=first, checked_at=T0)
    assert "no new predictions" in (unchanged_since_mark(mark, "2", first) or "")
    assert unchanged_since_mark(mark, "3", first) is None  # a new champion
    assert unchanged_since_mark(None, "2", first) is None
    (day / "part-2.parquet").write_bytes(b"y")
    second = log_fingerprint(preds, labels, "loans")
    (labels / "loans").mkdir(parents=True)
    (labels / "loans" / "part-1.parquet").write_bytes(b"z")
    third = log_fingerprint(preds, labels, "loans")
    assert len({first, second, third}) == 3 and unchanged_since_mark(mark, "2", third) is None
    assert log_fingerprint(preds, labels, "rates") != first  # another model's files are not its own

"""The platform's step reports: start, then ok or failed with the duration and the step's detail."""

from __future__ import annotations

import pytest

from mloop.platform.progress import StepEvent, step


def test_a_step_reports_its_start_and_its_end() -> None:
    events: list[StepEvent] = []
    with step(events.append, "starting MLflow") as note:
        note.detail = "started mlflow"
    assert [(e.step, e.state, e.detail) for e in events] == [
        ("starting MLflow", "start", ""),
        ("starting MLflow", "ok", "started mlflow"),
    ]
    assert events[1].seconds >= 0


def test_a_failed_step_is_reported_and_raised() -> None:
    events: list[StepEvent] = []
    with pytest.raises(RuntimeError), step(events.append, "deploying"):
        raise RuntimeError("boom")
    assert [e.state for e in events] == ["start", "failed"]


def test_without_progress_a_step_is_silent() -> None:
    with step(None, "anything") as note:
        note.detail = "ignored"

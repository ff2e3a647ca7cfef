"""What a monitor run concludes: status, reason, events and payloads, from hand-made results. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from mloop.core import events
from mloop.core.errors import MloopError
from mloop.core.lineage import ModelLineage
from monitoring import verdict
from monitoring.checks import quality_metric, reference_version
from monitoring.drift import ColumnDrift, DriftOptions, DriftResult
from monitoring.quality import QualityResult
from monitoring.window import Window


def _result(drift: bool, degraded: bool | None) -> DriftResult:
    cols = [
        ColumnDrift(
            column=c, kind="numeric", method="wasserstein", threshold=0.1, score=s, drifted=s > 0.1
        )
        for c, s in (("a", 0.3), ("b", 0.01))
    ]
    quality = None
    if degraded is not None:
        quality = QualityResult(
            labelled_rows=40,
            metrics={"roc_auc": 0.612345},
            baseline={"roc_auc": 0.81},
            comparisons=[],
            tolerance=0.05,
            degraded=degraded,
            degraded_metrics=["roc_auc"] if degraded else [],
        )
    return DriftResult(
        model_name="loans",
        model_version="3",
        drift_share=0.5 if drift else 0.0,
        drift_share_threshold=0.3,
        dataset_drift=drift,
        drifted_columns=["a"] if drift else [],
        columns=cols,
        options=DriftOptions(),
        window=Window(rows=500, start=datetime(2025, 1, 1, tzinfo=UTC), end=None),
        quality=quality,
        report_path="/r/drift.html",
    )


@pytest.mark.parametrize(
    ("drift", "degraded", "status", "names"),
    [
        (False, None, "ok", []),
        (True, None, "drift", [events.DRIFT_DETECTED]),
        (False, True, "degraded", [events.QUALITY_DEGRADED]),
        (True, True, "drift+degraded", [events.DRIFT_DETECTED, events.QUALITY_DEGRADED]),
        (False, False, "ok", []),
    ],
)
def test_status_and_events(
    drift: bool, degraded: bool | None, status: str, names: list[str]
) -> None:
    result = _result(drift, degraded)
    assert verdict.status(result) == status
    assert [name for name, _ in verdict.monitor_events(result)] == names


def test_reason() -> None:
    assert verdict.reason(_result(True, None)) == "1/2 columns drifted (share 0.50, threshold 0.30)"
    assert verdict.reason(_result(False, True)).endswith("; quality degraded: roc_auc on 40 labels")
    assert verdict.reason(_result(False, False)).endswith("; quality ok on 40 labels")


def test_payloads() -> None:
    result = _result(True, True)
    assert verdict.drift_payload(result) == {
        "model_name": "loans",
        "model_version": "3",
        "drift_share": 0.5,
        "drift_share_threshold": 0.3,
        "drifted_columns": ["a"],
        "report_path": "/r/drift.html",
        "window": {"rows": 500, "start": "2025-01-01T00:00:00+00:00", "end": None},
    }
    assert verdict.quality_payload(result) == {
        "model_name": "loans",
        "model_version": "3",
        "degraded_metrics": ["roc_auc"],
        "metrics": {"roc_auc": 0.6123},
        "baseline": {"roc_auc": 0.81},
        "tolerance": 0.05,
        "labelled_rows": 40,
        "report_path": "/r/drift.html",
    }
    with pytest.raises(ValueError):
        verdict.quality_payload(_result(True, None))


def test_window_and_skip() -> None:
    window = pd.DataFrame({"model_version": ["3", None, "2", "3"]})
    assert verdict.window_versions(window) == ["2", "3"]
    assert verdict.window_versions(pd.DataFrame({"x": [1]})) == []
    assert (
        verdict.skip_reason(99, 100) == "99 predictions in the window (< 100): nothing to compare"
    )
    assert verdict.skip_reason(100, 100) is None
    assert "Skipped: why." in verdict.skipped_markdown("loans", "why")


def test_reference_and_quality_metric() -> None:
    lineage = ModelLineage(
        model_name="loans", model_version="3", run_id="r", dataset_name="loans", dataset_md5="abc"
    )
    assert reference_version(lineage) == ("loans", "abc")
    with pytest.raises(MloopError, match="no dataset md5"):
        reference_version(lineage.model_copy(update={"dataset_md5": ""}))
    assert quality_metric("classification", "pr_auc") == "pr_auc"
    assert quality_metric("regression", "pr_auc") == "r2"

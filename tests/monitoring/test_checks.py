"""One check of a window: drift and, with feedback labels, quality (Evidently on small frames)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from mloop.core.contract import DatasetContract
from mloop.core.generate import generate
from models.pipeline import build_pipeline, prepare_features
from models.spec import ModelSpec
from monitoring.checks import MonitorOptions, check_window
from monitoring.scoring import predict_frame


@pytest.fixture(scope="module")
def scored(baseline: pd.DataFrame, contract: DatasetContract) -> tuple[pd.DataFrame, pd.DataFrame]:
    pipe = build_pipeline(contract, ModelSpec(), 0).fit(
        prepare_features(baseline, contract), baseline["target"]
    )
    window = predict_frame(pipe, generate("baseline", 400, seed=5), contract)
    window["prediction_id"] = [f"p{i}" for i in range(len(window))]
    return predict_frame(pipe, baseline, contract), window


@pytest.mark.parametrize("publish", [True, False])
def test_labelled_window_gets_a_quality_verdict(
    scored: tuple[pd.DataFrame, pd.DataFrame], contract: DatasetContract, publish: bool
) -> None:
    reference, window = scored
    feedback = pd.DataFrame({"prediction_id": window["prediction_id"], "label": window["target"]})
    result, snapshot, quality_snapshot = check_window(
        reference,
        window,
        feedback,
        contract,
        model_name="loans",
        model_version="3",
        baseline_metrics={"roc_auc": 0.99},
        gate_metric="roc_auc",
        drift_share_threshold=0.3,
        options=MonitorOptions(min_labels=30, publish=publish),
    )
    assert not result.dataset_drift
    assert (
        snapshot is not None
    ) == publish  # not published: the screen's scores, no report to build
    assert result.quality is not None and result.quality.labelled_rows == len(window)
    assert result.quality.degraded_metrics == ["roc_auc"]  # far below the 0.99 baseline
    assert (quality_snapshot is not None) == publish


@pytest.mark.parametrize("baseline_auc", [0.99, 0.5])
def test_on_finding_builds_the_report_only_when_the_check_finds_something(
    scored: tuple[pd.DataFrame, pd.DataFrame], contract: DatasetContract, baseline_auc: float
) -> None:
    """The sweep's mode: a degraded window (baseline 0.99) gets both Evidently reports, a healthy one (0.5) none,
    and both verdicts are the ones the full report gives."""
    reference, window = scored
    feedback = pd.DataFrame({"prediction_id": window["prediction_id"], "label": window["target"]})
    kwargs: dict[str, Any] = dict(
        model_name="loans",
        model_version="3",
        baseline_metrics={"roc_auc": baseline_auc},
        gate_metric="roc_auc",
        drift_share_threshold=0.3,
    )
    result, snapshot, quality_snapshot = check_window(
        reference,
        window,
        feedback,
        contract,
        options=MonitorOptions(full_report="on-finding"),
        **kwargs,
    )
    always, _, _ = check_window(
        reference, window, feedback, contract, options=MonitorOptions(), **kwargs
    )
    finding = baseline_auc == 0.99
    assert result.quality is not None and result.quality.degraded == finding
    assert (snapshot is not None, quality_snapshot is not None, result.full_report) == (
        finding,
        finding,
        finding,
    )
    assert result.drifted_columns == always.drifted_columns
    assert [c.score for c in result.columns] == pytest.approx([c.score for c in always.columns])


def test_without_feedback_only_drift(
    scored: tuple[pd.DataFrame, pd.DataFrame], contract: DatasetContract
) -> None:
    reference, window = scored
    result, _, quality_snapshot = check_window(
        reference,
        window,
        pd.DataFrame(columns=pd.Index(["prediction_id", "label"])),
        contract,
        model_name="loans",
        model_version="3",
        baseline_metrics={},
        gate_metric="roc_auc",
        drift_share_threshold=0.3,
        options=MonitorOptions(),
    )
    assert result.quality is None and quality_snapshot is None

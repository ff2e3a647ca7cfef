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
    traffic = generate("baseline", 400, seed=5)
    window = predict_frame(pipe, traffic, contract)
    window["prediction_id"] = [f"p{i}" for i in range(len(window))]
    window["target"] = traffic["target"].to_numpy()  # the labels the tests feed back
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


def test_features_named_like_the_logs_columns_are_checked_apart_from_them(
    baseline: pd.DataFrame, contract: DatasetContract
) -> None:
    """Features named prediction, score, timestamp and label drift on their own values; the model's
    prediction is checked as log.prediction and quality is judged on it, not on the feature."""
    names = {
        "annual_income": "prediction",
        "credit_score": "score",
        "debt_to_income": "timestamp",
        "loan_purpose": "label",
    }
    clashing = contract.model_copy(
        update={
            "columns": [
                c.model_copy(update={"name": names.get(c.name, c.name)}) for c in contract.columns
            ]
        }
    )
    frame = baseline.rename(columns=names)
    pipe = build_pipeline(clashing, ModelSpec(), 0).fit(
        prepare_features(frame, clashing), frame["target"]
    )
    traffic = generate("baseline", 400, seed=5).rename(columns=names)
    window = predict_frame(pipe, traffic, clashing)
    window["prediction_id"] = [f"p{i}" for i in range(len(window))]
    window["timestamp"] = pd.Timestamp("2026-01-01", tz="UTC")
    feedback = pd.DataFrame({"prediction_id": window["prediction_id"], "label": traffic["target"]})
    result, _, _ = check_window(
        predict_frame(pipe, frame, clashing),
        window,
        feedback,
        clashing,
        model_name="loans",
        model_version="3",
        baseline_metrics={"roc_auc": 0.5},
        gate_metric="roc_auc",
        drift_share_threshold=0.3,
        options=MonitorOptions(publish=False),
    )
    checked = {c.column: c.is_prediction for c in result.columns}
    assert {n: checked.get(n) for n in names.values()} == dict.fromkeys(names.values(), False)
    assert {"log.prediction", "probability"} <= {
        c.column for c in result.columns if c.is_prediction
    }
    assert result.window.start == result.window.end == pd.Timestamp("2026-01-01", tz="UTC")
    assert result.quality is not None and result.quality.labelled_rows == len(window)
    assert result.quality.metrics["roc_auc"] > 0.7  # the model's probability, not a feature

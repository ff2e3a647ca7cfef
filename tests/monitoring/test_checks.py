"""One check of a window: drift and, with feedback labels, quality (Evidently on small frames)."""

from __future__ import annotations

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
    pipe = build_pipeline(contract, ModelSpec(), 0).fit(prepare_features(baseline, contract), baseline["target"])
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
        reference, window, feedback, contract, model_name="loans", model_version="3",
        baseline_metrics={"roc_auc": 0.99}, gate_metric="roc_auc", drift_share_threshold=0.3,
        options=MonitorOptions(min_labels=30, publish=publish),
    )
    assert not result.dataset_drift and snapshot is not None
    assert result.quality is not None and result.quality.labelled_rows == len(window)
    assert result.quality.degraded_metrics == ["roc_auc"]  # far below the 0.99 baseline
    assert (quality_snapshot is not None) == publish


def test_without_feedback_only_drift(scored: tuple[pd.DataFrame, pd.DataFrame], contract: DatasetContract) -> None:
    reference, window = scored
    result, _, quality_snapshot = check_window(
        reference, window, pd.DataFrame(columns=["prediction_id", "label"]), contract, model_name="loans",
        model_version="3", baseline_metrics={}, gate_metric="roc_auc", drift_share_threshold=0.3,
        options=MonitorOptions(),
    )
    assert result.quality is None and quality_snapshot is None

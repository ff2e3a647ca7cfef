"""Scoring frames like the service logs them, and labelling a window: tiny frames, no registry."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.pipeline import build_pipeline, prepare_features
from models.spec import ModelSpec
from monitoring.scoring import LABEL_COLUMN, labelled_window, predict_frame, score_column
from tests.models.helpers import synth_contract, synth_frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = synth_frame(300, seed=2)
    df["target"] = np.where(
        df["target"] == 1, "yes", "no"
    )  # string labels: prediction is a class label
    return df


def test_classifier_adds_prediction_and_probability(frame: pd.DataFrame) -> None:
    contract = synth_contract()
    pipe = build_pipeline(contract, ModelSpec(), 0).fit(
        prepare_features(frame, contract), frame["target"]
    )
    out = predict_frame(pipe, frame.head(20), contract)
    features = [f"input.{c.name}" for c in contract.feature_columns]
    assert list(out.columns) == [*features, "prediction", "probability"]  # the log's layout
    assert set(out["prediction"]) <= {"yes", "no"} and out["probability"].between(0, 1).all()
    # probability of the larger class
    assert (out["probability"] >= 0.5).eq(out["prediction"] == "yes").all()
    assert "prediction" not in frame.columns  # the input is not modified


def test_regressor_adds_prediction_and_score() -> None:
    contract, df = synth_contract(task="regression"), synth_frame(200, seed=3, task="regression")
    pipe = build_pipeline(contract, ModelSpec(), 0).fit(
        prepare_features(df, contract), df["target"]
    )
    out = predict_frame(pipe, df.head(5), contract)
    assert (out["prediction"] == out["score"]).all() and "probability" not in out.columns


def test_labelled_window_joins_feedback_on_prediction_id() -> None:
    window = pd.DataFrame({"prediction_id": ["a", "b", "c"], "probability": [0.1, 0.9, 0.5]})
    feedback = pd.DataFrame(
        {"prediction_id": ["c", "a", "z"], LABEL_COLUMN: [1, 0, 1], "other": [0, 0, 0]}
    )
    labelled = labelled_window(window, feedback)
    assert labelled is not None and sorted(labelled["prediction_id"]) == ["a", "c"]
    assert list(labelled.columns) == ["prediction_id", "probability", LABEL_COLUMN]
    assert labelled_window(window, feedback.iloc[:0]) is None
    assert labelled_window(window.drop(columns="prediction_id"), feedback) is None


def test_score_column() -> None:
    assert (
        score_column(pd.DataFrame(columns=pd.Index(["score", "probability"])), "classification")
        == "probability"
    )
    assert score_column(pd.DataFrame(columns=pd.Index(["score"])), "classification") == "score"
    assert score_column(pd.DataFrame(columns=pd.Index(["prediction"])), "classification") is None
    assert score_column(pd.DataFrame(columns=pd.Index(["score"])), "regression") is None

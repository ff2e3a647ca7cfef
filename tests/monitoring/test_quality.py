"""Quality check: degraded on concept drift with labels, not on the same population; metric logic."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mloop.core.contract import DatasetContract
from mloop.core.generate import generate
from models.pipeline import build_pipeline, prepare_features
from models.spec import ModelSpec
from monitoring.quality import (
    check_quality,
    compare_quality,
    compute_metrics,
    normalise_baseline,
)
from tests.helpers import column, columns


@pytest.fixture(scope="module")
def fitted(baseline: pd.DataFrame, contract: DatasetContract):
    pipe = build_pipeline(contract, ModelSpec(estimator="logistic_regression"))
    pipe.fit(prepare_features(baseline, contract), baseline["target"])
    holdout = generate("baseline", 3000, seed=21)
    proba = pipe.predict_proba(prepare_features(holdout, contract))[:, 1]
    holdout_metrics = compute_metrics(
        column(holdout, "target"),
        pd.Series(proba >= 0.5).astype(int),
        pd.Series(proba),
        "classification",
    )
    return pipe, holdout_metrics


def _labelled(pipe, df: pd.DataFrame, contract: DatasetContract) -> pd.DataFrame:
    proba = pipe.predict_proba(prepare_features(df, contract))[:, 1]
    return pd.DataFrame(
        {"prediction": (proba >= 0.5).astype(int), "probability": proba, "label": df["target"]}
    )


def test_concept_drift_with_labels_degrades_quality(fitted, contract: DatasetContract) -> None:
    pipe, holdout = fitted
    window = _labelled(pipe, generate("concept-drift", 3000, seed=22), contract)
    result = check_quality(window, "classification", holdout, tolerance=0.05, only=["roc_auc"])
    assert result is not None
    assert result.degraded and result.degraded_metrics == ["roc_auc"]
    assert result.metrics["roc_auc"] < holdout["roc_auc"] - 0.05


def test_same_population_is_not_degraded(fitted, contract: DatasetContract) -> None:
    pipe, holdout = fitted
    window = _labelled(pipe, generate("baseline", 3000, seed=23), contract)
    result = check_quality(
        window, "classification", {"holdout_roc_auc": holdout["roc_auc"]}, tolerance=0.05
    )
    assert result is not None and not result.degraded
    assert [c.metric for c in result.comparisons] == ["roc_auc"]


def test_too_few_labels_gives_no_verdict() -> None:
    window = pd.DataFrame({"prediction": [0, 1], "probability": [0.2, 0.8], "label": [0, 1]})
    assert check_quality(window, "classification", {"roc_auc": 0.8}, min_rows=30) is None


def test_lower_is_better_metrics_drop_upwards() -> None:
    res = compare_quality(
        {"rmse": 12.0, "r2": 0.5}, {"rmse": 10.0, "r2": 0.52}, tolerance=0.5, labelled_rows=100
    )
    by = {c.metric: c for c in res.comparisons}
    assert by["rmse"].drop == pytest.approx(2.0) and by["rmse"].degraded
    assert not by["r2"].degraded
    assert res.degraded_metrics == ["rmse"]


def test_baseline_names_are_normalised() -> None:
    assert normalise_baseline({"test_roc_auc": 0.7, "roc_auc": 0.8, "holdout_f1": 0.4}) == {
        "roc_auc": 0.8,
        "f1": 0.4,
    }


def _multiclass_window(rows: int, accuracy: float, seed: int) -> pd.DataFrame:
    """Labelled rows of a 3-class model with string labels, as the prediction log + feedback hold them."""
    import numpy as np

    rng = np.random.default_rng(seed)
    classes = np.array(["bird", "cat", "dog"])
    label = rng.choice(classes, rows)
    right = rng.random(rows) < accuracy
    prediction = np.where(right, label, classes[(np.searchsorted(classes, label) + 1) % 3])
    proba = np.full((rows, 3), 0.1)
    proba[np.arange(rows), np.searchsorted(classes, prediction)] = 0.8
    frame = pd.DataFrame(
        {"label": label, "prediction": prediction, "probability": proba.max(axis=1)}
    )
    for i, c in enumerate(classes):
        frame[f"p_{c}"] = proba[:, i]
    return frame


def test_multiclass_string_labels_quality() -> None:
    window = _multiclass_window(600, 0.9, 1)
    m = compute_metrics(
        column(window, "label"),
        column(window, "prediction"),
        column(window, "probability"),
        "classification",
    )
    assert m["accuracy"] == pytest.approx((window["label"] == window["prediction"]).mean())
    assert {"f1", "precision", "recall"} <= set(
        m
    ) and "roc_auc" not in m  # max-class probability: no ranking metric
    with_scores = compute_metrics(
        column(window, "label"),
        column(window, "prediction"),
        None,
        "classification",
        classes=["bird", "cat", "dog"],
        class_scores=columns(window, ["p_bird", "p_cat", "p_dog"]),
    )
    assert with_scores["roc_auc"] > 0.85 and "log_loss" in with_scores


def test_a_label_of_a_class_the_model_lacks_counts_as_a_miss_not_an_error() -> None:
    """Feedback may name a class born after training ('fish'): the window's quality is still computed."""
    window = _multiclass_window(600, 0.9, 1)
    window.loc[:29, "label"] = "fish"
    scores = columns(window, ["p_bird", "p_cat", "p_dog"])
    m = compute_metrics(
        column(window, "label"),
        column(window, "prediction"),
        None,
        "classification",
        classes=["bird", "cat", "dog"],
        class_scores=scores,
    )
    assert m["accuracy"] == pytest.approx((window["label"] == window["prediction"]).mean())
    known = compute_metrics(
        column(window, "label").iloc[30:],
        column(window, "prediction").iloc[30:],
        None,
        "classification",
        classes=["bird", "cat", "dog"],
        class_scores=scores.iloc[30:],
    )
    assert m["roc_auc"] == pytest.approx(known["roc_auc"]) and m["accuracy"] < known["accuracy"]


def test_multiclass_quality_verdict_falls_back_to_accuracy() -> None:
    baseline = {"accuracy": 0.9, "roc_auc": 0.97, "f1": 0.9}
    good = check_quality(
        _multiclass_window(600, 0.9, 2), "classification", baseline, only=["roc_auc"]
    )
    bad = check_quality(
        _multiclass_window(600, 0.6, 3), "classification", baseline, only=["roc_auc"]
    )
    assert (
        good is not None
        and not good.degraded
        and [c.metric for c in good.comparisons] == ["accuracy"]
    )
    assert bad is not None and bad.degraded and bad.degraded_metrics == ["accuracy"]
    scored = check_quality(
        _multiclass_window(600, 0.6, 3),
        "classification",
        baseline,
        only=["roc_auc"],
        classes=["bird", "cat", "dog"],
        class_score_columns=["p_bird", "p_cat", "p_dog"],
    )
    assert scored is not None and scored.degraded_metrics == ["roc_auc"]


def test_multiclass_quality_report_runs() -> None:
    from monitoring.quality import quality_report

    snapshot = quality_report(_multiclass_window(200, 0.8, 4), "classification")
    assert "Accuracy" in json.dumps(snapshot.dict(), default=str)

"""Multiclass classification in models/ (pure, tiny arrays): metrics with string labels, the weighted
bootstrap metric vs scikit-learn, the gate on multiclass scores, slices, and the default gate metric."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from mloop.core.settings import Settings
from models.evaluate import binary_labels, compute_metrics, evaluate_scores, weighted_metric
from models.gate_decision import GateConfig, decide, paired_bootstrap
from models.plots import classification_plots
from models.target import class_codes, class_counts, default_gate_metric, infer_classes, target_kind
from tests.models.helpers import gate_config

CLASSES = np.array(["bird", "cat", "dog"])
N = 900


def _labels(seed: int = 0, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).choice(CLASSES, size=n)


def _proba(y: np.ndarray, signal: float, seed: int) -> np.ndarray:
    """(n, 3) probabilities whose true-class logit grows with ``signal``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(y), len(CLASSES)))
    logits[np.arange(len(y)), class_codes(y, CLASSES)] += signal
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_metrics_for_three_string_classes_match_sklearn() -> None:
    y = _labels()
    p = _proba(y, 2.0, 1)
    m = compute_metrics("classification", y, p, CLASSES)
    assert set(m) == {"roc_auc", "pr_auc", "f1", "accuracy", "log_loss", "brier"}
    assert m["roc_auc"] == pytest.approx(
        roc_auc_score(y, p, multi_class="ovr", average="macro", labels=CLASSES)
    )
    assert m["log_loss"] == pytest.approx(log_loss(y, p, labels=CLASSES))
    pred = CLASSES[p.argmax(axis=1)]
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert (
        m["accuracy"] > 0.6 and m["roc_auc"] > 0.8
    )  # the signal is found: not the "largest label" mix-up
    assert compute_metrics("classification", y, p) == m  # class order inferred from the labels


def test_class_order_follows_classes_not_label_sorting() -> None:
    y = _labels()
    p = _proba(y, 2.0, 1)
    reordered = CLASSES[[2, 0, 1]]  # the same probabilities with columns in another class order
    same = compute_metrics("classification", y, p[:, [2, 0, 1]], reordered)
    assert same == pytest.approx(compute_metrics("classification", y, p, CLASSES))


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc", "f1", "accuracy", "log_loss", "brier"])
def test_weighted_metric_with_unit_weights_equals_the_plain_metric(metric: str) -> None:
    y = _labels(3, 300)
    p = _proba(y, 1.5, 4)
    ones = np.ones((1, len(y)))
    assert weighted_metric(metric, y, p, ones, CLASSES)[0] == pytest.approx(
        compute_metrics("classification", y, p)[metric]
    )
    codes = class_codes(y, CLASSES)
    assert weighted_metric(metric, codes, p, ones, range(3))[0] == pytest.approx(
        weighted_metric(metric, y, p, ones, CLASSES)[0]
    )


def test_weighted_auc_and_log_loss_match_sklearn_with_weights() -> None:
    y = _labels(5, 200)
    p = _proba(y, 1.0, 6)
    w = np.random.default_rng(7).integers(0, 4, len(y)).astype(float)
    W = np.stack([np.ones(len(y)), w])
    auc = weighted_metric("roc_auc", y, p, W, CLASSES)
    assert auc[0] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    per_class = [roc_auc_score(y == c, p[:, i], sample_weight=w) for i, c in enumerate(CLASSES)]
    assert auc[1] == pytest.approx(np.mean(per_class))
    ll = weighted_metric("log_loss", y, p, W, CLASSES)
    assert ll[0] == pytest.approx(log_loss(y, p))
    assert ll[1] == pytest.approx(log_loss(y, p, sample_weight=w))


def test_bootstrap_gains_are_positive_for_a_clearly_better_model() -> None:
    y = _labels()
    gains = paired_bootstrap(
        "roc_auc", y, _proba(y, 3.0, 1), _proba(y, 1.0, 2), resamples=200, seed=0, classes=CLASSES
    )
    assert gains.shape == (200,) and np.all(gains > 0)


def _decide(y, chal, champ, **kwargs):
    base = np.tile([np.mean(y == c) for c in CLASSES], (len(y), 1))
    return decide(
        model_name="m",
        task="classification",
        y=y,
        challenger_scores=chal,
        champion_scores=champ,
        baseline_scores=base,
        config=gate_config(resamples=1000),
        classes=CLASSES,
        challenger_version="2",
        champion_version="1" if champ is not None else None,
        **kwargs,
    )


def test_gate_promotes_a_clearly_better_multiclass_challenger() -> None:
    y = _labels()
    report = _decide(y, _proba(y, 3.0, 1), _proba(y, 1.0, 2))
    assert report.decision == "promote", report.summary()
    assert report.metric == "roc_auc" and report.ci_low > 0
    assert report.challenger_metrics["accuracy"] > report.reference_metrics["accuracy"]


def test_gate_rejects_a_worse_multiclass_challenger() -> None:
    y = _labels()
    report = _decide(y, _proba(y, 1.0, 1), _proba(y, 3.0, 2))
    assert report.decision == "reject" and report.gain < 0


def test_first_multiclass_model_against_the_prior_baseline() -> None:
    y = _labels()
    assert _decide(y, _proba(y, 3.0, 1), None).decision == "promote"
    assert (
        _decide(y, _proba(y, 0.0, 1), None).decision == "reject"
    )  # no signal: no better than the prior


def test_multiclass_slices_block_a_regression_on_one_level() -> None:
    y = _labels()
    champ = _proba(y, 2.0, 2)
    chal = _proba(y, 3.0, 1)
    segment = np.random.default_rng(9).random(len(y)) < 0.3
    chal[segment] = _proba(y[segment], 0.0, 3)  # useless on the segment, better elsewhere
    slices = {("segment", "s"): segment, ("segment", "rest"): ~segment}
    report = _decide(y, chal, champ, slices=slices)
    blocked = {s.level for s in report.slices if s.blocked}
    assert blocked == {"s"} and report.decision == "reject", report.summary()
    evaluation = evaluate_scores("classification", y, chal, slices, CLASSES)
    by_level = {s.level: s.metrics["roc_auc"] for s in evaluation.slices}
    assert by_level["s"] < 0.6 < by_level["rest"]


def test_slice_lacking_a_class_still_scores_the_present_classes() -> None:
    y = _labels()
    p = _proba(y, 2.0, 1)
    no_dogs = y != "dog"
    m = (
        evaluate_scores("classification", y, p, {("kind", "no-dogs"): no_dogs}, CLASSES)
        .slices[0]
        .metrics
    )
    assert 0.5 < m["roc_auc"] <= 1.0 and m["accuracy"] > 0


def test_default_gate_metric_follows_the_class_balance() -> None:
    assert default_gate_metric("classification", {0: 990, 1: 10}) == "pr_auc"  # 1% positives
    assert default_gate_metric("classification", {"no": 500, "yes": 500}) == "roc_auc"
    assert (
        default_gate_metric("classification", {0: 10, 1: 990}) == "roc_auc"
    )  # the rare class is the negative
    assert (
        default_gate_metric("classification", {"a": 5, "b": 300, "c": 300}) == "roc_auc"
    )  # multiclass: macro OvR
    assert default_gate_metric("regression", {}) == "rmse"


def test_gate_uses_pr_auc_for_rare_positives_unless_a_metric_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLOOP_GATE_METRIC", raising=False)
    counts = {0: 990, 1: 10}
    assert GateConfig.from_settings(Settings()).metric_for("classification", counts) == "pr_auc"
    assert (
        GateConfig.from_settings(Settings()).metric_for("classification") == "roc_auc"
    )  # no counts: as before
    assert (
        GateConfig.from_settings(Settings(), metric="f1").metric_for("classification", counts)
        == "f1"
    )
    monkeypatch.setenv("MLOOP_GATE_METRIC", "roc_auc")
    assert (
        GateConfig.from_settings(Settings()).metric_for("classification", counts) == "roc_auc"
    )  # explicit wins
    y = np.r_[np.zeros(1980, dtype=int), np.ones(20, dtype=int)]
    rng = np.random.default_rng(0)
    scores = np.clip(0.05 + 0.5 * y + rng.normal(0, 0.1, len(y)), 0, 1)
    report = decide(
        model_name="m",
        task="classification",
        y=y,
        challenger_scores=scores,
        champion_scores=None,
        baseline_scores=np.full(len(y), 0.01),
        config=gate_config(),
    )
    assert report.metric == "pr_auc"


def test_target_helpers_and_their_refusals() -> None:
    assert (
        target_kind("classification", 3) == "multiclass"
        and target_kind("classification", 2) == "binary"
    )
    assert target_kind("regression", 0) == "regression"
    assert class_counts(["b", "a", "b"]) == {"a": 1, "b": 2}
    assert class_codes(["dog", "bird"], CLASSES).tolist() == [2, 0]
    with pytest.raises(ValueError, match="not among the model's classes"):
        class_codes(["fish"], CLASSES)
    with pytest.raises(ValueError, match="pass classes"):
        infer_classes(["bird", "cat"], 3)  # a class is missing: refuse to guess the column order
    with pytest.raises(ValueError, match="does not apply to multiclass"):
        weighted_metric(
            "rmse", _labels(n=10), _proba(_labels(n=10), 1.0, 0), np.ones((1, 10)), CLASSES
        )


def test_binary_labels_keep_binary_and_leave_multiclass_labels_alone() -> None:
    assert binary_labels(np.array(["no", "yes", "no"])).tolist() == [0, 1, 0]
    assert binary_labels(np.array([0, 1, 1])).tolist() == [0, 1, 1]
    y = _labels(n=6)
    assert binary_labels(y).tolist() == y.tolist()


def test_multiclass_plots_are_written(tmp_path) -> None:
    y = _labels(n=120)
    paths = classification_plots(
        binary_labels(y), _proba(y, 2.0, 1), {"x": 0.1, "z": 0.02}, tmp_path
    )
    assert [p.name for p in paths] == ["roc.png", "confusion_matrix.png", "feature_importance.png"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_importance_and_plots_read_the_class_order_from_the_model(tmp_path) -> None:
    """A holdout (or its importance sample) lacking a class of the model: the columns follow classes_."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from models.evaluate import permutation_importance, predict_scores

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=600), "b": rng.normal(size=600)})
    y = np.where(X["a"] > 0, "cat", "dog").astype(object)
    y[:5] = "bird"
    model = LogisticRegression().fit(X, y)
    X_ho, y_ho = X.iloc[50:], y[50:]  # no bird
    importances = permutation_importance(model, X_ho, y_ho, "classification", max_rows=200)
    assert importances["a"] > importances["b"]
    scores = predict_scores(model, X_ho, "classification")
    assert len(classification_plots(y_ho, scores, importances, tmp_path, model.classes_)) == 3


def test_serving_outputs_carry_every_class_probability(tmp_path) -> None:
    """ONNX conversion of a 3-class pipeline with string labels, stored and loaded as the service does."""
    from sklearn.datasets import load_iris
    from sklearn.utils import Bunch

    from mloop.core.contract import infer_contract
    from models.pipeline import build_pipeline, prepare_features
    from models.spec import ModelSpec
    from serving.api.runtime import load_live_model
    from serving.api.schema import MulticlassAnswer, answer_model
    from serving.bundle.onnx_model import (
        convert_pipeline,
        load_predictor,
        smoke_test,
        write_model_dir,
    )

    bunch = load_iris(as_frame=True)
    assert isinstance(bunch, Bunch)  # return_X_y=False: the Bunch, not the (X, y) tuple
    df = bunch.frame.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    df["target"] = bunch.target_names[bunch.target.to_numpy()]
    contract = infer_contract(df, name="iris", target="target", task="classification")
    pipe = build_pipeline(contract, ModelSpec()).fit(prepare_features(df, contract), df["target"])
    conversion = convert_pipeline(pipe, contract, df)
    assert conversion.backend == "onnx", conversion.reason
    meta = write_model_dir(
        tmp_path,
        pipeline=pipe,
        contract=contract,
        conversion=conversion,
        metadata={"model_name": "iris", "model_version": "1"},
        sample=df.head(5),
    )
    assert meta["classes"] == ["setosa", "versicolor", "virginica"]
    predictor = load_predictor(tmp_path)
    assert smoke_test(predictor, meta) == []
    out = predictor.predict(meta["sample_columns"])
    assert out.classes is not None and out.class_probabilities is not None
    assert out.classes == meta["classes"] and len(out.class_probabilities) == 5
    assert out.predictions[0] == "setosa" and np.allclose(
        np.sum(out.class_probabilities, axis=1), 1.0
    )
    assert answer_model("classification", len(out.classes)) is MulticlassAnswer
    assert load_live_model("iris:v1", tmp_path).predictor.backend == "onnx"

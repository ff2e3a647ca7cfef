"""Model quality on labelled predictions, compared with the champion's holdout metrics.

Pure functions: labelled rows in (predictions joined to feedback labels), metrics and a verdict
out. Nothing cached. The metrics are computed with scikit-learn under the same names the training
runs log (roc_auc, pr_auc, accuracy, f1, log_loss, brier; rmse, mae, r2), so they compare one
to one with the metrics recorded on the champion's MLflow run. A metric "drops" when it moves in
its bad direction by more than ``tolerance`` (absolute); any such drop marks quality degraded.

Labels may be integers or strings. Binary: the positive class is the larger label (the model's
``classes_[1]``, whose probability the prediction log records). Multiclass (more than two classes,
from ``classes`` or the window's labels): accuracy and macro f1 / precision / recall from the
logged predicted class; macro one-vs-rest roc_auc / pr_auc, log_loss and brier only when per-class
probability columns are given (the log's ``probability`` column holds the predicted class's
probability, which no ranking metric can use). When the verdict's metrics (``only``) cannot be
computed on a multiclass window, accuracy decides instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from mloop.core.frames import column, numeric

LOWER_IS_BETTER = {"rmse", "mae", "mse", "log_loss", "brier"}
_PREFIXES = ("holdout_", "test_", "eval_", "val_", "valid_", "metrics.")


class MetricComparison(BaseModel):
    metric: str
    current: float
    baseline: float
    drop: float = Field(description="How much worse than the baseline (positive = worse).")
    tolerance: float
    degraded: bool


class QualityResult(BaseModel):
    """Quality of the window's labelled predictions vs the champion's holdout metrics."""

    labelled_rows: int
    metrics: dict[str, float]
    baseline: dict[str, float] = Field(
        description="The champion's holdout metrics used for comparison."
    )
    comparisons: list[MetricComparison]
    tolerance: float
    degraded: bool
    degraded_metrics: list[str]


def _label_values(*series: pd.Series) -> list[pd.Series]:
    """Labels comparable across the log and the feedback: integers when every value is integral, else text."""
    numbers = [numeric(s) for s in series]
    if all(n.notna().all() and (n == n.round()).all() for n in numbers):
        return [n.astype(int) for n in numbers]
    return [s.astype(str) for s in series]


def _labels(
    y_true: pd.Series, prediction: pd.Series, classes: Sequence[Any] | None = None
) -> tuple[pd.Series, pd.Series, list[Any]]:
    """Labels and predictions made comparable (:func:`_label_values`), and the classes in order: the
    model's ``classes`` when known, else the sorted labels of the window."""
    yt, yp = _label_values(y_true, prediction)
    if classes is not None:
        return yt, yp, _label_values(pd.Series(list(classes)))[0].tolist()
    return yt, yp, sorted(set(yt.tolist()) | set(yp.tolist()))


def _binary_values(yt: pd.Series, yp: pd.Series, levels: list[Any]) -> tuple[pd.Series, pd.Series]:
    """0/1 labels: 0/1 stay as they are, otherwise the larger label (``classes_[1]``) is the positive class."""
    positive = 1 if set(levels) <= {0, 1} else levels[-1]
    return (yt == positive).astype(int), (yp == positive).astype(int)


def compute_metrics(
    y_true: pd.Series,
    prediction: pd.Series,
    score: pd.Series | None,
    task: str,
    *,
    classes: Sequence[Any] | None = None,
    class_scores: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Quality metrics of one labelled window (metrics that cannot be computed are left out).

    ``classes``: the model's classes in order (default: the window's labels, sorted);
    ``class_scores``: multiclass per-class probabilities, one column per class in that order.
    """
    from sklearn import metrics as skm

    out: dict[str, float] = {}
    if task == "regression":
        yt, yp = y_true.astype(float).to_numpy(), prediction.astype(float).to_numpy()
        out["rmse"] = float(np.sqrt(skm.mean_squared_error(yt, yp)))
        out["mae"] = float(skm.mean_absolute_error(yt, yp))
        if len(yt) > 1:
            out["r2"] = float(skm.r2_score(yt, yp))
        return out
    labels, predicted, levels = _labels(y_true, prediction, classes)
    if len(levels) > 2:
        return _multiclass_quality(labels, predicted, levels, class_scores)
    yt, yp = (v.to_numpy() for v in _binary_values(labels, predicted, levels))
    out["accuracy"] = float(skm.accuracy_score(yt, yp))
    out["f1"] = float(skm.f1_score(yt, yp, zero_division=0))  # pyright: ignore[reportArgumentType]  # why: sklearn is untyped; pyright infers zero_division: str from its default "warn", 0 is valid
    out["precision"] = float(skm.precision_score(yt, yp, zero_division=0))  # pyright: ignore[reportArgumentType]  # why: sklearn is untyped; pyright infers zero_division: str from its default "warn", 0 is valid
    out["recall"] = float(skm.recall_score(yt, yp, zero_division=0))  # pyright: ignore[reportArgumentType]  # why: sklearn is untyped; pyright infers zero_division: str from its default "warn", 0 is valid
    if score is not None and len(np.unique(yt)) == 2:
        ys = score.astype(float).to_numpy()
        out["roc_auc"] = float(skm.roc_auc_score(yt, ys))
        out["log_loss"] = float(skm.log_loss(yt, np.clip(ys, 1e-15, 1 - 1e-15), labels=[0, 1]))
        out["pr_auc"] = float(skm.average_precision_score(yt, ys))
        out["brier"] = float(skm.brier_score_loss(yt, ys))
    return out


def _multiclass_quality(
    yt: pd.Series, yp: pd.Series, levels: list[Any], class_scores: pd.DataFrame | None
) -> dict[str, float]:
    """Label metrics (macro averages over ``levels``), plus the probability metrics when per-class scores are given."""
    from sklearn import metrics as skm

    from models.evaluate import multiclass_metrics

    out = {"accuracy": float(skm.accuracy_score(yt, yp))}
    for name, fn in (
        ("f1", skm.f1_score),
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
    ):
        out[name] = float(fn(yt, yp, labels=levels, average="macro", zero_division=0))  # pyright: ignore[reportArgumentType]  # why: sklearn is untyped; pyright infers zero_division: str from its default "warn", 0 is valid
    if class_scores is not None:
        # A label the model has no class for (feedback may name a class born after training) counts as a
        # miss above; it has no probability column, so the probability metrics are of the other rows.
        known = yt.isin(levels).to_numpy()
        if known.any():
            scores = class_scores.astype(float).to_numpy()[known]
            probs = multiclass_metrics(yt.to_numpy()[known], scores, classes=levels)
            out.update(
                {k: v for k, v in probs.items() if k in ("roc_auc", "pr_auc", "log_loss", "brier")}
            )
    return out


def normalise_baseline(metrics: Mapping[str, float]) -> dict[str, float]:
    """Champion run metrics keyed by plain name (``holdout_roc_auc`` / ``test_roc_auc`` -> ``roc_auc``)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = key
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
                break
        # exact names win over prefixed ones
        if name not in out or key == name:
            out[name] = float(value)
    return out


def compare_quality(
    current: Mapping[str, float],
    baseline: Mapping[str, float],
    *,
    tolerance: float,
    labelled_rows: int,
    only: Sequence[str] | None = None,
) -> QualityResult:
    """Compare current metrics with the baseline's metrics of the same names (``only`` these, if given)."""
    base = normalise_baseline(baseline)
    comparisons: list[MetricComparison] = []
    for name, value in current.items():
        if name not in base or (only is not None and name not in only):
            continue
        drop = value - base[name] if name in LOWER_IS_BETTER else base[name] - value
        comparisons.append(
            MetricComparison(
                metric=name,
                current=value,
                baseline=base[name],
                drop=drop,
                tolerance=tolerance,
                degraded=drop > tolerance,
            )
        )
    bad = [c.metric for c in comparisons if c.degraded]
    return QualityResult(
        labelled_rows=labelled_rows,
        metrics=dict(current),
        baseline={c.metric: c.baseline for c in comparisons},
        comparisons=comparisons,
        tolerance=tolerance,
        degraded=bool(bad),
        degraded_metrics=bad,
    )


def check_quality(
    labelled: pd.DataFrame,
    task: str,
    baseline: Mapping[str, float],
    *,
    tolerance: float = 0.05,
    min_rows: int = 30,
    label_column: str = "label",
    prediction_column: str = "prediction",
    score_column: str | None = "probability",
    only: Sequence[str] | None = None,
    classes: Sequence[Any] | None = None,
    class_score_columns: Sequence[str] | None = None,
) -> QualityResult | None:
    """Quality verdict of labelled predictions; None when fewer than ``min_rows`` labelled rows.

    ``only`` limits the verdict to these metrics (the monitor flow passes the gate metric: a
    threshold-free metric such as roc_auc is far less noisy on a small window than f1).
    Multiclass: ``classes`` is the model's class order and ``class_score_columns`` the columns
    holding each class's probability (same order), when the log has them.
    """
    rows = labelled.dropna(subset=[label_column, prediction_column])
    if len(rows) < min_rows:
        return None
    y, pred = column(rows, label_column), column(rows, prediction_column)
    score = column(rows, score_column) if score_column and score_column in rows.columns else None
    class_scores = rows.loc[:, list(class_score_columns)] if class_score_columns else None
    current = compute_metrics(y, pred, score, task, classes=classes, class_scores=class_scores)
    if (
        only is not None
        and task != "regression"
        and not any(m in current for m in only)
        and len(_labels(y, pred, classes)[2]) > 2
    ):
        only = ["accuracy"]  # e.g. roc_auc needs every class's probability, which the log lacks
    return compare_quality(
        current, baseline, tolerance=tolerance, labelled_rows=len(rows), only=only
    )


def quality_report(
    labelled: pd.DataFrame,
    task: str,
    *,
    label_column: str = "label",
    prediction_column: str = "prediction",
    score_column: str | None = "probability",
) -> Any:
    """An Evidently ClassificationPreset / RegressionPreset snapshot of the labelled window (for the HTML).

    The verdict comes from :func:`check_quality`; this is the browsable picture (confusion
    matrix, ROC/PR curves, error plots). Imports Evidently (slow): call it only with labels.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.core.datasets import BinaryClassification, MulticlassClassification, Regression
    from evidently.presets import ClassificationPreset, RegressionPreset

    rows = labelled.dropna(subset=[label_column, prediction_column])
    labels = (
        None
        if task == "regression"
        else _labels(column(rows, label_column), column(rows, prediction_column))
    )
    if labels is None:
        frame = pd.DataFrame(
            {
                "target": rows[label_column].astype(float),
                "prediction": rows[prediction_column].astype(float),
            }
        )
        definition = DataDefinition(
            regression=[Regression(target="target", prediction="prediction")]
        )
        preset: Any = RegressionPreset()
    elif len(labels[2]) > 2:
        target, prediction, _ = labels
        frame = pd.DataFrame({"target": target.astype(str), "prediction": prediction.astype(str)})
        definition = DataDefinition(
            classification=[
                MulticlassClassification(target="target", prediction_labels="prediction")
            ]
        )
        preset = ClassificationPreset()
    else:
        target, prediction = _binary_values(*labels)
        frame = pd.DataFrame({"target": target, "prediction": prediction})
        has_score = score_column is not None and score_column in rows.columns
        if has_score:
            frame["probability"] = rows[score_column].astype(float).to_numpy()
        definition = DataDefinition(
            classification=[
                BinaryClassification(
                    target="target",
                    prediction_labels="prediction",
                    prediction_probas="probability" if has_score else None,
                    pos_label=1,  # pyright: ignore[reportArgumentType]  # why: evidently's __init__ says str; the attribute it sets is a Label (int or str), and these labels are 0/1
                )
            ]
        )
        preset = ClassificationPreset()
    return Report([preset]).run(Dataset.from_pandas(frame, data_definition=definition), None)

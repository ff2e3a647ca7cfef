"""Score frames with a registered model the way the service logs them, and label a window.

The monitor compares like with like: the reference (training) sample is scored into the prediction
log's layout (:mod:`serving.log.layout`: each feature as ``input.<name>``, then ``prediction`` plus
``probability`` or ``score``), from the same model version, so prediction drift is measured too. Feedback
labels join the window on ``prediction_id`` (a feature named ``label`` is ``input.label`` there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mloop.core.contract import DatasetContract

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

LABEL_COLUMN = "label"
SCORE_COLUMNS = ("probability", "score")


def predict_frame(pipeline: Any, df: pd.DataFrame, contract: DatasetContract) -> pd.DataFrame:
    """``df``'s features as the service logs them (``input.<name>``, :mod:`serving.log.layout`) with the
    columns it logs beside them: ``prediction`` and ``probability`` (of the larger class) for classifiers
    with probabilities, else ``prediction`` and ``score``. Pure."""
    from models.pipeline import prepare_features
    from serving.log.layout import input_frame

    X = prepare_features(df, contract)
    out = input_frame(df.loc[:, [c.name for c in contract.feature_columns]])
    if contract.task == "classification" and hasattr(pipeline, "predict_proba"):
        proba = pipeline.predict_proba(X)
        classes = list(pipeline.classes_)
        out["prediction"] = [classes[i] for i in proba.argmax(axis=1)]
        out["probability"] = proba[:, -1]
    else:
        pred = pipeline.predict(X)
        out["prediction"] = pred
        out["score"] = pred
    return out


def add_predictions(
    tracking_uri: str,
    model_name: str,
    model_version: str,
    df: pd.DataFrame,
    contract: DatasetContract,
) -> pd.DataFrame:
    """:func:`predict_frame` with the registered version ``model_name`` v``model_version``."""
    from models.registry import load_pipeline

    return predict_frame(load_pipeline(tracking_uri, model_name, model_version), df, contract)


def labelled_window(window: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame | None:
    """The window's rows that have a feedback label (column ``label``), or None without feedback."""
    if feedback.empty or "prediction_id" not in window.columns:
        return None
    return window.merge(feedback[["prediction_id", LABEL_COLUMN]], on="prediction_id", how="inner")


def score_column(frame: pd.DataFrame, task: str) -> str | None:
    """The logged score a classification quality check ranks by (``probability`` or ``score``), if any."""
    if task != "classification":
        return None
    return next((c for c in SCORE_COLUMNS if c in frame.columns), None)

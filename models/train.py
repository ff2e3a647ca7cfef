"""Fit one spec and evaluate it on the holdout: the bare work the train flow orchestrates.

Pure apart from CPU: takes DataFrames, returns the fitted pipeline, its holdout scores and its
evaluation. ``mloop reproduce`` calls the same function with the recorded spec and seeds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mloop.core.contract import DatasetContract
from models.evaluate import Evaluation, evaluate_scores, predict_scores, slice_masks
from models.pipeline import build_pipeline, prepare_features
from models.spec import ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd


@dataclass
class FitResult:
    """A fitted candidate: the pipeline, its holdout scores and evaluation, and timings."""

    spec: ModelSpec
    pipeline: Any
    scores: np.ndarray
    evaluation: Evaluation
    fit_seconds: float
    evaluate_seconds: float


def target_values(df: pd.DataFrame, contract: DatasetContract) -> np.ndarray:
    return df[contract.target].to_numpy()


def fit_and_evaluate(
    contract: DatasetContract,
    spec: ModelSpec,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    *,
    seed: int = 42,
    min_slice_rows: int = 100,
    X_train: pd.DataFrame | None = None,
    X_holdout: pd.DataFrame | None = None,
) -> FitResult:
    """Fit ``spec`` on ``train``; score and evaluate it (overall and per slice) on ``holdout``.

    ``X_train``/``X_holdout`` may be passed when already prepared (several specs share them).
    """
    t0 = time.perf_counter()
    X_tr = X_train if X_train is not None else prepare_features(train, contract)
    X_ho = X_holdout if X_holdout is not None else prepare_features(holdout, contract)
    pipeline = build_pipeline(contract, spec, seed).fit(X_tr, target_values(train, contract))
    t1 = time.perf_counter()
    scores = predict_scores(pipeline, X_ho, contract.task)
    evaluation = evaluate_scores(
        contract.task,
        target_values(holdout, contract),
        scores,
        slice_masks(X_ho, contract, min_slice_rows),
        classes=getattr(pipeline, "classes_", None),
    )
    t2 = time.perf_counter()
    return FitResult(spec, pipeline, scores, evaluation, t1 - t0, t2 - t1)

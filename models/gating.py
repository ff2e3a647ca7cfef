"""Gate a challenger: score it, the champion (if any) and a dummy baseline on the same holdout, decide.

The decision itself is pure (:func:`models.gate.decide`); this adds the I/O around it: the
champion is loaded from the registry and scored on THIS holdout, whatever data it was trained on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mloop.core.contract import DatasetContract
from models.gate import GateConfig, GateReport
from models.split import HoldoutSplit

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


def gate_challenger(
    tracking_uri: str,
    name: str,
    contract: DatasetContract,
    challenger_scores: np.ndarray,
    champion: str | None,
    data: HoldoutSplit,
    config: GateConfig,
) -> GateReport:
    """The gate's report on a challenger (holdout ``challenger_scores``) vs version ``champion`` or, without
    one, the dummy baseline fitted on the training side of ``data``."""
    from models.evaluate import predict_scores, slice_masks
    from models.gate import decide
    from models.pipeline import build_baseline
    from models.registry import load_pipeline

    champion_scores = None
    if champion is not None:
        champion_scores = predict_scores(load_pipeline(tracking_uri, name, champion), data.X_holdout, contract.task)
    baseline = build_baseline(contract).fit(data.X_train, data.train[contract.target].to_numpy())
    return decide(
        model_name=name, task=contract.task, y=data.y_holdout, challenger_scores=challenger_scores,
        champion_scores=champion_scores, baseline_scores=predict_scores(baseline, data.X_holdout, contract.task),
        config=config, slices=slice_masks(data.X_holdout, contract, config.min_slice_rows),
        challenger_version=None, champion_version=champion,
        # the class order of every model fitted on this training side (sklearn sorts the labels), so
        # a class absent from the holdout cannot shift the score columns; the counts pick the metric
        # (as for the choice among candidates: TrainRun.metric)
        classes=getattr(baseline, "classes_", None),  # a regressor has none
        target_counts=data.train_class_counts,
    )

"""Gate a challenger: score it, the champion (if any) and a dummy baseline on the same holdout, decide.

The decision itself is pure (:func:`models.gate_decision.decide`); this adds the I/O around it: the
champion is loaded from the registry and scored on THIS holdout, whatever data it was trained on,
and both models are scored again on the **trusted holdout**.

Which holdout is trusted: the holdout (same split parameters as this run) of the **newest dataset
version whose labels were ingested from a file** (:func:`mloop.core.datasets.trusted_version`).
Why this rule rather than "the champion's own training data": the champion may itself have been
trained on a version built from feedback (an earlier retrain promoted it), so following it would
chain trust through feedback; the newest ingested version is the freshest data a person put in on
purpose, and no feedback can change its labels. Normally it IS the champion's training data. When
the challenger trained on that very version, the trusted holdout is the gate's own holdout and its
scores are reused.

A challenger trained on a feedback version may have seen some trusted-holdout rows: the retrain's
sliding window keeps the newest rows of the previous version, which include that version's holdout.
That only favours the challenger (it is scored on rows it was fitted on), so a rejection on the
trusted holdout stays meaningful; a pass is the weaker statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mloop.core.contract import DatasetContract
from mloop.core.lineage import LABEL_FEEDBACK, DatasetVersion, LabelSource
from mloop.core.settings import Settings
from models.gate_decision import GateConfig, GateReport
from models.split import HoldoutSplit, SplitParams

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    import numpy as np


def approval_required(
    approve_feedback_retrains: bool, label_source: LabelSource, requested: bool = False
) -> bool:
    """Whether a train run waits for a person before the champion moves: asked for (``requested``), or
    its labels came from feedback and ``approve_feedback_retrains`` (``MLOOP_APPROVE_FEEDBACK_RETRAINS``) is on."""
    return requested or (approve_feedback_retrains and label_source == LABEL_FEEDBACK)


@dataclass(frozen=True)
class TrustedHoldout:
    """The split of the ingested dataset version the gate trusts (see the module doc)."""

    md5: str
    data: HoldoutSplit
    same_holdout: bool = False
    """True: it is the version the challenger trained on, so ``data`` is the gate's own split."""


def load_trusted_holdout(
    settings: Settings,
    dataset: str,
    contract: DatasetContract,
    params: SplitParams,
    training: DatasetVersion,
    data: HoldoutSplit,
) -> TrustedHoldout | None:
    """The trusted holdout for a challenger trained on ``training`` (split ``data``), or None when the
    dataset has no ingested version. Same split parameters as the train run."""
    from mloop.core.datasets import read_version, trusted_version
    from models.split import prepare_split

    version = trusted_version(settings, dataset)
    if version is None:
        return None
    if version.md5 == training.md5:
        return TrustedHoldout(md5=version.md5, data=data, same_holdout=True)
    frame = read_version(settings, dataset, version.md5)
    return TrustedHoldout(md5=version.md5, data=prepare_split(frame, contract, params))


def gate_train_run(
    settings: Settings,
    dataset: str,
    contract: DatasetContract,
    training: DatasetVersion,
    params: SplitParams,
    data: HoldoutSplit,
    config: GateConfig,
    challenger_scores: np.ndarray,
    challenger_model: Any,
    champion: str | None,
) -> GateReport:
    """The train flow's gate: :func:`gate_challenger` with the trusted holdout of ``dataset`` loaded.
    A challenger trained on feedback labels with no ingested version to check it on is rejected."""
    trusted = load_trusted_holdout(settings, dataset, contract, params, training, data)
    return gate_challenger(
        settings.tracking_uri,
        dataset,
        contract,
        challenger_scores,
        champion,
        data,
        config,
        challenger_model=challenger_model,
        trusted=trusted,
        require_trusted=training.label_source == LABEL_FEEDBACK,
        model_cache=settings.state.model_downloads,
    )


def gate_challenger(
    tracking_uri: str,
    name: str,
    contract: DatasetContract,
    challenger_scores: np.ndarray,
    champion: str | None,
    data: HoldoutSplit,
    config: GateConfig,
    *,
    challenger_model: Any = None,
    trusted: TrustedHoldout | None = None,
    require_trusted: bool = False,
    model_cache: Path | None = None,
) -> GateReport:
    """The gate's report on a challenger (holdout ``challenger_scores``) vs version ``champion`` or, without
    one, the dummy baseline fitted on the training side of ``data``.

    ``trusted``: also score the challenger (``challenger_model``, needed unless the trusted holdout is
    ``data`` itself) and the champion (or a dummy fitted on the trusted training side) there; see
    :func:`models.gate_decision.decide` for the rule and ``require_trusted``. ``model_cache``: where a champion
    downloaded from a remote artifact store is kept for the next gate on this host (None: not kept)."""
    from models.evaluate import predict_scores, slice_masks
    from models.gate_decision import decide
    from models.pipeline import build_baseline
    from models.registry import load_pipeline

    champion_model = (
        load_pipeline(tracking_uri, name, champion, cache_root=model_cache)
        if champion is not None
        else None
    )
    champion_scores = None
    if champion_model is not None:
        champion_scores = predict_scores(champion_model, data.X_holdout, contract.task)
    baseline = build_baseline(contract).fit(data.X_train, data.train[contract.target].to_numpy())
    baseline_scores = predict_scores(baseline, data.X_holdout, contract.task)
    # the class order of every model fitted on this training side (sklearn sorts the labels), so
    # a class absent from the holdout cannot shift the score columns; the counts pick the metric
    # (as for the choice among candidates: TrainRun.metric)
    classes = getattr(baseline, "classes_", None)  # a regressor has none
    trusted_scores = None
    if trusted is not None:
        if trusted.same_holdout:
            trusted_scores = _reused_scores(
                trusted, challenger_scores, champion_scores, baseline_scores
            )
        else:
            trusted_scores = _trusted_scores(
                trusted, contract, challenger_model, champion_model, classes
            )
    return decide(
        model_name=name,
        task=contract.task,
        y=data.y_holdout,
        challenger_scores=challenger_scores,
        champion_scores=champion_scores,
        baseline_scores=baseline_scores,
        config=config,
        slices=slice_masks(data.X_holdout, contract, config.min_slice_rows),
        challenger_version=None,
        champion_version=champion,
        classes=classes,
        target_counts=data.train_class_counts,
        trusted=trusted_scores,
        require_trusted=require_trusted,
    )


def _reused_scores(
    trusted: TrustedHoldout,
    challenger: np.ndarray,
    champion: np.ndarray | None,
    baseline: np.ndarray,
) -> Any:
    """The trusted holdout is the gate's own: its scores are already there."""
    from models.gate_decision import TrustedScores

    return TrustedScores(
        dataset_md5=trusted.md5,
        y=trusted.data.y_holdout,
        challenger=challenger,
        champion=champion,
        baseline=baseline,
        same_holdout=True,
    )


def _trusted_scores(
    trusted: TrustedHoldout,
    contract: DatasetContract,
    challenger_model: Any,
    champion_model: Any,
    classes: Any,
) -> Any:
    """Challenger, champion and a dummy (fitted on the trusted training side, columns in ``classes`` order)
    scored on the trusted holdout."""
    from models.evaluate import predict_scores
    from models.gate_decision import TrustedScores
    from models.pipeline import build_baseline

    if challenger_model is None:
        raise ValueError("scoring the challenger on the trusted holdout needs its fitted model")
    X = trusted.data.X_holdout
    baseline = build_baseline(contract).fit(
        trusted.data.X_train, trusted.data.train[contract.target].to_numpy()
    )
    baseline_scores = predict_scores(baseline, X, contract.task)
    if classes is not None and baseline_scores.ndim == 2:
        baseline_scores = align_columns(baseline_scores, list(baseline.classes_), list(classes))
    return TrustedScores(
        dataset_md5=trusted.md5,
        y=trusted.data.y_holdout,
        challenger=predict_scores(challenger_model, X, contract.task),
        champion=predict_scores(champion_model, X, contract.task)
        if champion_model is not None
        else None,
        baseline=baseline_scores,
    )


def align_columns(scores: np.ndarray, have: list[Any], want: list[Any]) -> np.ndarray:
    """(n, k) class probabilities with columns ``have`` re-ordered to ``want`` (a class the model never
    saw scores 0). Pure."""
    import numpy as np

    if have == want:
        return scores
    out = np.zeros((scores.shape[0], len(want)), dtype=np.float64)
    for j, cls in enumerate(want):
        if cls in have:
            out[:, j] = scores[:, have.index(cls)]
    return out

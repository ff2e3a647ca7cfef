"""The candidates of one train run: their identity (cache key), which to fit, which one wins.

Idempotence lives in MLflow: each candidate's run is tagged with a cache key = hash(data md5,
spec, seed, split, code commit), and a FINISHED run with that key is reused instead of fitted
again (unless forced). Everything here is pure except :func:`plan_candidates` (reads MLflow and
git) and :func:`rescore_stored` (loads a stored model).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from models.spec import ModelSpec
from models.split import SplitParams
from models.tracking import RunRecord

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

    from mloop.core.contract import DatasetContract
    from mloop.core.lineage import DatasetVersion
    from models.train import FitResult


class CandidateResult(BaseModel):
    """One fitted (or reused) spec."""

    spec: ModelSpec
    run_id: str
    metrics: dict[str, float]
    reused: bool
    fit_seconds: float = 0.0


class CandidatePlan(BaseModel):
    """Which specs a train run fits and which it takes from finished runs with the same cache key."""

    specs: list[ModelSpec]
    experiment_id: str
    code_commit: str | None = None
    cache_keys: dict[str, str] = Field(description="Spec key -> cache key of its run.")
    cached: dict[str, RunRecord] = Field(
        default_factory=dict, description="Spec key -> reusable finished run."
    )

    @property
    def to_fit(self) -> list[ModelSpec]:
        """The specs without a reusable run, in the given order."""
        return [s for s in self.specs if s.key() not in self.cached]


def cache_keys(
    specs: list[ModelSpec], data_md5: str, seed: int, split: SplitParams, code_commit: str | None
) -> dict[str, str]:
    """Spec key -> cache key (the identity of the run that spec would produce)."""
    from models.tracking import cache_key

    return {
        s.key(): cache_key(data_md5, s, seed, split.test_size, split.seed, code_commit)
        for s in specs
    }


def plan_candidates(
    tracking_uri: str,
    artifact_root: Path | None,
    project_dir: Path,
    info: DatasetVersion,
    specs: list[ModelSpec],
    *,
    seed: int,
    split: SplitParams,
    force: bool,
) -> CandidatePlan:
    """The run's experiment, code commit and cache keys, and the finished runs it may reuse (none if forced)."""
    from mloop.core.lineage import git_commit
    from models.tracking import ensure_experiment, find_cached_run

    experiment_id = ensure_experiment(tracking_uri, info.name, artifact_root)
    code_commit = git_commit(project_dir)
    keys = cache_keys(specs, info.md5, seed, split, code_commit)
    found = (
        {}
        if force
        else {k: find_cached_run(tracking_uri, experiment_id, key) for k, key in keys.items()}
    )
    return CandidatePlan(
        specs=specs,
        experiment_id=experiment_id,
        code_commit=code_commit,
        cache_keys=keys,
        cached={k: run for k, run in found.items() if run is not None},
    )


def metric_rank(value: float | None, sign: int) -> float:
    """Sort key of a metric value: larger is better whatever the metric's direction; missing is worst."""
    return float("-inf") if value is None else sign * value


def best_candidate(candidates: list[CandidateResult], metric: str) -> CandidateResult:
    """The candidate with the best ``metric`` (the first one on ties)."""
    from models.evaluate import direction

    sign = direction(metric)
    return max(candidates, key=lambda c: metric_rank(c.metrics.get(metric), sign))


def fitted_candidate(run_id: str, result: FitResult) -> CandidateResult:
    """The candidate of a spec fitted in this run."""
    return CandidateResult(
        spec=result.spec,
        run_id=run_id,
        metrics=result.evaluation.metrics,
        reused=False,
        fit_seconds=result.fit_seconds,
    )


def cached_candidate(spec: ModelSpec, run: RunRecord) -> CandidateResult:
    """The candidate of a spec taken from a finished run with the same cache key."""
    return CandidateResult(spec=spec, run_id=run.run_id, metrics=run.metrics, reused=True)


def run_params(
    spec: ModelSpec,
    *,
    seed: int,
    split: SplitParams,
    contract: DatasetContract,
    train_rows: int,
    holdout_rows: int,
    data_md5: str,
) -> dict[str, Any]:
    """The MLflow params of a candidate's run (``mloop reproduce`` rebuilds the estimator from them)."""
    return {
        "spec": spec.key(),
        "estimator": spec.estimator,
        "seed": seed,
        "split_test_size": split.test_size,
        "split_seed": split.seed,
        "split_kind": "time" if contract.time_column else "stratified",
        "train_rows": train_rows,
        "holdout_rows": holdout_rows,
        "data_md5": data_md5,
        **{f"hp.{p}": v for p, v in spec.params.items()},
    }


def rescore_stored(
    tracking_uri: str, model_uri: str, task: str, X_holdout: pd.DataFrame
) -> np.ndarray:
    """The holdout scores of a model already stored in a run (skops, trusted types).

    Used when a reused run wins that was never registered (it lost to another spec before): the
    gate needs only its scores on this holdout.
    """
    from models.evaluate import predict_scores
    from models.registry import artifact_dir, load_pipeline_from_dir

    return predict_scores(
        load_pipeline_from_dir(artifact_dir(model_uri, tracking_uri)), X_holdout, task
    )

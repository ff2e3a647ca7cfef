"""Candidate selection, cache identity and run params of a train run: pure, no MLflow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.candidates import (
    CandidatePlan,
    CandidateResult,
    best_candidate,
    cache_keys,
    cached_candidate,
    fitted_candidate,
    metric_rank,
    run_params,
)
from models.evaluate import Evaluation
from models.spec import ModelSpec
from models.split import SplitParams, prepare_split
from models.tracking import RunRecord
from models.train import FitResult
from tests.models.helpers import synth_contract, synth_frame

LR, RF = ModelSpec(), ModelSpec(estimator="random_forest", params={"max_depth": 4})


def _cand(spec: ModelSpec, run_id: str, **metrics: float) -> CandidateResult:
    return CandidateResult(spec=spec, run_id=run_id, metrics=metrics, reused=False)


def test_cache_keys_are_stable_and_change_with_every_input() -> None:
    split = SplitParams()
    keys = cache_keys([LR, RF], "md5a", 42, split, "c1")
    assert set(keys) == {LR.key(), RF.key()} and len(set(keys.values())) == 2
    assert keys == cache_keys([LR, RF], "md5a", 42, split, "c1")
    others = [
        cache_keys([LR], "md5b", 42, split, "c1"),
        cache_keys([LR], "md5a", 7, split, "c1"),
        cache_keys([LR], "md5a", 42, SplitParams(test_size=0.3), "c1"),
        cache_keys([LR], "md5a", 42, SplitParams(seed=1), "c1"),
        cache_keys([LR], "md5a", 42, split, "c2"),
    ]
    assert all(o[LR.key()] != keys[LR.key()] for o in others)


def test_plan_fits_only_specs_without_a_cached_run() -> None:
    run = RunRecord(run_id="r1", experiment_id="1", artifact_uri="file:///a")
    plan = CandidatePlan(
        specs=[LR, RF],
        experiment_id="1",
        cache_keys={LR.key(): "k1", RF.key(): "k2"},
        cached={RF.key(): run},
    )
    assert plan.to_fit == [LR]
    assert CandidatePlan(specs=[LR, RF], experiment_id="1", cache_keys={}).to_fit == [LR, RF]


def test_best_candidate_follows_the_metric_direction() -> None:
    a, b = _cand(LR, "a", roc_auc=0.8, rmse=2.0), _cand(RF, "b", roc_auc=0.9, rmse=3.0)
    assert best_candidate([a, b], "roc_auc").run_id == "b"  # higher is better
    assert best_candidate([a, b], "rmse").run_id == "a"  # lower is better


def test_best_candidate_ranks_a_missing_metric_last_and_keeps_the_first_on_ties() -> None:
    missing, scored = _cand(LR, "missing"), _cand(RF, "scored", roc_auc=0.1)
    assert best_candidate([missing, scored], "roc_auc").run_id == "scored"
    assert best_candidate([_cand(LR, "x", r2=0.5), _cand(RF, "y", r2=0.5)], "r2").run_id == "x"
    assert metric_rank(None, 1) == metric_rank(None, -1) == float("-inf")
    assert metric_rank(0.3, -1) == -0.3


def test_fitted_and_cached_candidates() -> None:
    fit = FitResult(
        RF,
        pipeline=None,
        scores=np.zeros(2),
        evaluation=Evaluation(rows=2, metrics={"f1": 0.5}),
        fit_seconds=1.5,
        evaluate_seconds=0.1,
    )
    c = fitted_candidate("run-1", fit)
    assert (c.spec, c.run_id, c.metrics, c.reused, c.fit_seconds) == (
        RF,
        "run-1",
        {"f1": 0.5},
        False,
        1.5,
    )
    cached = cached_candidate(
        LR, RunRecord(run_id="r9", experiment_id="1", artifact_uri="x", metrics={"f1": 0.7})
    )
    assert (
        cached.reused
        and cached.run_id == "r9"
        and cached.metrics == {"f1": 0.7}
        and cached.fit_seconds == 0.0
    )


@pytest.mark.parametrize(("time_column", "kind"), [("event_time", "time"), (None, "stratified")])
def test_run_params(time_column: str | None, kind: str) -> None:
    contract = synth_contract(time_column=time_column)
    params = run_params(
        RF,
        seed=3,
        split=SplitParams(test_size=0.25, seed=9),
        contract=contract,
        train_rows=75,
        holdout_rows=25,
        data_md5="abc",
    )
    assert params == {
        "spec": RF.key(),
        "estimator": "random_forest",
        "seed": 3,
        "split_test_size": 0.25,
        "split_seed": 9,
        "split_kind": kind,
        "train_rows": 75,
        "holdout_rows": 25,
        "data_md5": "abc",
        "hp.max_depth": 4,
    }


def test_prepare_split_prepares_features_and_labels_once() -> None:
    contract, df = synth_contract(), synth_frame(200, seed=1)
    data = prepare_split(df, contract, SplitParams(test_size=0.25))
    assert len(data.train) == 150 and len(data.holdout) == 50
    assert (
        list(data.X_train.columns) == list(data.X_holdout.columns)
        and "target" not in data.X_train.columns
    )
    assert isinstance(data.X_holdout, pd.DataFrame) and data.X_holdout.index.equals(
        data.holdout.index
    )
    assert (data.y_holdout == data.holdout["target"].to_numpy()).all()
    assert (
        data.holdout["event_time"].min() > data.train["event_time"].max()
    )  # time-based: the newest rows

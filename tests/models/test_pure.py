"""Unit tests of the pure parts: spec parsing, pipeline factory, split, metrics, evaluation."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from mloop.core.contract import Task
from mloop.core.errors import MloopError
from models.evaluate import (
    compute_metrics,
    direction,
    evaluate_scores,
    permutation_importance,
    slice_masks,
    weighted_metric,
)
from models.pipeline import build_pipeline, prepare_features
from models.spec import EstimatorName, ModelSpec, parse_spec
from models.split import holdout_only_classes, split_dataset
from models.train import fit_and_evaluate
from tests.helpers import column
from tests.models.helpers import synth_contract, synth_frame


def test_parse_spec_reads_estimator_and_typed_params() -> None:
    spec = parse_spec("random_forest:n_estimators=50,max_depth=4,criterion=entropy")
    assert spec.estimator == "random_forest"
    assert spec.params == {"n_estimators": 50, "max_depth": 4, "criterion": "entropy"}
    assert parse_spec("logistic_regression") == ModelSpec()
    assert (
        spec.key()
        == ModelSpec(
            estimator="random_forest",
            params={"max_depth": 4, "criterion": "entropy", "n_estimators": 50},
        ).key()
    )


@pytest.mark.parametrize("text", ["svm", "random_forest:max_depth"])
def test_parse_spec_rejects_unknown_or_malformed(text: str) -> None:
    with pytest.raises(MloopError):
        parse_spec(text)


def test_prepare_features_types_and_order(frame: pd.DataFrame, contract) -> None:
    X = prepare_features(frame, contract)
    assert list(X.columns) == ["income", "debt", "age", "segment", "grade", "flag"]
    assert X["income"].dtype == np.float64
    assert set(X["flag"].dropna()) <= {"True", "False"}
    assert column(X, "grade").isna().any()  # missing stays missing, imputed inside the pipeline


def test_prepare_features_reports_missing_column(frame: pd.DataFrame, contract) -> None:
    with pytest.raises(MloopError, match="income"):
        prepare_features(frame.drop(columns=["income"]), contract)


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize(
    "estimator", ["logistic_regression", "hist_gradient_boosting", "random_forest"]
)
def test_every_estimator_fits_and_handles_unknown_levels(
    task: Task, estimator: EstimatorName
) -> None:
    contract = synth_contract(task=task)
    df = synth_frame(600, seed=2, task=task)
    small = {"random_forest": {"n_estimators": 10}, "hist_gradient_boosting": {"max_iter": 15}}
    spec = ModelSpec(estimator=estimator, params=small.get(estimator, {}))
    pipe = build_pipeline(contract, spec, seed=0).fit(prepare_features(df, contract), df["target"])
    probe = df.head(5).copy()
    probe["segment"] = "never-seen"
    out = pipe.predict(prepare_features(probe, contract))
    assert len(out) == 5
    from sklearn.base import is_classifier

    assert is_classifier(pipe) == (task == "classification")


def test_time_split_holds_out_newest_rows(frame: pd.DataFrame, contract) -> None:
    shuffled = frame.sample(frac=1, random_state=3)
    train, test = split_dataset(shuffled, contract, test_size=0.25)
    assert len(test) == 500 and len(train) == 1500
    assert train["event_time"].max() < test["event_time"].min()


def test_stratified_split_is_deterministic_and_stratified(frame: pd.DataFrame) -> None:
    contract = synth_contract(time_column=None)
    a_train, a_test = split_dataset(frame, contract, test_size=0.2, seed=7)
    b_train, b_test = split_dataset(frame, contract, test_size=0.2, seed=7)
    c_train, c_test = split_dataset(frame, contract, test_size=0.2, seed=8)
    assert a_test.index.equals(b_test.index)
    assert not a_test.index.equals(c_test.index)
    assert abs(a_test["target"].mean() - frame["target"].mean()) < 0.01


def test_split_refuses_tiny_frames(contract) -> None:
    with pytest.raises(MloopError):
        split_dataset(synth_frame(3), contract, test_size=0.1)


def test_a_class_only_in_the_newest_rows_is_refused_by_name(frame: pd.DataFrame, contract) -> None:
    """The holdout of a time split is the newest rows: a class first seen there cannot be learned (the
    fit would otherwise fail later, in evaluation, with no word of why)."""
    late = frame.sort_values("event_time").reset_index(drop=True).astype({"target": object})
    late.loc[len(late) - 3 :, "target"] = "new"
    with pytest.raises(
        MloopError,
        match="class\\(es\\) 'new' \\(3 rows\\) of 'target' are only in the holdout "
        "\\(the holdout is the newest 20% of rows by 'event_time'\\)",
    ):
        split_dataset(late, contract, test_size=0.2)
    early = late.copy()
    early.loc[0, "target"] = "new"  # one earlier row of it: learnable
    train, test = split_dataset(early, contract, test_size=0.2)
    assert "new" in set(train["target"]) and "new" in set(test["target"])


def test_holdout_only_classes_counts_by_label_text() -> None:
    train, holdout = (
        pd.Series([0, 1, 1, None]),
        pd.Series([1, 2, 2, "0", None]),
    )  # 1.0 is 1; "0" is not 0
    assert holdout_only_classes(train, holdout) == {"0": 1, "2": 2}
    assert holdout_only_classes(holdout, train) == {"0.0": 1}  # 0 is on one side only


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc", "f1", "accuracy", "log_loss", "brier"])
def test_weighted_metric_with_unit_weights_matches_sklearn(metric: str) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    s = np.round(np.clip(y * 0.3 + rng.random(400) * 0.7, 0, 1), 2)  # rounded: many ties
    ours = weighted_metric(metric, y, s, np.ones((1, 400)))[0]
    assert ours == pytest.approx(compute_metrics("classification", y, s)[metric], abs=1e-9)


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2"])
def test_weighted_regression_metric_matches_sklearn(metric: str) -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=300)
    s = y + rng.normal(scale=0.5, size=300)
    ours = weighted_metric(metric, y, s, np.ones((1, 300)))[0]
    assert ours == pytest.approx(compute_metrics("regression", y, s)[metric], abs=1e-9)


def test_weights_equal_row_repetition() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 50)
    s = rng.random(50)
    counts = rng.integers(0, 3, 50)
    rep = np.repeat(np.arange(50), counts)
    expected = skm.roc_auc_score(y[rep], s[rep])
    assert weighted_metric("roc_auc", y, s, counts[None, :].astype(float))[0] == pytest.approx(
        expected
    )


def test_direction_knows_each_metric() -> None:
    assert direction("roc_auc") == 1 and direction("log_loss") == -1 and direction("rmse") == -1
    with pytest.raises(ValueError):
        direction("nope")


def test_evaluation_has_overall_and_slice_metrics(frame: pd.DataFrame, contract) -> None:
    train, test = split_dataset(frame, contract)
    result = fit_and_evaluate(contract, ModelSpec(), train, test, min_slice_rows=50)
    ev = result.evaluation
    assert set(ev.metrics) == {"roc_auc", "pr_auc", "f1", "accuracy", "log_loss", "brier"}
    assert ev.metrics["roc_auc"] > 0.75
    levels = {(s.column, s.level) for s in ev.slices}
    assert ("segment", "A") in levels and ("flag", "True") in levels
    assert all(s.rows >= 50 for s in ev.slices)


def test_slice_masks_skip_small_levels(frame: pd.DataFrame, contract) -> None:
    X = prepare_features(frame, contract)
    masks = slice_masks(X, contract, min_rows=500)
    assert ("segment", "A") in masks and ("segment", "C") not in masks  # C is ~20% of 2000 rows


def test_evaluate_scores_regression() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    ev = evaluate_scores("regression", y, y + 1)
    assert ev.metrics["mae"] == pytest.approx(1.0) and ev.metrics["rmse"] == pytest.approx(1.0)


def test_permutation_importance_ranks_the_signal(frame: pd.DataFrame, contract) -> None:
    train, test = split_dataset(frame, contract)
    result = fit_and_evaluate(contract, ModelSpec(), train, test)
    imp = permutation_importance(
        result.pipeline, prepare_features(test, contract), test["target"], "classification"
    )
    assert max(imp, key=imp.__getitem__) == "income"
    assert imp["income"] > imp["flag"]


def _sqlite_error(tmp_path: Path, what: str) -> sqlite3.Error:
    """A real sqlite3 error as MLflow's store meets it: ``busy`` (another writer holds the file) or
    ``taken`` (a primary key another writer inserted)."""
    path = tmp_path / f"{what}.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as setup:
        setup.execute("CREATE TABLE datasets (name TEXT PRIMARY KEY)")
        setup.execute("INSERT INTO datasets VALUES ('loans')")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        if what == "busy":
            holder.execute("BEGIN IMMEDIATE")
        with closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as writer:
            writer.execute("INSERT INTO datasets VALUES ('loans')")
    except sqlite3.Error as exc:
        return exc
    finally:
        holder.close()
    raise AssertionError(f"sqlite raised nothing for {what!r}")


def _failing_once(error: BaseException) -> tuple[Callable[[], str], list[int]]:
    """A call that raises an MLflow error from ``error`` (as MLflow's store does) once, then answers."""
    from mlflow.exceptions import MlflowException

    calls: list[int] = []

    def call() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise MlflowException("(sqlite3 error) store failed") from error
        return "linked"

    return call, calls


def test_with_retry_retries_a_busy_store_and_a_lost_key_race(tmp_path: Path) -> None:
    from models.registry import with_retry

    busy, taken = _sqlite_error(tmp_path, "busy"), _sqlite_error(tmp_path, "taken")
    call, calls = _failing_once(busy)
    assert with_retry(call, delay=0) == "linked" and len(calls) == 2
    call, calls = _failing_once(taken)
    assert with_retry(call, delay=0, unique_race=True) == "linked" and len(calls) == 2
    call, calls = _failing_once(taken)
    with pytest.raises(Exception, match="store failed"):
        with_retry(call, delay=0)  # a taken key is final unless the caller expects the race
    assert len(calls) == 1


def test_with_retry_tells_errors_by_type_and_code_not_text() -> None:
    from mlflow.exceptions import RestException

    from models.registry import is_transient, with_retry

    calls: list[int] = []

    def locked_in_words() -> str:
        calls.append(1)
        raise RuntimeError("database is locked; UNIQUE constraint failed")

    with pytest.raises(RuntimeError):
        with_retry(locked_in_words, delay=0, unique_race=True)
    assert len(calls) == 1
    raced = RestException(
        {
            "error_code": "BAD_REQUEST",
            "message": "(psycopg.errors.UniqueViolation) duplicate key value violates unique "
            'constraint "dataset_pk"',
        }
    )
    assert is_transient(raced, unique_race=True) and not is_transient(raced)
    other = RestException({"error_code": "BAD_REQUEST", "message": "(psycopg.errors.DataError) x"})
    assert not is_transient(other, unique_race=True)
    # the retries end: the last attempt's error is raised as it is, after ``attempts`` calls
    calls.clear()

    def always_busy() -> str:
        calls.append(1)
        raise raced

    with pytest.raises(RestException, match="UniqueViolation"):
        with_retry(always_busy, attempts=3, delay=0, unique_race=True)
    assert len(calls) == 3

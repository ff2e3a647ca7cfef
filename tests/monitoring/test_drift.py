"""Drift check: verdicts on generated scenarios, methods, big-window sampling, edge cases."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from mloop.core.contract import DatasetContract
from mloop.core.generate import generate
from monitoring.drift import DriftOptions, check_drift, column_kinds


def test_covariate_shift_is_detected(baseline: pd.DataFrame, contract: DatasetContract) -> None:
    current = generate("covariate-shift", 2000, seed=7)
    result = check_drift(
        baseline, current, contract, time_column="event_time", model_name="loans", model_version="3"
    )
    assert result.dataset_drift
    assert result.drift_share >= result.drift_share_threshold
    assert {"credit_score", "annual_income"} <= set(result.drifted_columns)
    assert result.model_version == "3"
    assert result.window.rows == 2000 and result.window.reference_rows == 3000
    assert result.window.start is not None and result.window.end is not None
    by_name = {c.column: c for c in result.columns}
    assert (
        by_name["credit_score"].method == "wasserstein" and by_name["credit_score"].threshold == 0.1
    )
    assert by_name["region"].method == "jensenshannon"
    assert "event_time" not in by_name and "target" not in by_name


def test_baseline_vs_baseline_other_seed_is_not_drift(
    baseline: pd.DataFrame, contract: DatasetContract
) -> None:
    current = generate("baseline", 2000, seed=99)
    result = check_drift(baseline, current, contract, time_column="event_time")
    assert not result.dataset_drift
    assert result.drifted_columns == []


def test_methods_are_pinned_for_small_windows(
    baseline: pd.DataFrame, contract: DatasetContract
) -> None:
    """Evidently's default would switch to K-S p-values at <= 1000 reference rows; ours does not."""
    result = check_drift(
        baseline.head(500), generate("baseline", 300, seed=5), contract, time_column="event_time"
    )
    methods = {c.method for c in result.columns}
    assert methods <= {"wasserstein", "jensenshannon"}
    assert "ks" not in methods


def test_prediction_columns_are_checked_when_present(
    baseline: pd.DataFrame, contract: DatasetContract
) -> None:
    rng = np.random.default_rng(0)
    ref = baseline.assign(
        prediction=rng.integers(0, 2, len(baseline)), probability=rng.random(len(baseline))
    )
    cur = generate("baseline", 1000, seed=3)
    cur = cur.assign(prediction=1, probability=rng.uniform(0.8, 1.0, len(cur)))
    result = check_drift(ref, cur, contract, time_column="event_time")
    preds = {c.column: c for c in result.columns if c.is_prediction}
    assert set(preds) == {"prediction", "probability"}
    assert preds["prediction"].kind == "categorical" and preds["probability"].kind == "numeric"
    assert preds["probability"].drifted and preds["prediction"].drifted


def test_sampled_verdict_equals_unsampled_verdict(contract: DatasetContract) -> None:
    """Big-window strategy on a moderate size: per-column verdicts equal the unsampled run's."""
    ref = generate("baseline", 6000, seed=11)
    cur = generate("covariate-shift", 20000, seed=12)
    sampled = check_drift(
        ref, cur, contract, options=DriftOptions(max_rows=2000), time_column="event_time"
    )
    full = check_drift(
        ref, cur, contract, options=DriftOptions(max_rows=None), time_column="event_time"
    )
    assert sampled.window.sampled_rows == 2000 and full.window.sampled_rows == 20000
    assert {c.column: c.drifted for c in sampled.columns} == {
        c.column: c.drifted for c in full.columns
    }
    assert all(c.exact for c in full.columns)
    # near-threshold columns were recomputed on all rows: their score is the unsampled score
    full_scores = {c.column: c.score for c in full.columns}
    for col in sampled.columns:
        if col.sampled_score is not None:
            assert abs(col.score - full_scores[col.column]) < 1e-9


def test_sampling_is_deterministic(contract: DatasetContract) -> None:
    ref = generate("baseline", 4000, seed=1)
    cur = generate("covariate-shift", 5000, seed=2)
    opts = DriftOptions(max_rows=1000, seed=5)
    a = check_drift(ref, cur, contract, options=opts, time_column="event_time")
    b = check_drift(ref, cur, contract, options=opts, time_column="event_time")
    assert [c.score for c in a.columns] == [c.score for c in b.columns]


def test_all_null_column_counts_as_drift(baseline: pd.DataFrame, contract: DatasetContract) -> None:
    current = generate("baseline", 1000, seed=4).assign(annual_income=np.nan)
    result = check_drift(baseline, current, contract, time_column="event_time")
    col = next(c for c in result.columns if c.column == "annual_income")
    assert col.drifted and col.method == "all-null"


def test_column_kinds_follow_the_contract(contract: DatasetContract) -> None:
    kinds = column_kinds(contract, [c.name for c in contract.columns] + ["prediction", "score"])
    assert kinds["region"] == ("categorical", False)
    assert kinds["credit_score"] == ("numeric", False)
    assert kinds["prediction"] == ("categorical", True)
    assert kinds["score"] == ("numeric", True)
    assert "target" not in kinds and "event_time" not in kinds


def test_null_surge_marks_columns_drifted(
    baseline: pd.DataFrame, contract: DatasetContract
) -> None:
    result = check_drift(
        baseline, generate("missing-surge", 2000, seed=6), contract, time_column="event_time"
    )
    by = {c.column: c for c in result.columns}
    assert {"annual_income", "employment_years", "debt_to_income"} <= set(result.drifted_columns)
    income = by["annual_income"]
    assert (
        income.null_surge
        and income.null_share_current > 0.25
        and income.null_share_reference < 0.05
    )
    assert income.distribution_drifted is False  # the non-null values did not move
    assert not by["region"].null_surge and by["region"].distribution_drifted is False


def _screen_and_report(
    ref: pd.DataFrame, cur: pd.DataFrame, contract: DatasetContract, **kw: Any
) -> tuple:
    from monitoring.drift import drift_report

    screened, no_snapshot = drift_report(ref, cur, contract, report=False, **kw)
    reported, snapshot = drift_report(ref, cur, contract, report=True, **kw)
    assert no_snapshot is None and snapshot is not None
    return screened, reported


def _assert_same_verdict(screened, reported) -> None:
    assert screened.drifted_columns == reported.drifted_columns
    assert screened.dataset_drift == reported.dataset_drift
    for a, b in zip(screened.columns, reported.columns, strict=True):
        assert (a.column, a.method, a.threshold, a.drifted, a.exact) == (
            b.column,
            b.method,
            b.threshold,
            b.drifted,
            b.exact,
        )
        assert a.score == pytest.approx(b.score, rel=1e-9, abs=1e-12), a.column


@pytest.mark.parametrize(
    "scenario", ["baseline", "covariate-shift", "new-category", "missing-surge"]
)
def test_the_screen_gives_the_reports_scores_and_verdict(
    baseline: pd.DataFrame, contract: DatasetContract, scenario: str
) -> None:
    """The sweep's screen (Evidently's stat tests without the report) and the full report agree column by column."""
    current = generate(scenario, 1500, seed=11)
    _assert_same_verdict(
        *_screen_and_report(
            baseline,
            current,
            contract,
            time_column="event_time",
            options=DriftOptions(max_rows=1000),
        )
    )


@pytest.mark.parametrize("loader", ["load_wine", "load_diabetes"])
def test_the_screen_agrees_with_the_report_on_scikit_learn_tables(loader: str) -> None:
    """Tables we did not design, with awkward column names (spaces, slashes, parentheses) and a low-cardinality
    numeric column (the JS-distance rule)."""
    import sklearn.datasets

    from mloop.core.contract import infer_contract

    frame = getattr(sklearn.datasets, loader)(as_frame=True).frame
    frame.columns = [f"{c} (x/y)" if i % 2 else c for i, c in enumerate(frame.columns)]
    frame = frame.rename(columns={frame.columns[-1]: "target"})
    frame["few"] = np.arange(len(frame)) % 3
    task = "regression" if loader == "load_diabetes" else "classification"
    contract = infer_contract(frame, name="table", target="target", task=task)
    half = len(frame) // 2
    ref, cur = frame.iloc[:half].reset_index(drop=True), frame.iloc[half:].reset_index(drop=True)
    screened, reported = _screen_and_report(ref, cur, contract, time_column=None)
    _assert_same_verdict(screened, reported)
    assert any(c.method == "jensenshannon" for c in screened.columns if c.column == "few")

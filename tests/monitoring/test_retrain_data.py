"""Retraining data: feedback joined to predictions, sliding-window merge rule, nothing-new cases."""

from __future__ import annotations

import pandas as pd

from mloop.core.contract import DatasetContract
from mloop.core.generate import generate
from monitoring.retrain_data import RetrainRule, labelled_rows, merge_window
from serving.log.layout import input_frame
from tests.helpers import columns


def _log(
    df: pd.DataFrame, contract: DatasetContract, start: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A prediction log (without the time column, as clients send it) and feedback for it."""
    feats = [c.name for c in contract.feature_columns]
    preds = input_frame(columns(df, feats))  # the log's layout: inputs apart from its own columns
    preds.insert(
        0, "prediction_id", pd.Series([f"p{i}" for i in range(len(df))], index=preds.index)
    )
    preds["timestamp"] = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(range(len(df)), unit="min")
    preds["model_name"], preds["model_version"] = "loans", "1"
    preds["prediction"], preds["probability"] = 0, 0.1
    feedback = pd.DataFrame(
        {
            "prediction_id": preds["prediction_id"],
            "label": df["target"].to_numpy(),
            "timestamp": preds["timestamp"],
        }
    )
    return preds, feedback


def test_join_builds_rows_in_the_dataset_schema(contract: DatasetContract) -> None:
    df = generate("covariate-shift", 50, seed=3)
    preds, feedback = _log(df, contract, "2026-01-01")
    feedback = pd.concat(
        [
            feedback.iloc[:40],
            pd.DataFrame(
                {
                    "prediction_id": ["unknown"],
                    "label": [1],
                    "timestamp": [pd.Timestamp("2026-02-01", tz="UTC")],
                }
            ),
        ]
    )
    rows = labelled_rows(preds, feedback, contract)
    assert list(rows.columns) == [c.name for c in contract.columns]
    assert len(rows) == 40  # only labelled predictions; unknown ids dropped
    assert rows["target"].tolist() == df["target"].iloc[:40].tolist()
    assert rows["event_time"].iloc[0] == pd.Timestamp("2026-01-01", tz="UTC")


def test_first_label_wins(contract: DatasetContract) -> None:
    """The feedback trust rule: a later, different label for an id is a conflict, never an overwrite."""
    df = generate("baseline", 3, seed=3)
    preds, feedback = _log(df, contract, "2026-01-01")
    late = feedback.iloc[[0]].assign(
        label=1 - feedback["label"].iloc[0], timestamp=pd.Timestamp("2026-03-01", tz="UTC")
    )
    rows = labelled_rows(preds, pd.concat([late, feedback]), contract)
    assert len(rows) == 3 and rows["target"].iloc[0] == df["target"].iloc[0]


def test_sliding_window_keeps_the_newest_rows(contract: DatasetContract) -> None:
    previous = generate("baseline", 1000, seed=1)
    preds, feedback = _log(generate("covariate-shift", 300, seed=2), contract, "2026-01-01")
    new = labelled_rows(preds, feedback, contract)
    merged, stats = merge_window(previous, new, contract, RetrainRule())
    assert len(merged) == 1000  # default cap: the previous version's size
    assert stats.new_rows == 300 and stats.kept_new_rows == 300 and stats.dropped_rows == 300
    assert merged["event_time"].is_monotonic_increasing
    assert merged["event_time"].iloc[0] == previous["event_time"].iloc[300]  # oldest 300 fell out
    assert list(merged.columns) == list(previous.columns)
    assert (merged.dtypes == previous.dtypes).all()


def test_max_age_days_drops_old_rows(contract: DatasetContract) -> None:
    previous = generate("baseline", 500, seed=1)  # 2025-01 .. 2025-06
    preds, feedback = _log(generate("baseline", 100, seed=2), contract, "2026-01-01")
    merged, stats = merge_window(
        previous, labelled_rows(preds, feedback, contract), contract, RetrainRule(max_age_days=30)
    )
    assert len(merged) == 100 and stats.kept_new_rows == 100


def test_labels_already_in_the_previous_version_are_not_new(contract: DatasetContract) -> None:
    previous = generate("baseline", 500, seed=1)
    preds, feedback = _log(generate("covariate-shift", 100, seed=2), contract, "2026-01-01")
    first, _ = merge_window(
        previous, labelled_rows(preds, feedback, contract), contract, RetrainRule()
    )
    again, stats = merge_window(
        first, labelled_rows(preds, feedback, contract), contract, RetrainRule()
    )
    assert stats.new_rows == 0
    assert again.equals(first)


def test_features_named_like_the_logs_columns_keep_their_values(contract: DatasetContract) -> None:
    """A feature named label, timestamp or score is read from the logged inputs, never from the feedback
    label or the log's own timestamp and score."""
    names = {"credit_score": "score", "annual_income": "timestamp", "loan_purpose": "label"}
    clashing = contract.model_copy(
        update={
            "columns": [
                c.model_copy(update={"name": names.get(c.name, c.name)}) for c in contract.columns
            ]
        }
    )
    df = generate("baseline", 20, seed=4).rename(columns=names)
    preds, feedback = _log(df, clashing, "2026-01-01")
    preds["score"] = -1.0  # a regressor's logged score beside the feature of that name
    rows = labelled_rows(preds, feedback, clashing)
    for name in names.values():
        pd.testing.assert_series_equal(rows[name], df[name], check_names=False, check_dtype=False)
    assert rows["target"].tolist() == df["target"].tolist()
    assert (rows["event_time"] == preds["timestamp"]).all()

"""The demo data generator: determinism, shape, learnability, and what each scenario changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mloop.core.frames import file_md5, read_frame
from mloop.core.generate import FEATURE_ORDER, NEW_PURPOSE, SCENARIOS, generate, write_frame
from tests.helpers import column, columns

ROWS = 20_000
NUMERIC = [
    "age",
    "annual_income",
    "employment_years",
    "credit_score",
    "loan_amount",
    "interest_rate",
    "debt_to_income",
]
CATEGORICAL = ["employment_type", "home_ownership", "loan_purpose", "region"]
SURGE_COLUMNS = ["annual_income", "employment_years", "debt_to_income"]


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {s: generate(s, ROWS, 11) for s in SCENARIOS}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_same_seed_same_bytes(tmp_path: Path, suffix: str) -> None:
    a = write_frame(generate("baseline", 2000, 5), tmp_path / f"a{suffix}")
    b = write_frame(generate("baseline", 2000, 5), tmp_path / f"b{suffix}")
    c = write_frame(generate("baseline", 2000, 6), tmp_path / f"c{suffix}")
    assert file_md5(a) == file_md5(b)
    assert file_md5(a) != file_md5(c)


def test_files_read_back_equal(tmp_path: Path) -> None:
    df = generate("baseline", 500, 1)
    for suffix in (".csv", ".parquet"):
        back = read_frame(write_frame(df, tmp_path / f"x{suffix}"))
        pd.testing.assert_frame_equal(back, df, check_dtype=False)


def test_shape_and_columns(frames: dict[str, pd.DataFrame]) -> None:
    base = frames["baseline"]
    assert len(base) == ROWS
    features = [c for c in base.columns if c not in ("target", "event_time")]
    assert len(features) >= 10
    assert set(CATEGORICAL) <= {c for c in features if base[c].dtype == object}
    assert len([c for c in features if pd.api.types.is_numeric_dtype(base[c])]) >= 8
    assert pd.api.types.is_datetime64_any_dtype(base["event_time"])
    assert base["event_time"].is_monotonic_increasing
    assert set(base["target"].unique()) == {0, 1}
    assert 0.10 <= base["target"].mean() <= 0.20
    natural_nulls = columns(base, SURGE_COLUMNS).isna().mean()
    assert isinstance(natural_nulls, pd.Series)  # one share per column
    assert natural_nulls.between(0.005, 0.05, inclusive="neither").all(), natural_nulls
    assert base.drop(columns=SURGE_COLUMNS).notna().to_numpy().all()


def test_default_rows_is_100k() -> None:
    import inspect

    assert inspect.signature(generate).parameters["rows"].default == 100_000


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        generate("sideways", 10, 1)


def test_signal_is_learnable(frames: dict[str, pd.DataFrame]) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    base = frames["baseline"]
    num = NUMERIC + ["loan_term_months", "num_open_accounts", "num_delinquencies"]
    model = make_pipeline(
        make_column_transformer(
            (make_pipeline(SimpleImputer(), StandardScaler()), num),
            (OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
        ),
        LogisticRegression(max_iter=500),
    )
    train, test = base.iloc[: ROWS * 3 // 4], base.iloc[ROWS * 3 // 4 :]
    model.fit(train[num + CATEGORICAL], train["target"])
    auc = roc_auc_score(test["target"], model.predict_proba(test[num + CATEGORICAL])[:, 1])
    assert 0.75 <= auc <= 0.87, auc
    drifted = frames["concept-drift"]
    auc_drift = roc_auc_score(
        drifted["target"], model.predict_proba(drifted[num + CATEGORICAL])[:, 1]
    )
    assert auc_drift < auc - 0.15, (
        auc,
        auc_drift,
    )  # the old model stops working under concept drift


def test_covariate_shift_moves_feature_distributions(frames: dict[str, pd.DataFrame]) -> None:
    base, shift = frames["baseline"], frames["covariate-shift"]
    assert shift["credit_score"].mean() < base["credit_score"].mean() - 15
    assert shift["annual_income"].median() < base["annual_income"].median() * 0.9
    assert shift["debt_to_income"].mean() > base["debt_to_income"].mean() + 0.03
    small_business = lambda df: (df["loan_purpose"] == "small_business").mean()  # noqa: E731 - a one-line local helper, read where it is used
    assert small_business(shift) > 2 * small_business(base)
    assert set(shift["loan_purpose"].unique()) == set(
        base["loan_purpose"].unique()
    )  # no new levels


def test_concept_drift_changes_relationship_not_marginals(frames: dict[str, pd.DataFrame]) -> None:
    base, drift = frames["baseline"], frames["concept-drift"]
    for col in NUMERIC:
        ratio = drift[col].mean() / base[col].mean()
        assert 0.97 < ratio < 1.03, (col, ratio)
    for col in CATEGORICAL:
        shares = pd.concat(
            [base[col].value_counts(normalize=True), drift[col].value_counts(normalize=True)],
            axis=1,
        )
        assert (shares.iloc[:, 0] - shares.iloc[:, 1]).abs().max() < 0.02, col
    corr = lambda df: np.corrcoef(df["credit_score"], df["target"])[0, 1]  # noqa: E731 - a one-line local helper, read where it is used
    assert corr(base) < -0.2 and abs(corr(drift)) < 0.1
    rate = lambda df, purpose: df.loc[df["loan_purpose"] == purpose, "target"].mean()  # noqa: E731 - a one-line local helper, read where it is used
    assert rate(base, "small_business") > rate(base, "car")
    assert rate(drift, "small_business") < rate(drift, "car")


def test_new_category_adds_an_unseen_level(frames: dict[str, pd.DataFrame]) -> None:
    base, new = frames["baseline"], frames["new-category"]
    assert NEW_PURPOSE not in set(base["loan_purpose"])
    unseen = set(new["loan_purpose"]) - set(base["loan_purpose"])
    assert unseen == {NEW_PURPOSE}
    assert 0.05 < (new["loan_purpose"] == NEW_PURPOSE).mean() < 0.12


def test_missing_surge_raises_null_shares(frames: dict[str, pd.DataFrame]) -> None:
    base, surge = frames["baseline"], frames["missing-surge"]
    for col in SURGE_COLUMNS:
        assert surge[col].isna().mean() > base[col].isna().mean() + 0.15, col
    assert (
        abs(surge["credit_score"].mean() - base["credit_score"].mean()) < 3
    )  # values otherwise alike


def test_drift_scenarios_come_after_the_baseline_window(frames: dict[str, pd.DataFrame]) -> None:
    end = frames["baseline"]["event_time"].max()
    for s in SCENARIOS[1:]:
        assert frames[s]["event_time"].min() > end


def test_regime_change_shifts_features_and_mechanism(frames: dict[str, pd.DataFrame]) -> None:
    base, regime, cov = frames["baseline"], frames["regime-change"], frames["covariate-shift"]
    # the applicants shift like covariate-shift ...
    assert regime["credit_score"].mean() < base["credit_score"].mean() - 15
    assert abs(regime["credit_score"].mean() - cov["credit_score"].mean()) < 3
    # ... and the credit score no longer drives defaults (the concept changed)
    assert column(base, "credit_score").corr(column(base, "target")) < -0.2
    assert abs(column(regime, "credit_score").corr(column(regime, "target"))) < 0.08


# -- shapes: tasks and feature counts (the multi-model benchmark's datasets)


def test_classification_without_shape_options_is_unchanged() -> None:
    pd.testing.assert_frame_equal(
        generate("baseline", 500, 3), generate("baseline", 500, 3, task="classification")
    )
    assert set(generate("baseline", 500, 3)["target"].unique()) <= {0, 1}


def test_regression_target_is_continuous_with_the_same_features() -> None:
    clf = generate("baseline", 2000, 7)
    reg = generate("baseline", 2000, 7, task="regression")
    assert reg["target"].dtype.kind == "f" and reg["target"].nunique() > 1000
    pd.testing.assert_series_equal(clf["credit_score"], reg["credit_score"])


def test_features_keeps_the_first_n_columns_in_dataset_order() -> None:
    df = generate("baseline", 300, 1, features=5)
    assert set(df.columns) == {"event_time", "target", *FEATURE_ORDER[:5]}
    assert df.shape == (300, 7)


@pytest.mark.parametrize(
    "bad", [{"task": "ranking"}, {"features": 2}, {"features": len(FEATURE_ORDER) + 1}]
)
def test_bad_shape_options_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="task|features"):
        generate("baseline", 10, 1, **bad)

"""Feature preparation for the column kinds real tables have: which columns reach the model, and
how wide the feature matrix gets (tiny DataFrames), plus one table of every kind ingested and trained."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer

from mloop.core import contract as c
from models.pipeline import bounded_features, build_pipeline, feature_names, prepare_features
from models.spec import ModelSpec
from tests.helpers import column

ROWS = 400


def kinds_frame(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """One column of every kind, with a signal in ``x``, ``flag`` and ``city``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, rows)
    flag = pd.Series(rng.random(rows) < 0.5, dtype=object)
    flag[rng.random(rows) < 0.1] = None
    city = np.array([f"city{i}" for i in rng.integers(0, 300, rows)], dtype=object)
    logit = 1.5 * x + np.where(flag, 1.0, -0.5) + (np.char.endswith(city.astype(str), "7") * 1.0)
    return pd.DataFrame(
        {
            "customer_id": [str(uuid.UUID(int=int(seed) * 10**6 + i)) for i in range(rows)],
            "row_number": np.arange(rows) + seed * rows,
            "event_time": pd.date_range("2025-01-01", periods=rows, freq="h"),
            "signup": pd.date_range("2019-01-01", periods=rows, freq="D"),
            "x": x,
            "count": rng.integers(0, 9, rows),
            "flag": flag,
            "color": rng.choice(["red", "green", "blue"], rows).astype(object),
            "city": city,
            "country": "FR",
            "empty": pd.Series([None] * rows, dtype=object),
            "target": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int),
        }
    )


@pytest.fixture
def kinds_contract() -> c.DatasetContract:
    return c.infer_contract(kinds_frame(), name="kinds", time_column="event_time")


def test_only_feature_roles_reach_the_model(kinds_contract: c.DatasetContract) -> None:
    roles = {s.name: s.role for s in kinds_contract.columns}
    assert roles == {
        "customer_id": "id",
        "row_number": "id",
        "event_time": "time",
        "signup": "ignored",
        "x": "feature",
        "count": "feature",
        "flag": "feature",
        "color": "feature",
        "city": "feature",
        "country": "ignored",
        "empty": "ignored",
        "target": "target",
    }
    assert feature_names(kinds_contract) == ["x", "count", "flag", "color", "city"]
    X = prepare_features(kinds_frame(), kinds_contract)
    assert list(X.columns) == ["x", "count", "flag", "color", "city"]


def test_boolean_with_nulls_becomes_true_false_and_missing(
    kinds_contract: c.DatasetContract,
) -> None:
    X = prepare_features(kinds_frame(), kinds_contract)
    assert set(X["flag"].dropna()) == {"True", "False"} and column(X, "flag").isna().any()
    # numpy bools (a later version without nulls) give the same levels
    same = prepare_features(kinds_frame().assign(flag=np.arange(ROWS) % 2 == 0), kinds_contract)
    assert set(same["flag"]) == {"True", "False"}
    pipe = build_pipeline(kinds_contract, ModelSpec(estimator="logistic_regression")).fit(
        X, kinds_frame()["target"]
    )
    pre = pipe[0]
    assert isinstance(pre, ColumnTransformer)
    names = list(pre.get_feature_names_out())
    assert {"flag_True", "flag_False", "flag___missing__"} <= set(names)


def test_datetime_and_excluded_columns_are_not_required_as_inputs(
    kinds_contract: c.DatasetContract,
) -> None:
    df = kinds_frame().drop(
        columns=["customer_id", "row_number", "signup", "country", "empty", "event_time"]
    )
    X = prepare_features(df, kinds_contract)
    assert list(X.columns) == feature_names(kinds_contract)


def test_flipping_an_id_to_feature_makes_it_an_input(kinds_contract: c.DatasetContract) -> None:
    flipped = kinds_contract.model_copy(deep=True)
    flipped.column("row_number").role = "feature"
    assert "row_number" in feature_names(flipped) and "row_number" not in feature_names(
        kinds_contract
    )


def test_ten_thousand_levels_give_a_bounded_feature_matrix() -> None:
    rng = np.random.default_rng(4)
    rows = 30_000
    df = pd.DataFrame(
        {
            "city": np.array([f"c{i}" for i in rng.integers(0, 10_000, rows)], dtype=object),
            "color": rng.choice(["red", "green"], rows).astype(object),
            "x": rng.normal(0, 1, rows),
            "target": rng.integers(0, 2, rows),
        }
    )
    contract = c.infer_contract(df, name="cities")
    assert bounded_features(contract) == ["city"]
    for estimator in ("logistic_regression", "hist_gradient_boosting"):
        pipe = build_pipeline(contract, ModelSpec(estimator=estimator)).fit(
            prepare_features(df, contract), df["target"]
        )
        width = pipe[0].transform(prepare_features(df.head(50), contract)).shape[1]
        assert width == 1 + 2 + 1, estimator  # x, two colors, one encoded city column
        unseen = prepare_features(df.head(3).assign(city=["never", "seen", None]), contract)
        assert np.isfinite(pipe.predict_proba(unseen)).all()


def test_few_levels_keep_the_one_hot(kinds_contract: c.DatasetContract) -> None:
    assert bounded_features(kinds_contract) == [
        "city"
    ]  # up to 300 levels: more than MAX_CATEGORIES
    pipe = build_pipeline(kinds_contract, ModelSpec(estimator="logistic_regression"))
    pre = pipe[0]
    assert isinstance(pre, ColumnTransformer)
    branches = {name: cols for name, _, cols in pre.transformers}
    assert branches == {
        "numeric": ["x", "count"],
        "categorical": ["flag", "color"],
        "high_cardinality": ["city"],
    }


def test_wide_table_of_300_columns_trains() -> None:
    rng = np.random.default_rng(5)
    rows = 300
    data: dict[str, object] = {f"n{i}": rng.normal(0, 1, rows) for i in range(200)}
    data |= {f"c{i}": rng.choice(["a", "b", "c"], rows).astype(object) for i in range(99)}
    data["target"] = rng.integers(0, 2, rows)
    df = pd.DataFrame(data)
    contract = c.infer_contract(df, name="wide")
    X = prepare_features(df, contract)
    assert X.shape == (rows, 299)
    pipe = build_pipeline(contract, ModelSpec(estimator="logistic_regression")).fit(X, df["target"])
    assert pipe[0].transform(X).shape == (rows, 200 + 99 * 3)


@pytest.mark.integration
def test_table_of_every_kind_is_ingested_and_trained(models_settings, prefect_server) -> None:
    from flows.train import train_flow
    from mloop.core.datasets import ingest_dataset, read_version

    s, name = models_settings, "kinds"
    path = s.state.tmp / "kinds.parquet"
    kinds_frame(2000, seed=1).to_parquet(path, index=False)
    result = ingest_dataset(s, path, dataset=name, target="target", time_column="event_time")
    contract = c.load_contract(s.project_dir, name)
    assert (
        contract.column("customer_id").role == "id" and contract.column("empty").role == "ignored"
    )
    assert feature_names(contract) == ["x", "count", "flag", "color", "city"]
    assert read_version(s, name, result.version.md5).shape == (2000, 12)
    trained = train_flow(dataset=name, version=result.version.md5)
    assert trained.version and trained.decision == "promote", (
        trained.gate.summary() if trained.gate else trained
    )

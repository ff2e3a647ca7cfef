"""Unit tests of mloop.core.contract.model and .inference: kinds, tolerances, the YAML file, and
the package's re-exports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

import mloop.core.contract as contract_pkg
from mloop.core.contract import inference, model


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (pd.Series([True, False]), "boolean"),
        (pd.Series(pd.to_datetime(["2025-01-01", "2025-01-02"])), "datetime"),
        (pd.Series([1, 2], dtype="int64"), "integer"),
        (pd.Series([1.5, 2.0]), "numeric"),
        (pd.Series(["a", "b"], dtype=object), "categorical"),
        (pd.Series(["a", "b"], dtype="string"), "categorical"),
    ],
)
def test_kind_of(values: pd.Series, kind: str) -> None:
    assert inference.kind_of(values) == kind


@pytest.mark.parametrize(
    ("values", "task"),
    [
        (pd.Series(["yes", "no"]), "classification"),
        (pd.Series([0.0, 1.0, np.nan]), "classification"),  # whole floats with few levels
        (pd.Series([0.5, 1.0]), "regression"),
        (pd.Series(np.arange(21)), "regression"),  # more than MAX_CLASSES levels
        (
            pd.Series([191.0, 189.0, 193.0, 162.0, 189.0, 182.0]),
            "regression",
        ),  # levels that hardly repeat
        (pd.Series([1, 2, 3, 1, 2, 3]), "classification"),  # each of 3 levels twice
    ],
)
def test_infer_task(values: pd.Series, task: str) -> None:
    assert inference.infer_task(values) == task


def test_null_tolerance() -> None:
    assert inference.null_tolerance(0.0, is_target=False) == 0.0
    assert inference.null_tolerance(0.1, is_target=True) == 0.0
    assert inference.null_tolerance(0.1, is_target=False) == pytest.approx(
        0.2 + inference.NULL_SHARE_SLACK
    )
    assert inference.null_tolerance(0.7, is_target=False) == 1.0


def test_infer_column_range_and_levels() -> None:
    numeric = inference.infer_column(
        pd.Series([1.0, 3.0, np.nan, np.nan]), name="n", rows=4, is_target=False
    )
    assert (numeric.min, numeric.max, numeric.nullable) == (1.0, 3.0, True)
    assert numeric.range_tolerance == inference.RANGE_TOLERANCE and numeric.categories is None
    all_null = inference.infer_column(
        pd.Series([np.nan, np.nan]), name="n", rows=2, is_target=False
    )
    assert all_null.min is None and all_null.max is None
    text = inference.infer_column(
        pd.Series(["b", "a", "b"], dtype=object), name="t", rows=3, is_target=False
    )
    assert (
        text.categories == ["a", "b"] and text.max_unknown_share == inference.UNKNOWN_CATEGORY_SHARE
    )
    free = pd.Series([f"v{i}" for i in range(inference.MAX_CATEGORIES + 1)], dtype=object)
    assert (
        inference.infer_column(free, name="f", rows=len(free), is_target=False).categories is None
    )


def test_infer_contract_duplicate_tolerance() -> None:
    df = pd.DataFrame({"x": list(range(16)) + [0, 1, 2, 3], "target": [0, 1] * 10})
    contract = inference.infer_contract(df, name="d")
    assert contract.max_duplicate_share == pytest.approx(1.5 * 4 / 20)
    unique = inference.infer_contract(df.iloc[:16], name="d")
    assert unique.max_duplicate_share == inference.DUPLICATE_SHARE


def test_yaml_drops_rules_that_do_not_apply() -> None:
    contract = model.DatasetContract(
        name="d",
        task="regression",
        target="y",
        columns=[
            model.ColumnSpec(name="c", kind="categorical", nullable=False, categories=["a"]),
            model.ColumnSpec(name="y", kind="numeric", nullable=False, min=0, max=1),
        ],
    )
    data = yaml.safe_load(model.contract_to_yaml(contract))
    c_col, y_col = data["columns"]
    assert "min" not in c_col and "range_tolerance" not in c_col and c_col["categories"] == ["a"]
    assert "categories" not in y_col and "max_unknown_share" not in y_col and y_col["max"] == 1
    assert model.DatasetContract.model_validate(data) == contract


def test_package_reexports_every_public_name() -> None:
    for name in contract_pkg.__all__:
        assert getattr(contract_pkg, name) is not None, name
    assert contract_pkg.validate_frame.__module__ == "mloop.core.contract.validation"
    assert contract_pkg.DatasetContract.__module__ == "mloop.core.contract.model"

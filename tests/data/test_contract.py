"""Unit tests of contract inference, the YAML file and the validation rules (tiny DataFrames)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mloop.core import contract as c
from mloop.core.errors import NotFoundError


def frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    income = rng.uniform(10, 110, n)
    income[:4] = np.nan  # 2% natural nulls
    return pd.DataFrame(
        {
            "when": pd.date_range("2025-01-01", periods=n, freq="h"),
            "age": rng.integers(20, 70, n),
            "income": income,
            "color": rng.choice(["red", "green", "blue"], n).astype(object),
            "flag": rng.random(n) < 0.5,
            "target": (np.arange(n) % 5 == 0).astype(np.int64),
        }
    )


@pytest.fixture
def base() -> pd.DataFrame:
    return frame()


@pytest.fixture
def contract(base: pd.DataFrame) -> c.DatasetContract:
    return c.infer_contract(base, name="toy")


def only_failure(report: c.ValidationReport, rule: str, column: str | None) -> c.RuleFailure:
    assert not report.ok
    assert report.rules == [rule], report.text()
    failure = report.failures[0]
    assert failure.column == column
    assert failure.rule in report.text() and failure.message in report.text()
    return failure


def test_infer_kinds_tolerances_and_defaults(
    base: pd.DataFrame, contract: c.DatasetContract
) -> None:
    kinds = {col.name: col.kind for col in contract.columns}
    assert kinds == {
        "when": "datetime",
        "age": "integer",
        "income": "numeric",
        "color": "categorical",
        "flag": "boolean",
        "target": "integer",
    }
    assert contract.target == "target" and contract.task == "classification"
    assert contract.time_column == "when"  # the only datetime column
    income = contract.column("income")
    assert income.nullable and income.max_null_share == pytest.approx(2 * 0.02 + c.NULL_SHARE_SLACK)
    assert (
        income.min == pytest.approx(base["income"].min())
        and income.range_tolerance == c.RANGE_TOLERANCE
    )
    assert contract.column("age").max_null_share == 0.0 and not contract.column("age").nullable
    assert contract.column("color").categories == ["blue", "green", "red"]
    assert contract.column("target").max_null_share == 0.0
    assert contract.max_duplicate_share == c.DUPLICATE_SHARE
    assert [s.name for s in contract.feature_columns] == ["age", "income", "color", "flag"]


def test_infer_task_regression_and_explicit_options(base: pd.DataFrame) -> None:
    df = base.assign(price=np.linspace(0.5, 99.7, len(base)))
    inferred = c.infer_contract(df, name="toy", target="price", time_column=None)
    assert inferred.task == "regression"
    explicit = c.infer_contract(
        df.drop(columns=["when"]), name="toy", target="price", task="regression"
    )
    assert explicit.time_column is None
    with pytest.raises(KeyError):
        c.infer_contract(df, name="toy", target="nope")


def test_high_cardinality_text_has_no_category_rule(base: pd.DataFrame) -> None:
    df = base.assign(note=[f"free text {i}" for i in range(len(base))])
    spec = c.infer_contract(df, name="toy").column("note")
    assert spec.categories is None
    fresh = df.assign(note=[f"other {i}" for i in range(len(df))])
    assert c.validate_frame(fresh, c.infer_contract(df, name="toy")).ok


def test_yaml_round_trip_is_readable(tmp_path: Path, contract: c.DatasetContract) -> None:
    path = c.save_contract(contract, tmp_path)
    assert path == tmp_path / "data" / "toy" / "contract.yaml"
    text = path.read_text()
    assert text.startswith("# Data contract of dataset 'toy'")
    assert "max_null_share" in text and "categories:" in text
    assert c.load_contract(tmp_path, "toy") == contract


def test_load_contract_missing_and_invalid(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="has no contract"):
        c.load_contract(tmp_path, "nope")
    bad = c.contract_path(tmp_path, "bad")
    bad.parent.mkdir(parents=True)
    bad.write_text("name: bad\ncolumns: 3\n")
    with pytest.raises(Exception, match="contract file is invalid"):
        c.load_contract(tmp_path, "bad")


def test_valid_and_drifted_data_pass(base: pd.DataFrame, contract: c.DatasetContract) -> None:
    assert c.validate_frame(base, contract).ok
    drifted = frame(300, seed=9)
    drifted["income"] = drifted["income"] * 1.05  # shifted, still within the widened range
    report = c.validate_frame(drifted, contract)
    assert report.ok, report.text()
    assert "pass the contract" in report.text()


def test_integer_column_read_back_as_float_with_nulls_is_accepted(
    base: pd.DataFrame, contract: c.DatasetContract
) -> None:
    df = base.copy()
    df["age"] = df["age"].astype(float)
    assert c.validate_frame(df, contract).ok


# ---- one negative test per rule ------------------------------------------------------------


def test_rule_empty(base: pd.DataFrame, contract: c.DatasetContract) -> None:
    report = c.validate_frame(base.iloc[:0], contract)
    failure = only_failure(report, c.RULE_EMPTY, None)
    assert "0 rows" in failure.message


def test_rule_missing_column(base: pd.DataFrame, contract: c.DatasetContract) -> None:
    failure = only_failure(
        c.validate_frame(base.drop(columns=["color"]), contract), c.RULE_MISSING_COLUMN, "color"
    )
    assert failure.message == "column 'color' is missing"
    assert failure.rows == len(base)


def test_rule_unexpected_column(base: pd.DataFrame, contract: c.DatasetContract) -> None:
    failure = only_failure(
        c.validate_frame(base.assign(extra="x"), contract), c.RULE_UNEXPECTED_COLUMN, "extra"
    )
    assert failure.message == "column 'extra' is not in the contract"
    assert failure.examples == ["x"]


def test_rule_target_missing(base: pd.DataFrame, contract: c.DatasetContract) -> None:
    failure = only_failure(
        c.validate_frame(base.drop(columns=["target"]), contract), c.RULE_TARGET_MISSING, "target"
    )
    assert failure.message.startswith("target column 'target' is absent")


def test_rule_target_null(base: pd.DataFrame, contract: c.DatasetContract) -> None:
    df = base.copy()
    df["target"] = df["target"].astype(float)
    df.loc[[3, 7], "target"] = np.nan
    failure = only_failure(c.validate_frame(df, contract), c.RULE_TARGET_NULL, "target")
    assert failure.rows == 2
    assert failure.examples == ["row 3", "row 7"]
    assert "target column 'target' has 2 null rows" in failure.message


def test_rule_single_class(base: pd.DataFrame, contract: c.DatasetContract) -> None:
    failure = only_failure(
        c.validate_frame(base.assign(target=0), contract), c.RULE_SINGLE_CLASS, "target"
    )
    assert "has 1 class(es)" in failure.message and failure.examples == ["0"]


def test_rule_dtype(base: pd.DataFrame, contract: c.DatasetContract) -> None:
    df = base.copy()
    df["age"] = df["age"].astype(str)
    df.loc[5, "age"] = "forty"
    failure = only_failure(c.validate_frame(df, contract), c.RULE_DTYPE, "age")
    assert "should be integer but is object" in failure.message
    assert failure.rows == 1 and failure.examples == ["forty"]


def test_rule_dtype_numeric_vs_text_and_datetime(
    base: pd.DataFrame, contract: c.DatasetContract
) -> None:
    df = base.copy()
    df["when"] = df["when"].astype(str).str.replace("-", "/")
    report = c.validate_frame(df, contract)
    assert report.rules == [c.RULE_DTYPE] and report.failures[0].column == "when"


def test_rule_null_share(base: pd.DataFrame, contract: c.DatasetContract) -> None:
    df = base.copy()
    df.loc[: len(df) // 5, "income"] = np.nan  # 20% nulls; tolerance 6%
    failure = only_failure(c.validate_frame(df, contract), c.RULE_NULL_SHARE, "income")
    assert failure.rows == len(df) // 5 + 1
    assert failure.limit == pytest.approx(0.06)
    assert "above max_null_share 6.0%" in failure.message
    assert failure.examples[:2] == ["row 0", "row 1"]


def test_rule_null_share_in_a_column_that_had_none(
    base: pd.DataFrame, contract: c.DatasetContract
) -> None:
    df = base.copy()
    df["color"] = df["color"].where(df.index != 10, None)
    failure = only_failure(c.validate_frame(df, contract), c.RULE_NULL_SHARE, "color")
    assert failure.rows == 1 and failure.examples == ["row 10"]


def test_rule_out_of_range(base: pd.DataFrame, contract: c.DatasetContract) -> None:
    df = base.copy()
    df.loc[:9, "income"] = 5000.0  # 5% far above the widened range, tolerance 1%
    failure = only_failure(c.validate_frame(df, contract), c.RULE_OUT_OF_RANGE, "income")
    assert failure.rows == 10 and failure.examples == ["5000.0"]
    assert "outside [" in failure.message and "above max_out_of_range_share 1.0%" in failure.message


def test_out_of_range_within_tolerance_passes(
    base: pd.DataFrame, contract: c.DatasetContract
) -> None:
    df = base.copy()
    df.loc[0, "income"] = 5000.0  # 0.5% of rows, tolerance 1%
    assert c.validate_frame(df, contract).ok


def test_rule_unknown_categories(base: pd.DataFrame, contract: c.DatasetContract) -> None:
    df = base.copy()
    df.loc[:7, "color"] = "purple"
    failure = only_failure(c.validate_frame(df, contract), c.RULE_UNKNOWN_CATEGORY, "color")
    assert failure.rows == 8 and failure.examples == ["purple"]
    assert "8 rows (4.0%) with unknown categories, above max_unknown_share 1.0%" in failure.message


def test_rule_duplicates(base: pd.DataFrame, contract: c.DatasetContract) -> None:
    df = pd.concat([base, base.iloc[:10]], ignore_index=True)
    failure = only_failure(c.validate_frame(df, contract), c.RULE_DUPLICATES, None)
    assert failure.rows == 10 and failure.examples[0] == f"row {len(base)}"
    assert "10 duplicate rows" in failure.message


def test_all_failures_are_collected(base: pd.DataFrame, contract: c.DatasetContract) -> None:
    df = base.drop(columns=["color"]).assign(extra=1)
    df.loc[:50, "income"] = np.nan
    report = c.validate_frame(df, contract)
    assert sorted(report.rules) == sorted(
        [c.RULE_MISSING_COLUMN, c.RULE_UNEXPECTED_COLUMN, c.RULE_NULL_SHARE]
    )
    assert set(c.RULE_DESCRIPTIONS) >= set(report.rules)

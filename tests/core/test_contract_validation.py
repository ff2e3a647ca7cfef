"""Unit tests of mloop.core.contract.validation: each rule as a pure measure, and the schema that
records what its checks measured (so the report never recomputes a rule)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mloop.core.contract import validation as v
from mloop.core.contract.model import ColumnSpec, DatasetContract
from mloop.core.contract.report import (
    RULE_DTYPE,
    RULE_DUPLICATES,
    RULE_MISSING_COLUMN,
    RULE_NON_FINITE,
    RULE_NULL_SHARE,
    RULE_OUT_OF_RANGE,
    RULE_SINGLE_CLASS,
    RULE_TARGET_MISSING,
    RULE_TARGET_NULL,
    RULE_UNEXPECTED_COLUMN,
    RULE_UNKNOWN_CATEGORY,
)

ROWS = 100


def spec(**fields: Any) -> ColumnSpec:
    return ColumnSpec(**{"name": "x", "kind": "numeric", "nullable": False, **fields})


def toy_contract(**fields: Any) -> DatasetContract:
    columns = [
        ColumnSpec(
            name="x",
            kind="numeric",
            nullable=False,
            min=0,
            max=10,
            range_tolerance=0.1,
            max_out_of_range_share=0.05,
        ),
        ColumnSpec(
            name="c",
            kind="categorical",
            nullable=False,
            categories=["a", "b"],
            max_unknown_share=0.05,
        ),
        ColumnSpec(name="target", kind="integer", nullable=False),
    ]
    return DatasetContract(
        **{
            "name": "toy",
            "task": "classification",
            "target": "target",
            "columns": columns,
            **fields,
        }
    )


def toy_frame(n: int = ROWS) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": np.linspace(0, 10, n),
            "c": np.where(np.arange(n) % 2 == 0, "a", "b").astype(object),
            "target": np.arange(n) % 2,
        }
    )


# ---- rules as pure measures ---------------------------------------------------------------------


def test_null_failure_counts_limit_and_row_examples() -> None:
    s = pd.Series([np.nan if i in (2, 5, 9) else 1.0 for i in range(ROWS)])
    assert v.null_failure(s, spec(max_null_share=0.03), ROWS, RULE_NULL_SHARE) is None  # 3 <= 3
    failure = v.null_failure(s, spec(max_null_share=0.02), ROWS, RULE_NULL_SHARE)
    assert failure is not None
    assert (failure.rows, failure.share, failure.limit) == (3, 0.03, 0.02)
    assert failure.examples == ["row 2", "row 5", "row 9"]
    assert failure.message == "column 'x' has 3 null rows (3.0%), above max_null_share 2.0%"


def test_null_failure_target_wording_and_given_count() -> None:
    s = pd.Series(["a", None, "b", None], dtype=object)
    failure = v.null_failure(s, spec(name="target"), 4, RULE_TARGET_NULL, nulls=2)
    assert failure is not None and failure.rule == RULE_TARGET_NULL
    assert failure.message.startswith("target column 'target' has 2 null rows (50.0%)")
    assert failure.examples == ["row 1", "row 3"]


def test_out_of_range_failure_uses_widened_bounds() -> None:
    col = spec(min=0, max=10, range_tolerance=0.1, max_out_of_range_share=0.01)
    assert col.bounds() == (-1.0, 11.0)
    inside = pd.Series([-1.0, 11.0, 5.0, np.nan])
    assert v.out_of_range_failure(inside, col, 4) is None
    outside = pd.Series([12.0, -3.0, 12.0, 5.0])
    failure = v.out_of_range_failure(outside, col, 4)
    assert failure is not None and failure.rule == RULE_OUT_OF_RANGE
    assert failure.rows == 3 and failure.examples == ["12.0", "-3.0"]
    assert "3 rows (75.0%) outside [-1, 11], above max_out_of_range_share 1.0%" in failure.message


def test_non_finite_failure_names_the_rows_with_infinity() -> None:
    assert (
        v.non_finite_failure(pd.Series([1.0, np.nan, -2.0]), spec(), 3) is None
    )  # a null is no infinity
    failure = v.non_finite_failure(pd.Series([1.0, np.inf, 3.0, -np.inf]), spec(), 4)
    assert failure is not None and failure.rule == RULE_NON_FINITE and failure.rows == 2
    assert failure.examples == ["row 1", "row 3"] and failure.limit == 0.0
    assert (
        "column 'x' has 2 infinite value(s); write an unknown value as empty (null)"
        in failure.message
    )


def test_bounds_need_a_range() -> None:
    with pytest.raises(ValueError, match="no range"):
        spec().bounds()


def test_unknown_category_failure_reads_level_counts() -> None:
    col = spec(kind="categorical", categories=["a", "b"], max_unknown_share=0.1)
    levels = pd.Series(["a", "zz", "b", "yy", "zz", None], dtype=object).value_counts(
        dropna=True, sort=False
    )
    failure = v.unknown_category_failure(levels, col, 6)
    assert failure is not None and failure.rule == RULE_UNKNOWN_CATEGORY
    assert failure.rows == 3 and failure.examples == ["zz", "yy"]  # order of first appearance
    assert (
        v.unknown_category_failure(levels, col.model_copy(update={"max_unknown_share": 0.5}), 6)
        is None
    )


def test_unknown_category_failure_ignores_unused_categorical_levels() -> None:
    col = spec(kind="categorical", categories=["a"], max_unknown_share=0.0)
    levels = pd.Series(pd.Categorical(["a", "a"], categories=["a", "zz"])).value_counts(sort=False)
    assert v.unknown_category_failure(levels, col, 2) is None


def test_dtype_failure_names_values_not_of_the_kind() -> None:
    s = pd.Series(["1", "2", "2.5", "x", None], dtype=object)
    failure = v.dtype_failure(s, spec(kind="integer"), 5)
    assert failure.rule == RULE_DTYPE and failure.rows == 2 and failure.examples == ["2.5", "x"]
    assert failure.message == "column 'x' should be integer but is object (2 rows are not integer)"
    assert v.kind_ok(pd.Series([np.nan, np.nan]), "datetime")  # an all-null column fits any kind
    assert not v.kind_ok(pd.Series([True, False]), "numeric")


def test_duplicate_and_single_class_failures() -> None:
    contract = toy_contract(max_duplicate_share=0.01)
    mask = pd.Series([False] * 8 + [True, True])
    failure = v.duplicate_failure(mask, contract, 10)
    assert failure is not None and failure.rule == RULE_DUPLICATES and failure.column is None
    assert failure.examples == ["row 8", "row 9"] and failure.limit == 0.01
    assert v.duplicate_failure(pd.Series([False] * 10), contract, 10) is None
    single = v.single_class_failure(pd.DataFrame({"target": [1, 1, None]}), "target", 3)
    assert single is not None and single.rule == RULE_SINGLE_CLASS and single.examples == ["1.0"]
    assert v.single_class_failure(pd.DataFrame({"other": [1]}), "target", 1) is None


def test_column_failure_from_pandera_column_checks() -> None:
    contract, df = toy_contract(), toy_frame(3).assign(extra=[None, "e", "e"])
    assert v.column_failure("column_in_dataframe", "c", df, contract).rule == RULE_MISSING_COLUMN
    assert (
        v.column_failure("column_in_dataframe", "target", df, contract).rule == RULE_TARGET_MISSING
    )
    extra = v.column_failure("column_in_schema", "extra", df, contract)
    assert extra.rule == RULE_UNEXPECTED_COLUMN and extra.examples == ["e"] and extra.rows == 3


# ---- the schema: pandera runs the checks, the report reads what they recorded --------------------


def test_findings_record_only_failures() -> None:
    findings = v.Findings()
    failing = findings.check(
        RULE_NULL_SHARE, "x", lambda s: v.null_failure(s, spec(), 2, RULE_NULL_SHARE)
    )
    assert failing(pd.Series([1.0, 2.0])) is True and findings.get(RULE_NULL_SHARE, "x") is None
    assert failing(pd.Series([1.0, np.nan])) is False
    recorded = findings.get(RULE_NULL_SHARE, "x")
    assert recorded is not None and recorded.rows == 1


def test_schema_checks_are_named_by_rule() -> None:
    schema = v.build_schema(toy_contract(), ROWS, v.Findings())
    names = {col: [check.name for check in column.checks] for col, column in schema.columns.items()}
    assert names == {
        "x": [RULE_DTYPE, RULE_NULL_SHARE, RULE_NON_FINITE, RULE_OUT_OF_RANGE],
        "c": [RULE_DTYPE, RULE_NULL_SHARE, RULE_UNKNOWN_CATEGORY],
        "target": [RULE_DTYPE, RULE_TARGET_NULL, RULE_NON_FINITE],
    }
    assert [check.name for check in schema.checks] == [RULE_DUPLICATES, RULE_SINGLE_CLASS]
    regression = v.build_schema(toy_contract(task="regression"), ROWS, v.Findings())
    assert [check.name for check in regression.checks] == [RULE_DUPLICATES]


def counting(monkeypatch: pytest.MonkeyPatch, names: list[str]) -> Counter[str]:
    """Wrap validation functions so each call is counted."""
    calls: Counter[str] = Counter()
    for name in names:
        original: Callable[..., Any] = getattr(v, name)

        def wrapper(
            *args: Any, _name: str = name, _original: Callable[..., Any] = original, **kwargs: Any
        ) -> Any:
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(v, name, wrapper)
    return calls


def test_each_rule_is_measured_once_even_when_it_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    df = toy_frame()
    df.loc[:9, "x"] = 1e6 + np.arange(10)  # out of range (distinct rows)
    df.loc[:9, "c"] = "zz"  # unknown level
    df = pd.concat([df, df.iloc[:10]], ignore_index=True)  # duplicates
    calls = counting(
        monkeypatch,
        [
            "duplicated_rows",
            "null_failure",
            "out_of_range_failure",
            "unknown_category_failure",
            "single_class_failure",
            "kind_ok",
        ],
    )
    report = v.validate_frame(df, toy_contract())
    assert report.rules == [RULE_OUT_OF_RANGE, RULE_UNKNOWN_CATEGORY, RULE_DUPLICATES]
    assert calls == {
        "duplicated_rows": 1,
        "null_failure": 3,  # one per column
        "out_of_range_failure": 1,
        "unknown_category_failure": 1,
        "single_class_failure": 1,
        "kind_ok": 3,  # memoised per column, shared by its checks
    }
    assert (
        report.failures[0].rows == 20
        and report.failures[1].examples == ["zz"]
        and report.failures[2].rows == 10
    )


def test_a_given_duplicate_mask_is_not_recomputed(monkeypatch: pytest.MonkeyPatch) -> None:
    df = toy_frame()
    calls = counting(monkeypatch, ["duplicated_rows"])
    assert v.validate_frame(df, toy_contract(), duplicated=pd.Series(False, index=df.index)).ok
    assert calls["duplicated_rows"] == 0


def test_a_check_that_raises_rejects_the_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(v, "out_of_range_failure", broken)
    report = v.validate_frame(toy_frame(), toy_contract())
    assert report.rules == [RULE_OUT_OF_RANGE]
    failure = report.failures[0]
    assert (
        failure.column == "x"
        and "could not be checked on column 'x'" in failure.message
        and "boom" in failure.message
    )

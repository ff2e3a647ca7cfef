"""Column kinds real tables have: booleans, extra datetimes, IDs, constant and all-null columns,
high-cardinality text, wide tables and mostly-duplicate first versions (tiny DataFrames)."""

from __future__ import annotations

import io
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from mloop.core import contract as c
from mloop.core.contract import inference

ROWS = 120


def base(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(0, 1, rows), "target": rng.integers(0, 2, rows)})


def through_parquet(df: pd.DataFrame) -> pd.DataFrame:
    """The frame as ingest reads it back (pyarrow: a bool column with nulls becomes objects)."""
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
    return pq.read_table(io.BytesIO(buf.getvalue())).to_pandas()


def spec(df: pd.DataFrame, column: str, **kwargs: Any) -> c.ColumnSpec:
    return c.infer_contract(df, name="kinds", **kwargs).column(column)


# ---- booleans --------------------------------------------------------------------------------


def test_nullable_boolean_is_boolean_feature_and_validates_either_way() -> None:
    df = base().assign(flag=pd.Series([True, False, None] * (ROWS // 3), dtype=object))
    read = through_parquet(df)
    assert read["flag"].dtype == object
    contract = c.infer_contract(read, name="kinds")
    flag = contract.column("flag")
    assert (flag.kind, flag.role, flag.nullable) == ("boolean", "feature", True)
    assert "flag" in contract.categorical_features
    # a later version without nulls reads back as numpy bool: same kind, accepted
    assert c.validate_frame(read.assign(flag=np.arange(ROWS) % 2 == 0), contract).ok
    # and a column of text is still not boolean
    report = c.validate_frame(read.assign(flag=["yes"] * ROWS), contract)
    assert c.RULE_DTYPE in report.rules


def test_text_column_is_not_boolean() -> None:
    df = base().assign(word=["True", "False"] * (ROWS // 2))
    assert spec(df, "word").kind == "categorical"


# ---- datetimes other than the time column ----------------------------------------------------


def test_extra_datetime_is_ignored_with_note_time_column_is_time() -> None:
    df = base().assign(
        when=pd.date_range("2025-01-01", periods=ROWS, freq="h"),
        signup=pd.date_range("2020-01-01", periods=ROWS, freq="D"),
    )
    contract = c.infer_contract(df, name="kinds", time_column="when")
    assert contract.column("when").role == "time" and contract.column("when").note is None
    signup = contract.column("signup")
    assert signup.role == "ignored" and signup.note == inference.NOTE_DATETIME
    assert [s.name for s in contract.feature_columns] == ["x"]
    assert c.validate_frame(df, contract).ok


def test_time_column_alone_is_not_ignored() -> None:
    df = base().assign(when=pd.date_range("2025-01-01", periods=ROWS, freq="h"))
    contract = c.infer_contract(df, name="kinds")
    assert contract.time_column == "when" and contract.column("when").role == "time"


# ---- ID-like columns -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        np.arange(1000, 1000 + ROWS),  # integer keys
        np.random.default_rng(1).choice(
            10**9, size=ROWS, replace=False
        ),  # sparse integer keys (no 8 GB permutation)
        [str(uuid.UUID(int=i)) for i in range(ROWS)],  # uuid strings
    ],
)
def test_unique_integer_or_text_is_an_id_excluded_with_note(values: object) -> None:
    df = base().assign(customer_id=values)
    contract = c.infer_contract(df, name="kinds")
    col = contract.column("customer_id")
    assert col.role == "id" and col.note == inference.NOTE_ID
    assert "customer_id" not in [s.name for s in contract.feature_columns]
    # the rules still check it: presence and dtype
    assert c.validate_frame(df, contract).ok
    assert c.validate_frame(df.drop(columns=["customer_id"]), contract).rules == [
        c.RULE_MISSING_COLUMN
    ]
    # the YAML carries role and note, and a flipped role reads back
    data = yaml.safe_load(c.contract_to_yaml(contract))
    entry = next(col for col in data["columns"] if col["name"] == "customer_id")
    assert entry["role"] == "id" and entry["note"] == inference.NOTE_ID
    entry["role"] = "feature"
    flipped = c.DatasetContract.model_validate(data)
    assert "customer_id" in [s.name for s in flipped.feature_columns]


def test_unique_float_is_not_an_id() -> None:
    df = base().assign(score=np.linspace(0.5, 99.5, ROWS))
    assert spec(df, "score").role == "feature"


def test_near_unique_text_or_integer_with_a_repeat_is_not_an_id() -> None:
    keys = [f"k{i}" for i in range(ROWS)]
    keys[-1] = keys[0]
    ints = np.arange(ROWS)
    ints[-1] = 0
    df = base().assign(key=keys, number=ints)
    assert spec(df, "key").role == "feature" and spec(df, "number").role == "feature"


def test_unique_column_with_nulls_or_in_a_small_table_is_not_an_id() -> None:
    keys: list[str | None] = [f"k{i}" for i in range(ROWS)]
    keys[3] = None
    assert spec(base().assign(key=keys), "key").role == "feature"
    small = base(inference.MIN_ID_ROWS - 1).assign(n=np.arange(inference.MIN_ID_ROWS - 1))
    assert spec(small, "n").role == "feature"


# ---- constant and all-null columns -----------------------------------------------------------


def test_constant_column_is_ignored_but_validated() -> None:
    df = base().assign(country="FR", version=7)
    contract = c.infer_contract(df, name="kinds")
    for name in ("country", "version"):
        assert (
            contract.column(name).role == "ignored"
            and contract.column(name).note == inference.NOTE_CONSTANT
        )
    assert [s.name for s in contract.feature_columns] == ["x"]
    assert c.validate_frame(df.assign(country="DE"), contract).rules == [c.RULE_UNKNOWN_CATEGORY]


def test_one_value_with_nulls_is_a_feature() -> None:
    df = base().assign(vip=["Y", None] * (ROWS // 2))
    assert spec(df, "vip").role == "feature"


def test_all_null_columns_are_ignored_and_validate_without_crash() -> None:
    df = base().assign(
        empty_text=pd.Series([None] * ROWS, dtype=object),
        empty_float=np.nan,
        empty_dt=pd.Series(pd.NaT, index=range(ROWS), dtype="datetime64[ns]"),
    )
    for frame in (df, through_parquet(df)):
        contract = c.infer_contract(frame, name="kinds")
        for name in ("empty_text", "empty_float", "empty_dt"):
            col = contract.column(name)
            assert col.role == "ignored" and col.note == inference.NOTE_ALL_NULL, name
            assert col.max_null_share == 1.0 and col.categories is None and col.min is None
        assert [s.name for s in contract.feature_columns] == ["x"]
        assert c.validate_frame(frame, contract).ok
        # values arriving later are accepted (no level list, no range was inferred from nothing)
        later = frame.assign(empty_text="a", empty_float=1.5)
        assert c.validate_frame(later, contract).ok, c.validate_frame(later, contract).text()


def test_all_null_and_all_duplicate_frame_does_not_crash() -> None:
    df = pd.DataFrame({"x": [np.nan] * 10, "note": [None] * 10, "target": [0, 1] * 5})
    contract = c.infer_contract(df, name="kinds")
    assert contract.max_duplicate_share == 1.0
    assert c.validate_frame(df, contract).ok


# ---- duplicates ------------------------------------------------------------------------------


def test_mostly_duplicate_first_version_caps_tolerance_at_one() -> None:
    df = pd.DataFrame({"x": [1.0] * 95 + list(range(5)), "target": [0] * 95 + [1] * 5})
    assert c.duplicated_rows(df).mean() > 2 / 3
    contract = c.infer_contract(df, name="kinds")
    assert contract.max_duplicate_share == 1.0
    assert c.validate_frame(df, contract).ok


def test_few_duplicates_keep_one_and_a_half_times_seen() -> None:
    df = pd.DataFrame(
        {"x": list(range(90)) + list(range(50, 60)), "target": [0] * 50 + [1] * 50}
    )  # 10 repeats
    assert c.infer_contract(df, name="kinds").max_duplicate_share == pytest.approx(0.15)


# ---- high cardinality and wide tables ----------------------------------------------------------


def test_ten_thousand_levels_have_no_category_rule() -> None:
    rng = np.random.default_rng(2)
    rows = 30_000
    df = pd.DataFrame(
        {
            "city": [f"c{i}" for i in rng.integers(0, 10_000, rows)],
            "target": rng.integers(0, 2, rows),
        }
    )
    col = spec(df, "city")
    assert col.kind == "categorical" and col.categories is None and col.role == "feature"


def test_wide_table_of_300_columns() -> None:
    rng = np.random.default_rng(3)
    rows = 200
    data: dict[str, object] = {f"n{i}": rng.normal(0, 1, rows) for i in range(150)}
    data |= {f"i{i}": rng.integers(0, 10, rows) for i in range(75)}
    data |= {f"c{i}": rng.choice(["a", "b", "c"], rows).astype(object) for i in range(74)}
    data["target"] = rng.integers(0, 2, rows)
    df = pd.DataFrame(data)
    contract = c.infer_contract(df, name="wide")
    assert len(contract.columns) == 300 and len(contract.feature_columns) == 299
    assert c.validate_frame(df, contract).ok
    report = c.validate_frame(df.drop(columns=["n7"]).assign(c3="zzz"), contract)
    assert set(report.rules) == {c.RULE_MISSING_COLUMN, c.RULE_UNKNOWN_CATEGORY}


def test_old_contract_without_roles_still_loads_with_features() -> None:
    data = {
        "name": "old",
        "task": "classification",
        "target": "target",
        "columns": [
            {"name": "x", "kind": "numeric", "nullable": False},
            {"name": "target", "kind": "integer", "nullable": False},
        ],
    }
    contract = c.DatasetContract.model_validate(data)
    assert [s.name for s in contract.feature_columns] == ["x"]
    assert contract.column("x").role == "feature"

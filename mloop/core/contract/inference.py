"""Inferring a contract from a dataset's first accepted version: column kinds, task, tolerances."""

from __future__ import annotations

import pandas as pd

from mloop.core.contract.model import ColumnKind, ColumnSpec, DatasetContract, Task
from mloop.core.contract.validation import duplicated_rows

MAX_CATEGORIES = 100  # a text column with more levels is free text: no category rule
NULL_SHARE_SLACK = 0.02  # accepted null share = 2 x seen + this, for columns that had nulls
RANGE_TOLERANCE = 0.1  # numeric values may exceed [min, max] by 10% of the range
OUT_OF_RANGE_SHARE = 0.01
UNKNOWN_CATEGORY_SHARE = 0.01
DUPLICATE_SHARE = 0.01
MAX_CLASSES = 20  # an integer-valued target with more distinct values is a regression target


def kind_of(series: pd.Series) -> ColumnKind:
    """The contract kind of a column from its dtype (text and anything else: categorical)."""
    from pandas.api import types as pdt

    if pdt.is_bool_dtype(series):
        return "boolean"
    if pdt.is_datetime64_any_dtype(series):
        return "datetime"
    if pdt.is_integer_dtype(series):
        return "integer"
    if pdt.is_numeric_dtype(series):
        return "numeric"
    return "categorical"


def infer_task(series: pd.Series) -> Task:
    """classification for bool/text/integer-valued targets with <= 20 levels, else regression."""
    kind = kind_of(series)
    if kind in ("boolean", "categorical"):
        return "classification"
    values = series.dropna()
    if kind == "numeric" and not (values == values.round()).all():
        return "regression"
    return "classification" if values.nunique() <= MAX_CLASSES else "regression"


def null_tolerance(null_share: float, *, is_target: bool) -> float:
    """Accepted null share: none for the target or a column without nulls, else 2 x seen + slack."""
    if is_target or null_share == 0:
        return 0.0
    return min(1.0, round(2 * null_share + NULL_SHARE_SLACK, 4))


def infer_column(series: pd.Series, *, name: str, rows: int, is_target: bool) -> ColumnSpec:
    """One column's spec: kind, null tolerance, and a range (numeric) or levels (text)."""
    kind = kind_of(series)
    counts = series.value_counts(dropna=True, sort=False) if kind == "categorical" else None
    nulls = len(series) - int(counts.sum()) if counts is not None else int(series.isna().sum())
    null_share = nulls / rows
    spec = ColumnSpec(
        name=name,
        kind=kind,
        nullable=null_share > 0,
        max_null_share=null_tolerance(null_share, is_target=is_target),
    )
    if kind in ("numeric", "integer") and nulls < len(series):
        spec.min, spec.max = float(series.min()), float(series.max())
        spec.range_tolerance = RANGE_TOLERANCE
        spec.max_out_of_range_share = OUT_OF_RANGE_SHARE
    elif counts is not None:
        levels = pd.unique(counts.index.astype(str))
        if len(levels) <= MAX_CATEGORIES:
            spec.categories = sorted(levels.tolist())
            spec.max_unknown_share = UNKNOWN_CATEGORY_SHARE
    return spec


def infer_contract(
    df: pd.DataFrame,
    *,
    name: str,
    target: str = "target",
    task: Task | None = None,
    time_column: str | None = None,
    duplicated: pd.Series | None = None,
) -> DatasetContract:
    """Infer a contract from an accepted first version (pure, no I/O).

    Tolerances: a column with nulls accepts ``2 x seen + 2%`` nulls (a column without any accepts
    none); numeric values may exceed the seen range by 10% of it, with up to 1% of rows beyond
    that; up to 1% of rows may carry an unknown category; duplicate rows up to
    ``max(1%, 1.5 x seen)``. The target accepts no nulls. ``time_column`` defaults to the only
    datetime column, if there is exactly one. ``duplicated`` (from :func:`duplicated_rows`) saves
    recomputing the duplicate mask when the caller validates the same frame too.
    """
    if target not in df.columns:
        raise KeyError(target)
    if time_column is None:
        datetimes = [c for c in df.columns if kind_of(df[c]) == "datetime"]
        time_column = datetimes[0] if len(datetimes) == 1 else None
    rows = max(len(df), 1)
    specs = [infer_column(df[col], name=str(col), rows=rows, is_target=col == target) for col in df.columns]
    duplicate_share = float((duplicated if duplicated is not None else duplicated_rows(df)).sum()) / rows
    return DatasetContract(
        name=name,
        task=task or infer_task(df[target]),
        target=target,
        time_column=time_column,
        columns=specs,
        max_duplicate_share=max(DUPLICATE_SHARE, round(1.5 * duplicate_share, 4)),
    )

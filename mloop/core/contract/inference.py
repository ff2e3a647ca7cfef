"""Inferring a contract from a dataset's first accepted version: column kinds, roles, task, tolerances.

Roles (see :mod:`.model`): the target and the time column are named; every other column is a
``feature`` unless one of these rules, applied in order, says otherwise (the ``note`` records it):

- all values null -> ``ignored``;
- one value and no nulls (constant) -> ``ignored`` (a single value with nulls still tells
  null from not-null, so it stays a feature);
- a datetime column other than the time column -> ``ignored``: datetimes are not model inputs
  (derive numeric columns such as "days since" upstream to use one);
- an integer or text column whose values are unique per row, in a table of at least
  :data:`MIN_ID_ROWS` rows -> ``id`` (an identifier such as ``customer_id`` or a uuid). Floats and
  booleans are never IDs; one repeated value is enough to make a column not an ID.

Booleans (numpy bool, or object columns holding only True/False/None as pyarrow reads a bool
column with nulls) are kind ``boolean``. Inference reads each column in place: no per-column copy
of the frame is made.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mloop.core.contract.model import ColumnKind, ColumnRole, ColumnSpec, DatasetContract, Task
from mloop.core.contract.validation import duplicated_rows, float_values
from mloop.core.frames import column

MAX_CATEGORIES = 100  # a text column with more levels is free text: no category rule
NULL_SHARE_SLACK = 0.02  # accepted null share = 2 x seen + this, for columns that had nulls
RANGE_TOLERANCE = 0.1  # numeric values may exceed [min, max] by 10% of the range
OUT_OF_RANGE_SHARE = 0.01
UNKNOWN_CATEGORY_SHARE = 0.01
DUPLICATE_SHARE = 0.01
MAX_CLASSES = 20  # an integer-valued target with more distinct values is a regression target
IMBALANCED_POSITIVE_SHARE = 0.1  # a binary target whose positive class is rarer: gate on PR AUC
MIN_ID_ROWS = 50  # below this many rows, unique values are too weak a sign of an identifier

NOTE_ALL_NULL = "all values null: not a model input"
NOTE_CONSTANT = "one value, no nulls (constant): not a model input"
NOTE_DATETIME = "a datetime other than the time column: not a model input"
NOTE_ID = "unique per row (an identifier): not a model input"


def suggested_gate_metric(task: Task, class_counts: Mapping[Any, int]) -> str:
    """The gate metric that fits the target when the user chose none.

    regression -> rmse; multiclass -> roc_auc (macro one-vs-rest); binary -> pr_auc when the
    positive class (the larger label) is rarer than :data:`IMBALANCED_POSITIVE_SHARE` of the rows
    (ROC AUC hides how a rare class is ranked), else roc_auc.
    """
    if task != "classification":
        return "rmse"
    counts = {k: int(v) for k, v in class_counts.items() if int(v) > 0}
    if len(counts) != 2:
        return "roc_auc"
    positive = sorted(counts)[-1]
    return (
        "pr_auc"
        if counts[positive] / sum(counts.values()) < IMBALANCED_POSITIVE_SHARE
        else "roc_auc"
    )


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
    if pdt.is_object_dtype(series) and holds_bools(series):
        return "boolean"
    return "categorical"


def holds_bools(series: pd.Series) -> bool:
    """Whether an object column holds only booleans and nulls (at least one boolean)."""
    return pd.api.types.infer_dtype(series, skipna=True) == "boolean"


def infer_task(series: pd.Series, kind: ColumnKind | None = None) -> Task:
    """classification for bool/text targets, and for integer-valued ones with at most 20 levels that
    repeat (beyond two levels, each seen twice on average: 17 distinct weights in 20 rows are
    measurements, not classes); else regression.

    ``kind``: the column's :func:`kind_of`, when the caller has it already.
    """
    kind = kind or kind_of(series)
    if kind in ("boolean", "categorical"):
        return "classification"
    values = series.dropna()
    if kind == "numeric" and not (values == values.round()).all():
        return "regression"
    levels = values.nunique()
    return (
        "classification"
        if levels <= MAX_CLASSES and (levels <= 2 or len(values) >= 2 * levels)
        else "regression"
    )


def null_tolerance(null_share: float, *, is_target: bool) -> float:
    """Accepted null share: none for the target or a column without nulls, else 2 x seen + slack."""
    if is_target or null_share == 0:
        return 0.0
    return min(1.0, round(2 * null_share + NULL_SHARE_SLACK, 4))


def column_role(
    series: pd.Series, kind: ColumnKind, *, nulls: int, distinct: int | None
) -> tuple[ColumnRole, str | None]:
    """The role of a non-target, non-time column and the note saying why it is not a feature.

    ``distinct``: the number of distinct non-null values when the caller knows it (level counts);
    otherwise it is computed only when a rule needs it.
    """
    if nulls == len(series):
        return "ignored", NOTE_ALL_NULL
    if nulls == 0 and _distinct(series, distinct, at_most=1) == 1:
        return "ignored", NOTE_CONSTANT
    if kind == "datetime":
        return "ignored", NOTE_DATETIME
    if (
        kind in ("integer", "categorical")
        and nulls == 0
        and len(series) >= MIN_ID_ROWS
        and _unique(series, kind, distinct)
    ):
        return "id", NOTE_ID
    return "feature", None


def _distinct(series: pd.Series, known: int | None, *, at_most: int) -> int:
    """Distinct non-null values (exact up to ``at_most + 1``; min/max decide it for ordered kinds)."""
    if known is not None:
        return known
    from pandas.api import types as pdt

    if pdt.is_numeric_dtype(series) or pdt.is_datetime64_any_dtype(series):
        low, high = series.min(), series.max()
        return 1 if low == high else at_most + 1
    return int(series.nunique(dropna=True))


def _unique(series: pd.Series, kind: ColumnKind, distinct: int | None) -> bool:
    """Whether every value differs (no nulls assumed); integers are first ruled out by their range."""
    if distinct is not None:
        return distinct == len(series)
    if kind == "integer" and int(series.max()) - int(series.min()) + 1 < len(series):
        return False  # fewer possible values than rows: some value repeats
    return bool(series.is_unique)


def infer_column(
    series: pd.Series, *, name: str, rows: int, is_target: bool, kind: ColumnKind | None = None
) -> ColumnSpec:
    """One column's spec: kind, role, null tolerance, and a range (numeric) or levels (text)."""
    kind = kind or kind_of(series)
    counts = series.value_counts(dropna=True, sort=False) if kind == "categorical" else None
    nulls = len(series) - int(counts.sum()) if counts is not None else int(series.isna().sum())
    null_share = nulls / rows
    spec = ColumnSpec(
        name=name,
        kind=kind,
        nullable=null_share > 0,
        max_null_share=null_tolerance(null_share, is_target=is_target),
    )
    if is_target:
        spec.role = "target"
    else:
        spec.role, spec.note = column_role(
            series, kind, nulls=nulls, distinct=None if counts is None else len(counts)
        )
    if kind in ("numeric", "integer"):
        values = float_values(series)
        finite = values[
            np.isfinite(values)
        ]  # infinities are the non_finite rule's, not the range's
        if finite.size:
            spec.min, spec.max = float(finite.min()), float(finite.max())
            spec.range_tolerance = RANGE_TOLERANCE
            spec.max_out_of_range_share = OUT_OF_RANGE_SHARE
    elif counts is not None and len(counts):
        levels = counts.index.astype(str).unique()
        if len(levels) <= MAX_CATEGORIES:
            spec.categories = sorted(str(level) for level in levels)  # str already: for the checker
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
    ``max(1%, 1.5 x seen)``, at most 100%. The target accepts no nulls. ``time_column`` defaults
    to the only datetime column with values, if there is exactly one. Column roles follow the
    rules of this module's docstring. ``duplicated`` (from :func:`duplicated_rows`) saves
    recomputing the duplicate mask when the caller validates the same frame too.
    """
    if target not in df.columns:
        raise KeyError(target)
    kinds: dict[Hashable, ColumnKind] = {col: kind_of(column(df, col)) for col in df.columns}
    if time_column is None:
        datetimes = [
            str(c)
            for c, kind in kinds.items()
            if kind == "datetime" and column(df, c).notna().any()
        ]
        time_column = datetimes[0] if len(datetimes) == 1 else None  # as spec.name: str(col)
    rows = max(len(df), 1)
    specs = [
        infer_column(
            column(df, col), name=str(col), rows=rows, is_target=col == target, kind=kinds[col]
        )
        for col in df.columns
    ]
    for spec in specs:
        if spec.name == time_column:
            spec.role, spec.note = "time", None
    duplicate_share = (
        float((duplicated if duplicated is not None else duplicated_rows(df)).sum()) / rows
    )
    task = task or infer_task(column(df, target), kinds[target])
    counts = df[target].value_counts(dropna=True).to_dict() if task == "classification" else {}
    return DatasetContract(
        name=name,
        task=task,
        gate_metric=suggested_gate_metric(task, counts),
        target=target,
        time_column=time_column,
        columns=specs,
        max_duplicate_share=min(1.0, max(DUPLICATE_SHARE, round(1.5 * duplicate_share, 4))),
    )

"""Checking a DataFrame against a contract with pandera; each rule is computed once.

Every rule is a named pandera check (names are the RULE_* ids). A check measures its rule once,
and when the rule fails it records the :class:`RuleFailure` it found (rows, share, examples) in
the validation's :class:`Findings`; the report is then read off pandera's lazy
``SchemaErrors.failure_cases``: which checks failed (plus pandera's own missing and unexpected
column cases) and, for each, the failure its check recorded. Nothing is recomputed afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from pandas.core.util.hashing import hash_pandas_object  # what pd.util lazily re-exports, typed

from mloop.core.contract.model import ColumnKind, ColumnSpec, DatasetContract
from mloop.core.contract.report import (
    RULE_DTYPE,
    RULE_DUPLICATES,
    RULE_EMPTY,
    RULE_MISSING_COLUMN,
    RULE_NON_FINITE,
    RULE_NULL_SHARE,
    RULE_OUT_OF_RANGE,
    RULE_SINGLE_CLASS,
    RULE_TARGET_MISSING,
    RULE_TARGET_NULL,
    RULE_UNEXPECTED_COLUMN,
    RULE_UNKNOWN_CATEGORY,
    RuleFailure,
    ValidationReport,
)
from mloop.core.frames import numeric

EXAMPLES = 5  # offending values (or row numbers) kept per failure

Measure = Callable[
    [Any], RuleFailure | None
]  # measures one rule on a Series/DataFrame: None = passes


def duplicated_rows(df: pd.DataFrame) -> pd.Series:
    """Rows that repeat an earlier row (hash of all values: vectorised and cheap at 1M rows)."""
    if df.empty:
        return pd.Series([], dtype=bool)
    hashes = hash_pandas_object(df, index=False)
    return hashes.duplicated()


def _examples(values: Any, n: int = EXAMPLES) -> list[str]:
    return [str(v) for v in pd.unique(values)[:n]]


def _row_examples(mask: Any, n: int = EXAMPLES) -> list[str]:
    return [f"row {i}" for i in np.flatnonzero(np.asarray(mask))[:n]]


def dtype_fits(series: pd.Series, kind: ColumnKind) -> bool:
    """Whether the column's dtype holds values of ``kind`` (integers may read back as whole floats)."""
    from pandas.api import types as pdt

    if kind == "numeric":
        return pdt.is_numeric_dtype(series) and not pdt.is_bool_dtype(series)
    if kind == "integer":
        if pdt.is_integer_dtype(series):
            return True
        if pdt.is_float_dtype(series):  # an integer column with nulls reads back as float
            values = series.to_numpy()
            return bool(np.all(np.isnan(values) | (np.mod(values, 1) == 0)))
        return False
    if kind == "boolean":  # a bool column with nulls reads back as objects: True/False/None
        return pdt.is_bool_dtype(series) or (
            pdt.is_object_dtype(series)
            and pd.api.types.infer_dtype(series, skipna=True) in ("boolean", "empty")
        )
    if kind == "datetime":
        return pdt.is_datetime64_any_dtype(series)
    return (
        pdt.is_object_dtype(series)
        or pdt.is_string_dtype(series)
        or isinstance(series.dtype, pd.CategoricalDtype)
    )


def kind_ok(series: pd.Series, kind: ColumnKind) -> bool:
    """Whether the column fits ``kind`` (an all-null column fits anything)."""
    return dtype_fits(series, kind) or bool(series.isna().all())


# ---- the rules: each measures itself once and returns its failure (None: the rule holds) ------


def _share_failure(
    rule: str, spec: ColumnSpec, count: int, rows: int, limit: float, examples: list[str], what: str
) -> RuleFailure:
    """A failed share-based rule; ``what`` names the offending rows, e.g. ``null rows``."""
    share = count / rows
    subject = "target column" if rule == RULE_TARGET_NULL else "column"
    return RuleFailure(
        rule=rule,
        column=spec.name,
        rows=count,
        share=share,
        limit=limit,
        examples=examples,
        message=f"{subject} {spec.name!r} has {count} {what.format(share=f'{share:.1%}')}, above {limit_name(rule)} {limit:.1%}",
    )


def limit_name(rule: str) -> str:
    """The contract field that sets the tolerance of a share-based rule."""
    return {
        RULE_NULL_SHARE: "max_null_share",
        RULE_TARGET_NULL: "max_null_share",
        RULE_OUT_OF_RANGE: "max_out_of_range_share",
        RULE_UNKNOWN_CATEGORY: "max_unknown_share",
        RULE_DUPLICATES: "max_duplicate_share",
    }[rule]


def dtype_failure(series: pd.Series, spec: ColumnSpec, rows: int) -> RuleFailure:
    """The dtype rule's failure for a column that does not fit its kind: which values are not of it."""
    values = series.dropna()
    if spec.kind in ("numeric", "integer"):
        parsed = numeric(values)
        bad = values[parsed.isna() | ((parsed % 1 != 0) if spec.kind == "integer" else False)]
    else:
        bad = values
    count = len(bad) if len(bad) else len(values)
    return RuleFailure(
        rule=RULE_DTYPE,
        column=spec.name,
        rows=count,
        share=count / rows,
        examples=_examples(bad if len(bad) else values),
        message=f"column {spec.name!r} should be {spec.kind} but is {series.dtype} ({count} rows are not {spec.kind})",
    )


def null_failure(
    series: pd.Series, spec: ColumnSpec, rows: int, rule: str, nulls: int | None = None
) -> RuleFailure | None:
    """``null_share`` (or ``target_null``): more nulls than ``max_null_share``; examples are row numbers.

    ``nulls``: the null count when the caller has it already (from level counts).
    """
    mask: pd.Series | None = None
    if nulls is None:
        mask = series.isna()
        nulls = int(mask.sum())
    if nulls <= spec.max_null_share * rows:
        return None
    examples = _row_examples(series.isna() if mask is None else mask)
    return _share_failure(
        rule, spec, nulls, rows, spec.max_null_share, examples, "null rows ({share})"
    )


def float_values(series: pd.Series) -> np.ndarray:
    """A numeric column as float64 (nulls as NaN): what the numeric rules measure."""
    return series.to_numpy(dtype=float, na_value=np.nan)


def non_finite_failure(
    series: pd.Series, spec: ColumnSpec, rows: int, values: np.ndarray | None = None
) -> RuleFailure | None:
    """``non_finite``: any +/-infinity in a numeric column (no tolerance: a fit would fail on it later,
    after the version was made). Examples are row numbers. ``values``: :func:`float_values` of ``series``
    when the caller has them already."""
    values = float_values(series) if values is None else values
    infinite = np.isinf(values)
    count = int(np.count_nonzero(infinite))
    if count == 0:
        return None
    return RuleFailure(
        rule=RULE_NON_FINITE,
        column=spec.name,
        rows=count,
        share=count / rows,
        limit=0.0,
        examples=_row_examples(infinite),
        message=f"column {spec.name!r} has {count} infinite value(s); write an unknown value as empty (null), "
        "or a finite number",
    )


def out_of_range_failure(
    series: pd.Series, spec: ColumnSpec, rows: int, values: np.ndarray | None = None
) -> RuleFailure | None:
    """``out_of_range_share``: more values outside the widened ``[min, max]`` than tolerated (``values`` as in
    :func:`non_finite_failure`)."""
    low, high = spec.bounds()
    values = float_values(series) if values is None else values
    outside = (values < low) | (values > high)
    count = int(np.count_nonzero(outside))
    if count <= spec.max_out_of_range_share * rows:
        return None
    what = f"rows ({{share}}) outside [{low:g}, {high:g}]"
    return _share_failure(
        RULE_OUT_OF_RANGE,
        spec,
        count,
        rows,
        spec.max_out_of_range_share,
        _examples(series[outside]),
        what,
    )


def unknown_category_failure(levels: pd.Series, spec: ColumnSpec, rows: int) -> RuleFailure | None:
    """``unknown_category_share``: more rows with a level outside ``categories`` than tolerated.

    ``levels``: row count per non-null level, in order of first appearance (``value_counts(sort=False)``).
    """
    known = levels.index.astype(str).isin(spec.categories or [])
    unknown = levels.loc[~known & (levels.to_numpy() > 0)]
    count = int(unknown.sum())
    if count <= spec.max_unknown_share * rows:
        return None
    examples = [str(v) for v in unknown.index[:EXAMPLES]]
    return _share_failure(
        RULE_UNKNOWN_CATEGORY,
        spec,
        count,
        rows,
        spec.max_unknown_share,
        examples,
        "rows ({share}) with unknown categories",
    )


def duplicate_failure(
    duplicated: pd.Series, contract: DatasetContract, rows: int
) -> RuleFailure | None:
    """``duplicate_share``: more rows repeating an earlier row than ``max_duplicate_share``."""
    count = int(duplicated.sum())
    limit = contract.max_duplicate_share
    if count <= limit * rows:
        return None
    return RuleFailure(
        rule=RULE_DUPLICATES,
        column=None,
        rows=count,
        share=count / rows,
        limit=limit,
        examples=_row_examples(duplicated),
        message=f"{count} duplicate rows ({count / rows:.1%}), above {limit_name(RULE_DUPLICATES)} {limit:.1%}",
    )


def single_class_failure(df: pd.DataFrame, target: str, rows: int) -> RuleFailure | None:
    """``single_class_target``: a classification target with fewer than two classes."""
    if target not in df:
        return None  # reported as target_missing
    classes = df[target].dropna().unique()
    if len(classes) >= 2:
        return None
    return RuleFailure(
        rule=RULE_SINGLE_CLASS,
        column=target,
        rows=rows,
        share=1.0,
        examples=[str(c) for c in classes[:EXAMPLES]],
        message=f"target {target!r} has {len(classes)} class(es); classification needs at least 2",
    )


def column_failure(
    check: str, column: str, df: pd.DataFrame, contract: DatasetContract
) -> RuleFailure:
    """A failure from pandera's own column checks: a contract column is absent, or an extra is present."""
    rows = len(df)
    if check == "column_in_schema":
        return RuleFailure(
            rule=RULE_UNEXPECTED_COLUMN,
            column=column,
            rows=rows,
            share=1.0,
            examples=_examples(df[column].dropna()),
            message=f"column {column!r} is not in the contract",
        )
    if column == contract.target:
        return RuleFailure(
            rule=RULE_TARGET_MISSING,
            column=column,
            rows=rows,
            share=1.0,
            message=f"target column {column!r} is absent (columns: {', '.join(map(str, df.columns[:20]))})",
        )
    return RuleFailure(
        rule=RULE_MISSING_COLUMN,
        column=column,
        rows=rows,
        share=1.0,
        message=f"column {column!r} is missing",
    )


# ---- the pandera schema ------------------------------------------------------------------------

PANDERA_COLUMN_CHECKS = ("column_in_dataframe", "column_in_schema")


class Findings:
    """What the checks of one validation found: each failed rule's failure, by (rule, column).

    Frame-level rules are keyed by column ``None``. One instance per validation (it is filled
    while pandera runs the checks, then read to build the report).
    """

    def __init__(self) -> None:
        self._found: dict[tuple[str, str | None], RuleFailure] = {}

    def check(self, rule: str, column: str | None, measure: Measure) -> Callable[[Any], bool]:
        """A pandera check function for ``measure``: records the failure it measured, passes if none."""

        def run(data: Any) -> bool:
            failure = measure(data)
            if failure is not None:
                self._found[(rule, column)] = failure
            return failure is None

        return run

    def get(self, rule: str, column: str | None) -> RuleFailure | None:
        return self._found.get((rule, column))


class _ColumnData:
    """Facts that several checks of one column share (dtype fit, level counts), computed at most once."""

    def __init__(self, spec: ColumnSpec) -> None:
        self.spec = spec
        self._kind_ok: bool | None = None
        self._levels: pd.Series | None = None
        self._floats: np.ndarray | None = None

    def floats(self, s: pd.Series) -> np.ndarray:
        """The column as float64, converted once for the numeric rules (non_finite, out_of_range_share)."""
        if self._floats is None:
            self._floats = float_values(s)
        return self._floats

    def kind_ok(self, s: pd.Series) -> bool:
        if self._kind_ok is None:
            self._kind_ok = kind_ok(s, self.spec.kind)
        return self._kind_ok

    def levels(self, s: pd.Series) -> pd.Series:
        """Row count per non-null level (one hash pass over the strings; gives the null count too)."""
        if self._levels is None:
            self._levels = s.value_counts(dropna=True, sort=False)
        return self._levels

    def uses_levels(self, s: pd.Series) -> bool:
        return (
            self.spec.kind == "categorical" and self.spec.categories is not None and self.kind_ok(s)
        )


def column_measures(spec: ColumnSpec, contract: DatasetContract, rows: int) -> dict[str, Measure]:
    """The rules of one contract column, by rule id, each measuring a Series of ``rows`` rows."""
    data = _ColumnData(spec)

    def dtype(s: pd.Series) -> RuleFailure | None:
        return None if data.kind_ok(s) else dtype_failure(s, spec, rows)

    def nulls(s: pd.Series) -> RuleFailure | None:
        known = len(s) - int(data.levels(s).sum()) if data.uses_levels(s) else None
        return null_failure(s, spec, rows, null_rule, known)

    null_rule = RULE_TARGET_NULL if spec.name == contract.target else RULE_NULL_SHARE
    measures: dict[str, Measure] = {RULE_DTYPE: dtype, null_rule: nulls}
    # a column of the wrong kind is reported by the dtype rule alone
    if spec.kind in ("numeric", "integer"):
        measures[RULE_NON_FINITE] = lambda s: (
            non_finite_failure(s, spec, rows, data.floats(s)) if data.kind_ok(s) else None
        )
        if spec.min is not None and spec.max is not None:
            measures[RULE_OUT_OF_RANGE] = lambda s: (
                out_of_range_failure(s, spec, rows, data.floats(s)) if data.kind_ok(s) else None
            )
    if spec.kind == "categorical" and spec.categories is not None:
        measures[RULE_UNKNOWN_CATEGORY] = lambda s: (
            unknown_category_failure(data.levels(s), spec, rows) if data.kind_ok(s) else None
        )
    return measures


def frame_measures(
    contract: DatasetContract, rows: int, duplicated: pd.Series | None = None
) -> dict[str, Measure]:
    """The dataset-level rules, by rule id, each measuring a DataFrame of ``rows`` rows."""
    measures: dict[str, Measure] = {
        RULE_DUPLICATES: lambda d: duplicate_failure(
            duplicated if duplicated is not None else duplicated_rows(d), contract, rows
        )
    }
    if contract.task == "classification":
        measures[RULE_SINGLE_CLASS] = lambda d: single_class_failure(d, contract.target, rows)
    return measures


def build_schema(
    contract: DatasetContract, rows: int, findings: Findings, duplicated: pd.Series | None = None
) -> Any:
    """The pandera ``DataFrameSchema`` that expresses ``contract`` for a frame of ``rows`` rows.

    Each check records what it found in ``findings``; share-based rules are vectorised scalar
    checks, so a 1M-row frame is checked in well under a second per column.
    """
    import pandera.pandas as pa

    def checks(measures: Mapping[str, Measure], column: str | None) -> list[Any]:
        return [
            pa.Check(findings.check(rule, column, m), name=rule, ignore_na=False)
            for rule, m in measures.items()
        ]

    columns = {
        spec.name: pa.Column(
            None,
            nullable=True,
            checks=checks(column_measures(spec, contract, rows), spec.name),
            name=spec.name,
        )
        for spec in contract.columns
    }
    frame_checks = checks(frame_measures(contract, rows, duplicated), None)
    return pa.DataFrameSchema(columns, checks=frame_checks, strict=True, name=contract.name)


def _failure_of_case(
    case: Mapping[str, Any], df: pd.DataFrame, contract: DatasetContract, findings: Findings
) -> RuleFailure:
    """The report entry for one row of pandera's ``failure_cases``."""
    check = str(case["check"])
    if check in PANDERA_COLUMN_CHECKS:
        return column_failure(check, str(case["failure_case"]), df, contract)
    column = None if case["schema_context"] == "DataFrameSchema" else str(case["column"])
    found = findings.get(check, column)
    if found is not None:
        return found
    # the check raised (pandera reports the exception as the failure case): the rule cannot hold
    return RuleFailure(
        rule=check,
        column=column,
        rows=len(df),
        share=1.0,
        message=f"rule {check} could not be checked{f' on column {column!r}' if column else ''}: {case['failure_case']}",
    )


def validate_frame(
    df: pd.DataFrame, contract: DatasetContract, *, duplicated: pd.Series | None = None
) -> ValidationReport:
    """Check ``df`` against ``contract`` with pandera (lazy: every failure is collected).

    Pure: no I/O. Returns a report whose ``failures`` name the rule, column, row count and a few
    example values; an empty list means the frame is accepted. ``duplicated`` (from
    :func:`duplicated_rows`) saves recomputing the duplicate mask.
    """
    report = ValidationReport(dataset=contract.name, rows=len(df), columns=len(df.columns))
    if len(df) < contract.min_rows:
        report.failures.append(
            RuleFailure(
                rule=RULE_EMPTY,
                rows=0,
                message=f"the data has {len(df)} rows (at least {contract.min_rows} needed)",
            )
        )
        return report
    import pandera.errors as pa_errors

    findings = Findings()
    schema = build_schema(contract, len(df), findings, duplicated)
    try:
        schema.validate(df, lazy=True, inplace=True)
    except pa_errors.SchemaErrors as exc:
        failures = {}
        for case in exc.failure_cases.to_dict("records"):
            failure = _failure_of_case(case, df, contract, findings)
            failures.setdefault((failure.rule, failure.column), failure)
        report.failures.extend(failures.values())
    order = {c.name: i for i, c in enumerate(contract.columns)}
    report.failures.sort(key=lambda f: (order.get(f.column or "", len(order)), f.rule))
    return report

"""The data contract of a dataset: what every version must look like.

Written as YAML under ``data/<name>/contract.yaml`` by the first ingest (inferred), meant to be
reviewed and committed; later ingests are validated against it. The request schema of the
prediction service and the pipeline factory are generated from it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from mloop.core.errors import MloopError, NotFoundError

ColumnKind = Literal["numeric", "integer", "categorical", "boolean", "datetime"]
Task = Literal["classification", "regression"]


class ColumnSpec(BaseModel):
    """One column's rules."""

    name: str
    kind: ColumnKind
    nullable: bool = Field(description="Whether nulls were seen at onboarding.")
    max_null_share: float = Field(default=0.0, ge=0, le=1, description="Largest accepted share of nulls.")
    categories: list[str] | None = Field(default=None, description="Allowed levels (categorical columns).")
    max_unknown_share: float = Field(
        default=0.0, ge=0, le=1, description="Largest accepted share of rows with a level not in categories."
    )
    min: float | None = Field(default=None, description="Lowest value seen at onboarding (numeric).")
    max: float | None = Field(default=None, description="Highest value seen at onboarding (numeric).")
    range_tolerance: float = Field(
        default=0.0, ge=0, description="Values may exceed [min, max] by this share of the range."
    )
    max_out_of_range_share: float = Field(
        default=0.0, ge=0, le=1, description="Largest accepted share of rows outside the widened range."
    )


class DatasetContract(BaseModel):
    """A dataset's contract: columns, target, task, and dataset-level tolerances."""

    name: str
    task: Task
    target: str
    time_column: str | None = None
    columns: list[ColumnSpec]
    max_duplicate_share: float = Field(default=0.01, ge=0, le=1, description="Largest accepted share of duplicate rows.")
    min_rows: int = Field(default=1, ge=1)

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def feature_columns(self) -> list[ColumnSpec]:
        """Model inputs: every column but the target and the time column."""
        return [c for c in self.columns if c.name not in {self.target, self.time_column}]

    @property
    def numeric_features(self) -> list[str]:
        return [c.name for c in self.feature_columns if c.kind in ("numeric", "integer")]

    @property
    def categorical_features(self) -> list[str]:
        return [c.name for c in self.feature_columns if c.kind in ("categorical", "boolean")]


# --------------------------------------------------------------------------------------------
# Inference, YAML files, validation
# --------------------------------------------------------------------------------------------

CONTRACT_FILE = "contract.yaml"
MAX_CATEGORIES = 100  # a text column with more levels is free text: no category rule
NULL_SHARE_SLACK = 0.02  # accepted null share = 2 x seen + this, for columns that had nulls
RANGE_TOLERANCE = 0.1  # numeric values may exceed [min, max] by 10% of the range
OUT_OF_RANGE_SHARE = 0.01
UNKNOWN_CATEGORY_SHARE = 0.01
DUPLICATE_SHARE = 0.01

# Rule ids: each failure in a ValidationReport names one of these.
RULE_EMPTY = "empty_file"
RULE_UNREADABLE = "unreadable_file"
RULE_MISSING_COLUMN = "missing_column"
RULE_UNEXPECTED_COLUMN = "unexpected_column"
RULE_TARGET_MISSING = "target_missing"
RULE_TARGET_NULL = "target_null"
RULE_SINGLE_CLASS = "single_class_target"
RULE_DTYPE = "dtype"
RULE_NULL_SHARE = "null_share"
RULE_OUT_OF_RANGE = "out_of_range_share"
RULE_UNKNOWN_CATEGORY = "unknown_category_share"
RULE_DUPLICATES = "duplicate_share"

RULE_DESCRIPTIONS: dict[str, str] = {
    RULE_EMPTY: "the file has no data rows",
    RULE_UNREADABLE: "the file cannot be parsed as CSV/parquet",
    RULE_MISSING_COLUMN: "a contract column is absent",
    RULE_UNEXPECTED_COLUMN: "a column not in the contract is present",
    RULE_TARGET_MISSING: "the target column is absent",
    RULE_TARGET_NULL: "the target has nulls",
    RULE_SINGLE_CLASS: "a classification target has fewer than two classes",
    RULE_DTYPE: "a column's values are not of the contract's kind",
    RULE_NULL_SHARE: "null share above the column's max_null_share",
    RULE_OUT_OF_RANGE: "share of values outside [min, max] widened by range_tolerance above max_out_of_range_share",
    RULE_UNKNOWN_CATEGORY: "share of levels not in categories above max_unknown_share",
    RULE_DUPLICATES: "share of duplicate rows above max_duplicate_share",
}


class RuleFailure(BaseModel):
    """One failed contract rule: which rule, which column, how many rows, a few example values."""

    rule: str = Field(description="Rule id, e.g. null_share (see RULE_DESCRIPTIONS).")
    column: str | None = Field(default=None, description="The column the rule is about (None: whole dataset).")
    rows: int = Field(description="How many rows break the rule.")
    share: float | None = Field(default=None, description="rows / total rows.")
    limit: float | None = Field(default=None, description="The contract's tolerance for this rule, if any.")
    examples: list[str] = Field(default_factory=list, description="A few offending values (or row numbers).")
    message: str


class ValidationReport(BaseModel):
    """The result of checking a DataFrame against a contract (all failures, not only the first)."""

    dataset: str
    rows: int
    columns: int
    failures: list[RuleFailure] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def rules(self) -> list[str]:
        return [f.rule for f in self.failures]

    def text(self) -> str:
        """Readable multi-line report (one line per failure)."""
        if self.ok:
            return f"dataset {self.dataset}: {self.rows} rows pass the contract"
        lines = [f"dataset {self.dataset}: {len(self.failures)} contract rule(s) failed on {self.rows} rows"]
        for f in self.failures:
            example = f" e.g. {', '.join(f.examples)}" if f.examples else ""
            lines.append(f"  - {f.rule}: {f.message}{example}")
        return "\n".join(lines)


def _kind_of(series: pd.Series) -> ColumnKind:
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


def _float(value: object) -> float:
    return float(value)  # type: ignore[arg-type]


def infer_task(series: pd.Series) -> Task:
    """classification for bool/text/integer-valued targets with <= 20 levels, else regression."""
    kind = _kind_of(series)
    if kind in ("boolean", "categorical"):
        return "classification"
    values = series.dropna()
    if kind == "numeric" and not (values == values.round()).all():
        return "regression"
    return "classification" if values.nunique() <= 20 else "regression"


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
        datetimes = [c for c in df.columns if _kind_of(df[c]) == "datetime"]
        time_column = datetimes[0] if len(datetimes) == 1 else None
    rows = max(len(df), 1)
    specs: list[ColumnSpec] = []
    for col in df.columns:
        series = df[col]
        kind = _kind_of(series)
        counts = series.value_counts(dropna=True, sort=False) if kind == "categorical" else None
        nulls = len(series) - int(counts.sum()) if counts is not None else int(series.isna().sum())
        null_share = nulls / rows
        spec = ColumnSpec(
            name=str(col),
            kind=kind,
            nullable=null_share > 0,
            max_null_share=0.0 if col == target or null_share == 0 else min(1.0, round(2 * null_share + NULL_SHARE_SLACK, 4)),
        )
        if kind in ("numeric", "integer") and nulls < len(series):
            spec.min, spec.max = _float(series.min()), _float(series.max())
            spec.range_tolerance = RANGE_TOLERANCE
            spec.max_out_of_range_share = OUT_OF_RANGE_SHARE
        elif counts is not None:
            levels = pd.unique(counts.index.astype(str))
            if len(levels) <= MAX_CATEGORIES:
                spec.categories = sorted(levels.tolist())
                spec.max_unknown_share = UNKNOWN_CATEGORY_SHARE
        specs.append(spec)
    duplicate_share = float((duplicated if duplicated is not None else duplicated_rows(df)).sum()) / rows
    return DatasetContract(
        name=name,
        task=task or infer_task(df[target]),
        target=target,
        time_column=time_column,
        columns=specs,
        max_duplicate_share=max(DUPLICATE_SHARE, round(1.5 * duplicate_share, 4)),
    )


def contract_path(project_dir: Path, name: str) -> Path:
    return Path(project_dir) / "data" / name / CONTRACT_FILE


_YAML_HEADER = """\
# Data contract of dataset {name!r}, inferred by `mloop ingest` from its first version.
# Review it and commit it: every later version of {name!r} is checked against it.
# Per column: kind (numeric|integer|categorical|boolean|datetime), max_null_share, allowed
# categories + max_unknown_share, [min, max] widened by range_tolerance x (max - min) +
# max_out_of_range_share. Loosen or tighten the tolerances here; no code change is needed.
"""


def contract_to_yaml(contract: DatasetContract) -> str:
    import yaml

    data = contract.model_dump(mode="json")
    cleaned = []
    for col in data["columns"]:  # drop rules that do not apply to the column's kind
        if col["categories"] is None:
            col.pop("categories")
            col.pop("max_unknown_share")
        if col["min"] is None and col["max"] is None:
            for key in ("min", "max", "range_tolerance", "max_out_of_range_share"):
                col.pop(key)
        cleaned.append(col)
    data["columns"] = cleaned
    return _YAML_HEADER.format(name=contract.name) + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def save_contract(contract: DatasetContract, project_dir: Path) -> Path:
    """Write ``data/<name>/contract.yaml`` under ``project_dir``; returns its path."""
    path = contract_path(project_dir, contract.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(contract_to_yaml(contract))
    tmp.replace(path)
    return path


def load_contract(project_dir: Path, name: str) -> DatasetContract:
    """Read ``data/<name>/contract.yaml``; NotFoundError if the dataset was never onboarded."""
    import yaml

    path = contract_path(project_dir, name)
    if not path.exists():
        raise NotFoundError(
            f"dataset {name!r} has no contract",
            where=str(path),
            fix=f"onboard it first: mloop ingest FILE --dataset {name}",
        )
    try:
        return DatasetContract.model_validate(yaml.safe_load(path.read_text()))
    except Exception as exc:  # yaml or pydantic error: say which file
        raise MloopError(f"contract file is invalid: {exc}", where=str(path), fix="fix the YAML or delete it to re-infer") from exc


# ---- validation --------------------------------------------------------------------------


def duplicated_rows(df: pd.DataFrame) -> pd.Series:
    """Rows that repeat an earlier row (hash of all values: vectorised and cheap at 1M rows)."""
    if df.empty:
        return pd.Series([], dtype=bool)
    hashes = pd.util.hash_pandas_object(df, index=False)
    return hashes.duplicated()


def _examples(values: pd.Series, n: int = 5) -> list[str]:
    return [str(v) for v in pd.unique(values)[:n]]


def _row_examples(mask: pd.Series, n: int = 5) -> list[str]:
    return [f"row {i}" for i in np.flatnonzero(np.asarray(mask))[:n]]


def _kind_ok(series: pd.Series, kind: ColumnKind) -> bool:
    """Whether the column's dtype fits ``kind`` (an all-null column fits anything)."""
    return _dtype_fits(series, kind) or bool(series.isna().all())


def _dtype_fits(series: pd.Series, kind: ColumnKind) -> bool:
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
    if kind == "boolean":
        return pdt.is_bool_dtype(series)
    if kind == "datetime":
        return pdt.is_datetime64_any_dtype(series)
    return pdt.is_object_dtype(series) or pdt.is_string_dtype(series) or isinstance(series.dtype, pd.CategoricalDtype)


def _dtype_failure(series: pd.Series, spec: ColumnSpec, rows: int) -> RuleFailure:
    values = series.dropna()
    if spec.kind in ("numeric", "integer"):
        parsed = pd.to_numeric(values, errors="coerce")
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


def _bounds(spec: ColumnSpec) -> tuple[float, float]:
    assert spec.min is not None and spec.max is not None
    pad = spec.range_tolerance * (spec.max - spec.min)
    return spec.min - pad, spec.max + pad


class _ColumnRules:
    """The per-column rules of one contract column, as pandera checks plus failure details."""

    def __init__(self, spec: ColumnSpec, contract: DatasetContract, rows: int) -> None:
        self.spec = spec
        self.rows = rows
        self.is_target = spec.name == contract.target
        # Per-validation memo: every check of this column sees the same data, so costly
        # passes over 1M strings (null scan, level counts, dtype scan) are done once.
        self._kind_ok: bool | None = None
        self._levels: pd.Series | None = None

    def kind_ok(self, s: pd.Series) -> bool:
        if self._kind_ok is None:
            self._kind_ok = _kind_ok(s, self.spec.kind)
        return self._kind_ok

    def levels(self, s: pd.Series) -> pd.Series:
        """Row count per non-null level (one hash pass; gives the null count for free)."""
        if self._levels is None:
            self._levels = s.value_counts(dropna=True, sort=False)
        return self._levels

    def null_count(self, s: pd.Series) -> int:
        if self.spec.kind == "categorical" and self.spec.categories is not None and self.kind_ok(s):
            return len(s) - int(self.levels(s).sum())
        return int(s.isna().sum())

    def null_ok(self, s: pd.Series) -> bool:
        return self.null_count(s) <= self.spec.max_null_share * self.rows

    def out_of_range(self, s: pd.Series) -> pd.Series:
        low, high = _bounds(self.spec)
        return (s < low) | (s > high)

    def range_ok(self, s: pd.Series) -> bool:
        if not self.kind_ok(s):
            return True  # reported by the dtype rule
        low, high = _bounds(self.spec)
        values = s.to_numpy(dtype=float, na_value=np.nan)
        outside = int(np.count_nonzero((values < low) | (values > high)))
        return outside <= self.spec.max_out_of_range_share * self.rows

    def unknown(self, s: pd.Series) -> pd.Series:
        return s.notna() & ~s.astype(str).isin(self.spec.categories or [])

    def categories_ok(self, s: pd.Series) -> bool:
        if not self.kind_ok(s):
            return True  # reported by the dtype rule
        counts = self.levels(s)
        known = counts.index.astype(str).isin(self.spec.categories or [])
        return int(counts[~known].sum()) <= self.spec.max_unknown_share * self.rows

    def checks(self) -> list[Any]:
        import pandera.pandas as pa

        spec = self.spec
        checks = [
            pa.Check(self.kind_ok, name=RULE_DTYPE, ignore_na=False),
            pa.Check(self.null_ok, name=RULE_TARGET_NULL if self.is_target else RULE_NULL_SHARE, ignore_na=False),
        ]
        if spec.kind in ("numeric", "integer") and spec.min is not None and spec.max is not None:
            checks.append(pa.Check(self.range_ok, name=RULE_OUT_OF_RANGE, ignore_na=False))
        if spec.kind == "categorical" and spec.categories is not None:
            checks.append(pa.Check(self.categories_ok, name=RULE_UNKNOWN_CATEGORY, ignore_na=False))
        return checks

    def _share_failure(self, rule: str, mask: pd.Series, limit: float, limit_name: str, examples: list[str], what: str) -> RuleFailure:
        """A failure of a share-based rule: ``what`` describes the offending rows (after the count)."""
        count, rows = int(mask.sum()), self.rows
        subject = "target column" if self.is_target and rule == RULE_TARGET_NULL else "column"
        return RuleFailure(
            rule=rule,
            column=self.spec.name,
            rows=count,
            share=count / rows,
            limit=limit,
            examples=examples,
            message=f"{subject} {self.spec.name!r} has {count} {what}, above {limit_name} {limit:.1%}".replace(
                "{share}", f"{count / rows:.1%}"
            ),
        )

    def failure(self, rule: str, s: pd.Series) -> RuleFailure:
        spec = self.spec
        if rule == RULE_DTYPE:
            return _dtype_failure(s, spec, self.rows)
        if rule in (RULE_NULL_SHARE, RULE_TARGET_NULL):
            mask = s.isna()
            return self._share_failure(rule, mask, spec.max_null_share, "max_null_share", _row_examples(mask), "null rows ({share})")
        if rule == RULE_OUT_OF_RANGE:
            mask = self.out_of_range(s)
            low, high = _bounds(spec)
            what = f"rows ({{share}}) outside [{low:g}, {high:g}]"
            return self._share_failure(rule, mask, spec.max_out_of_range_share, "max_out_of_range_share", _examples(s[mask]), what)
        if rule == RULE_UNKNOWN_CATEGORY:
            mask = self.unknown(s)
            what = "rows ({share}) with unknown categories"
            return self._share_failure(rule, mask, spec.max_unknown_share, "max_unknown_share", _examples(s[mask]), what)
        raise ValueError(rule)


def _failure_from_pandera(
    row: Any, df: pd.DataFrame, contract: DatasetContract, rules: dict[str, _ColumnRules]
) -> RuleFailure | None:
    rows = len(df)
    check = str(row.check)
    if check == "column_in_dataframe":
        col = str(row.failure_case)
        if col == contract.target:
            return RuleFailure(
                rule=RULE_TARGET_MISSING,
                column=col,
                rows=rows,
                share=1.0,
                message=f"target column {col!r} is absent (columns: {', '.join(map(str, df.columns[:20]))})",
            )
        return RuleFailure(rule=RULE_MISSING_COLUMN, column=col, rows=rows, share=1.0, message=f"column {col!r} is missing")
    if check == "column_in_schema":
        col = str(row.failure_case)
        return RuleFailure(
            rule=RULE_UNEXPECTED_COLUMN,
            column=col,
            rows=rows,
            share=1.0,
            examples=_examples(df[col].dropna()),
            message=f"column {col!r} is not in the contract",
        )
    if check == RULE_SINGLE_CLASS:
        classes = df[contract.target].dropna().unique()
        return RuleFailure(
            rule=RULE_SINGLE_CLASS,
            column=contract.target,
            rows=rows,
            share=1.0,
            examples=[str(c) for c in classes[:5]],
            message=f"target {contract.target!r} has {len(classes)} class(es); classification needs at least 2",
        )
    if check == RULE_DUPLICATES:
        mask = duplicated_rows(df)
        count = int(mask.sum())
        return RuleFailure(
            rule=RULE_DUPLICATES,
            column=None,
            rows=count,
            share=count / rows,
            limit=contract.max_duplicate_share,
            examples=_row_examples(mask),
            message=f"{count} duplicate rows ({count / rows:.1%}), above max_duplicate_share {contract.max_duplicate_share:.1%}",
        )
    col = str(row.column)
    if col in rules:
        return rules[col].failure(check, df[col])
    return None  # pragma: no cover - a pandera failure we did not create


def build_schema(contract: DatasetContract, rows: int, duplicated: pd.Series | None = None) -> Any:
    """The pandera ``DataFrameSchema`` that expresses ``contract`` for a frame of ``rows`` rows.

    Every rule is a named pandera check (names are the RULE_* ids); share-based rules are
    vectorised scalar checks, so a 1M-row frame is checked in well under a second per column.
    """
    import pandera.pandas as pa

    rules = {spec.name: _ColumnRules(spec, contract, rows) for spec in contract.columns}
    columns = {name: pa.Column(None, nullable=True, checks=r.checks(), name=name) for name, r in rules.items()}
    frame_checks = [
        pa.Check(
            lambda d: int((duplicated if duplicated is not None else duplicated_rows(d)).sum())
            <= contract.max_duplicate_share * rows,
            name=RULE_DUPLICATES,
            ignore_na=False,
        )
    ]
    if contract.task == "classification":
        frame_checks.append(
            pa.Check(
                lambda d: contract.target not in d or d[contract.target].dropna().nunique() >= 2,
                name=RULE_SINGLE_CLASS,
                ignore_na=False,
            )
        )
    return pa.DataFrameSchema(columns, checks=frame_checks, strict=True, name=contract.name), rules


def validate_frame(
    df: pd.DataFrame, contract: DatasetContract, *, duplicated: pd.Series | None = None
) -> ValidationReport:
    """Check ``df`` against ``contract`` with pandera (lazy: every failure is collected).

    Pure: no I/O. Returns a report whose ``failures`` name the rule, column, row count and a few
    example values; an empty list means the frame is accepted.
    """
    report = ValidationReport(dataset=contract.name, rows=len(df), columns=len(df.columns))
    if len(df) < contract.min_rows:
        report.failures.append(
            RuleFailure(rule=RULE_EMPTY, rows=0, message=f"the data has {len(df)} rows (at least {contract.min_rows} needed)")
        )
        return report
    import pandera.errors as pa_errors

    schema, rules = build_schema(contract, len(df), duplicated)
    try:
        schema.validate(df, lazy=True, inplace=True)
    except pa_errors.SchemaErrors as exc:
        seen: set[tuple[str, str | None]] = set()
        for row in exc.failure_cases.itertuples(index=False):
            failure = _failure_from_pandera(row, df, contract, rules)
            if failure is not None and (failure.rule, failure.column) not in seen:
                seen.add((failure.rule, failure.column))
                report.failures.append(failure)
    order = {c.name: i for i, c in enumerate(contract.columns)}
    report.failures.sort(key=lambda f: (order.get(f.column or "", len(order)), f.rule))
    return report

"""Data drift of a window of predictions against the reference (training) data, with Evidently 0.7.

Method choice (pinned, not Evidently's size-dependent default): numeric columns use the normed
Wasserstein distance, categorical columns the Jensen-Shannon distance, both with threshold 0.1
(score >= threshold means drift). Evidently's default switches from K-S / chi-square p-values
(<= 1000 reference rows) to these distances (above), so the same data could get a different method
and verdict depending on window size. Distances estimate a property of the two distributions that
does not depend on the number of rows, which is what makes

* results comparable across windows of any size, and
* big windows cheap: a seeded sample estimates the same distance as the full data. A p-value
  test would not allow this, since at 1M rows it flags shifts far too small to matter.

Big windows: both frames are sampled (seeded) to at most ``max_rows`` rows before Evidently runs.
Any column whose sampled score lies within ``border_margin`` of its threshold is then recomputed
on the full, unsampled data with Evidently's own stat-test function, and that exact score decides
its verdict (``ColumnDrift.exact``). So a sampled verdict can only differ from the unsampled one
if sampling moved a score by more than the margin: 0.025 at 50k sampled rows (the expected
sampling error there is about 0.005), widened by sqrt(50k / n) for smaller samples. A numeric
column with at most 5 distinct values is compared with the Jensen-Shannon distance, as
Evidently's own large-sample default does.

Nulls: Evidently drops nulls before its tests, so a column whose null share jumps (a broken
upstream field) also counts as drifted when its null share rises by more than
``null_share_jump`` (0.1); ``distribution_drifted`` keeps the stat test's own verdict.

Nothing is cached: every call computes from the frames it gets. Evidently is imported inside the
functions (about 6 s to import).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from mloop.core.contract import DatasetContract
from mloop.core.frames import column, numeric
from monitoring.quality import QualityResult
from monitoring.window import Window, sample_rows, time_range

if TYPE_CHECKING:  # pragma: no cover
    from evidently.core.report import Snapshot

ColumnKind = Literal["numeric", "categorical"]

NUM_METHOD = "wasserstein"
CAT_METHOD = "jensenshannon"
DEFAULT_THRESHOLD = 0.1
MARGIN_ROWS = 50_000
PREDICTION_COLUMNS = ("prediction", "probability", "score")


class DriftOptions(BaseModel):
    """How a drift check runs (all have defaults that suit the monitor flow)."""

    num_method: str = Field(
        default=NUM_METHOD, description="Evidently stat test for numeric columns."
    )
    cat_method: str = Field(
        default=CAT_METHOD, description="Evidently stat test for categorical columns."
    )
    threshold: float = Field(default=DEFAULT_THRESHOLD, description="Per-column drift threshold.")
    drift_share_threshold: float = Field(
        default=0.3,
        description="Share of drifted columns at or above which the dataset counts as drifted.",
    )
    max_rows: int | None = Field(
        default=50_000,
        description="Sample each side to at most this many rows (None: never sample).",
    )
    border_margin: float = Field(
        default=0.025,
        ge=0,
        description="Columns scored within this of the threshold (at 50k sampled rows; scaled by "
        "sqrt(50k / sample rows) for smaller samples) are recomputed on all rows.",
    )
    seed: int = Field(default=0, description="Seed of the row samples.")
    null_share_jump: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="A column whose null share rises by more than this counts as drifted (Evidently drops "
        "nulls before its tests, so a broken upstream field would otherwise go unseen).",
    )


class ColumnDrift(BaseModel):
    """Drift of one column."""

    column: str
    kind: ColumnKind
    method: str = Field(
        description="Evidently stat test name (e.g. wasserstein, jensenshannon, all-null)."
    )
    threshold: float
    score: float = Field(
        description="Drift score (distance: higher is more drift; p-value methods: lower)."
    )
    drifted: bool = Field(description="distribution_drifted or null_surge.")
    distribution_drifted: bool | None = Field(
        default=None,
        description="The stat test's verdict alone (what Evidently reports for the column).",
    )
    null_share_reference: float = 0.0
    null_share_current: float = 0.0
    null_surge: bool = Field(
        default=False, description="The null share rose by more than DriftOptions.null_share_jump."
    )
    exact: bool = Field(
        default=True, description="True when the score was computed on all rows (not on a sample)."
    )
    sampled_score: float | None = Field(
        default=None, description="Score on the sample, when the exact recomputation replaced it."
    )
    is_prediction: bool = Field(
        default=False, description="The model's own output (prediction drift)."
    )


class DriftResult(BaseModel):
    """Typed verdict of one drift check."""

    model_name: str | None = None
    model_version: str | None = None
    drift_share: float = Field(description="Share of checked columns that drifted.")
    drift_share_threshold: float
    dataset_drift: bool = Field(description="drift_share >= drift_share_threshold.")
    drifted_columns: list[str]
    columns: list[ColumnDrift]
    window: Window
    options: DriftOptions
    seconds: float = Field(default=0.0, description="Wall time of the check.")
    report_path: str | None = Field(default=None, description="HTML report, once written.")
    full_report: bool = Field(
        default=True,
        description="False: scored by the screen (Evidently's stat tests, no report widgets).",
    )
    quality: QualityResult | None = None


def _is_p_value(method: str) -> bool:
    """Whether a score is a p-value (drift when below threshold) rather than a distance."""
    return method in {
        "ks",
        "chisquare",
        "z",
        "fisher_exact",
        "g_test",
        "mannw",
        "anderson",
        "cramer_von_mises",
        "epps_singleton",
        "t_test",
        "empirical_mmd",
    }


def column_kinds(
    contract: DatasetContract,
    frame_columns: Sequence[str],
    prediction_columns: Sequence[str] = PREDICTION_COLUMNS,
) -> dict[str, tuple[ColumnKind, bool]]:
    """Columns to check -> (kind, is_prediction): contract features, then prediction columns present.

    Datetime features are skipped (no distribution test applies). The first of ``prediction_columns``
    (``prediction``, or ``log.prediction`` beside a feature of that name) is categorical for
    classification and numeric for regression; the others (``probability``/``score``) are numeric.
    """
    out: dict[str, tuple[ColumnKind, bool]] = {}
    present = set(frame_columns)
    for spec in contract.feature_columns:
        if spec.name not in present or spec.kind == "datetime":
            continue
        out[spec.name] = (
            "numeric" if spec.kind in ("numeric", "integer") else "categorical",
            False,
        )
    for name in prediction_columns:
        if name in present and name not in out:
            kind: ColumnKind = (
                "categorical"
                if name == prediction_columns[0] and contract.task == "classification"
                else "numeric"
            )
            out[name] = (kind, True)
    return out


def _prepare(df: pd.DataFrame, kinds: dict[str, tuple[ColumnKind, bool]]) -> pd.DataFrame:
    """Only the checked columns; numeric as float, categorical as strings (NaN kept)."""
    data: dict[str, Any] = {}
    for name, (kind, _) in kinds.items():
        col = column(df, name)
        if kind == "numeric":
            data[name] = numeric(col).astype("float64")
        else:
            data[name] = col.astype("object").where(col.notna(), None).map(_level)
    return pd.DataFrame(data, index=df.index)


def _level(value: Any) -> str | None:
    """A category level as text; integral numbers without '.0' so 1, 1.0 and "1" are one level."""
    if value is None:
        return None
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _with_null_shares(
    col: ColumnDrift, reference: pd.DataFrame, current: pd.DataFrame, jump: float
) -> ColumnDrift:
    """Add null shares (all rows) and the null-surge verdict to a column's stat-test verdict."""
    ref_null = float(reference[col.column].isna().mean())
    cur_null = float(current[col.column].isna().mean())
    surge = cur_null - ref_null > jump
    return col.model_copy(
        update={
            "distribution_drifted": col.drifted,
            "null_share_reference": ref_null,
            "null_share_current": cur_null,
            "null_surge": surge,
            "drifted": col.drifted or surge,
        }
    )


def _few_values(
    reference: pd.Series, current: pd.Series, ref_sample: pd.Series, cur_sample: pd.Series
) -> bool:
    """At most 5 distinct non-null values over both full columns (Evidently's default-method rule).

    The samples answer "no" cheaply (a sample's distinct count is a lower bound); only columns
    that look low-cardinality in the samples are counted on all rows.
    """
    if ref_sample.nunique() > 5 or cur_sample.nunique() > 5:
        return False
    return int(pd.concat([reference, current], ignore_index=True).nunique()) <= 5


def _exact_score(
    ref: pd.Series, cur: pd.Series, kind: ColumnKind, method: str, threshold: float
) -> tuple[float, bool]:
    """The stat test Evidently runs for a column, on all rows (same cleaning as Evidently)."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    ctype = ColumnType.Numerical if kind == "numeric" else ColumnType.Categorical
    ref = ref.replace([-np.inf, np.inf], np.nan).dropna()
    cur = cur.replace([-np.inf, np.inf], np.nan).dropna()
    test = get_stattest(ref, cur, ctype, method)
    res = test(ref, cur, ctype, threshold)
    return float(res.drift_score), bool(res.drifted)


def _parse_snapshot(
    snapshot_dict: dict[str, Any],
) -> dict[str, tuple[str, float, float, bool | None]]:
    """column -> (method, threshold, score, drifted from the test status or None)."""
    scores: dict[str, tuple[str, float, float, bool | None]] = {}
    by_id: dict[str, str] = {}
    for metric in snapshot_dict.get("metrics", []):
        cfg = metric.get("config", {})
        if str(cfg.get("type", "")).endswith(":ValueDrift"):
            col = cfg["column"]
            scores[col] = (
                str(cfg.get("method")),
                float(cfg.get("threshold")),
                float(metric["value"]),
                None,
            )
            by_id[metric["id"]] = col
    for test in snapshot_dict.get("tests", []):
        col = by_id.get(test.get("metric_config", {}).get("metric_id", ""))
        if col is None:
            continue
        status = str(test.get("status")).split(".")[-1].upper()
        method, thr, score, _ = scores[col]
        scores[col] = (method, thr, score, status == "FAIL")
    return scores


def _evidently_report(
    ref_p: pd.DataFrame,
    cur_p: pd.DataFrame,
    columns: dict[str, list[str]],
    few_values: dict[str, str],
    opts: DriftOptions,
) -> Snapshot:
    """Evidently's DataDriftPreset (with its tests) on the prepared samples: the snapshot of a full report."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=columns["numerical_columns"],
        categorical_columns=columns["categorical_columns"],
    )
    report = Report(
        [
            DataDriftPreset(
                columns=list(ref_p.columns),
                per_column_method=dict(few_values) or None,  # a dict of the wider value type
                num_method=opts.num_method,
                cat_method=opts.cat_method,
                threshold=opts.threshold,
                drift_share=opts.drift_share_threshold,
            )
        ],
        include_tests=True,
    )
    return report.run(
        Dataset.from_pandas(cur_p, data_definition=definition),
        Dataset.from_pandas(ref_p, data_definition=definition),
    )


def screen_scores(
    ref_p: pd.DataFrame,
    cur_p: pd.DataFrame,
    kinds: dict[str, tuple[ColumnKind, bool]],
    few_values: dict[str, str],
    opts: DriftOptions,
) -> dict[str, tuple[str, float, float, bool | None]]:
    """column -> (method, threshold, score, drifted): what the report's ValueDrift metric and its test give
    for each column, computed with the same Evidently stat-test function, method, threshold and
    samples, without the report (the same result as :func:`_parse_snapshot` of a report)."""
    out: dict[str, tuple[str, float, float, bool | None]] = {}
    for name, (kind, _) in kinds.items():
        method = few_values.get(name) or (opts.num_method if kind == "numeric" else opts.cat_method)
        score, drifted = _exact_score(
            column(ref_p, name), column(cur_p, name), kind, method, opts.threshold
        )
        out[name] = (method, opts.threshold, score, drifted)
    return out


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    contract: DatasetContract,
    *,
    options: DriftOptions | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    time_column: str | None = "timestamp",
    prediction_columns: Sequence[str] = PREDICTION_COLUMNS,
    report: bool = True,
) -> tuple[DriftResult, Snapshot | None]:
    """Run the drift check and return the typed result and the Evidently snapshot (for reports).

    Checks the contract's feature columns, plus the prediction columns present in both frames.
    The snapshot is None when no column could go through Evidently (all null on one side), or when
    ``report`` is False: then each column's score comes straight from Evidently's stat-test function
    on the same samples with the same method and threshold (:func:`screen_scores`), which gives the
    same scores and verdict without building the report's widgets (measured: the widgets are about
    90% of a check's time; see the monitor sweep).
    """
    opts = options or DriftOptions()
    started = time.perf_counter()
    common = [c for c in reference.columns if c in set(current.columns)]
    kinds = column_kinds(contract, common, prediction_columns)
    if not kinds:
        raise ValueError(
            "no column to check: reference and current share no contract feature column"
        )

    # A column that is entirely null on one side cannot be tested by Evidently; it drifted.
    null_cols = _all_null_in(kinds, reference, current)
    tested = {c: k for c, k in kinds.items() if c not in null_cols}

    ref_s = sample_rows(reference, opts.max_rows, opts.seed)
    cur_s = sample_rows(current, opts.max_rows, opts.seed + 1)
    # A sample can still be all-null where the full column is not: test those on all rows.
    sample_null = _all_null_in(tested, ref_s, cur_s)
    in_report = {c: k for c, k in tested.items() if c not in sample_null}

    snapshot, parsed = _sample_scores(reference, current, ref_s, cur_s, in_report, opts, report)

    sampled = len(ref_s) < len(reference) or len(cur_s) < len(current)
    # Sampling error shrinks like 1/sqrt(n): the margin is border_margin at 50k sampled rows.
    margin = opts.border_margin * float(np.sqrt(MARGIN_ROWS / max(1, min(len(ref_s), len(cur_s)))))
    columns = [
        _column_drift(
            name, kind, is_pred, reference, current, parsed, null_cols, sampled, margin, opts
        )
        for name, (kind, is_pred) in kinds.items()
    ]
    columns = [_with_null_shares(c, reference, current, opts.null_share_jump) for c in columns]
    drifted_columns = [c.column for c in columns if c.drifted]
    share = len(drifted_columns) / len(columns)
    start, end = time_range(current, time_column)
    window = Window(
        rows=len(current),
        start=start,
        end=end,
        reference_rows=len(reference),
        sampled_rows=len(cur_s),
        sampled_reference_rows=len(ref_s),
        seed=opts.seed,
    )
    result = DriftResult(
        model_name=model_name,
        model_version=model_version,
        drift_share=share,
        drift_share_threshold=opts.drift_share_threshold,
        dataset_drift=share >= opts.drift_share_threshold,
        drifted_columns=drifted_columns,
        columns=columns,
        window=window,
        options=opts,
        seconds=time.perf_counter() - started,
        full_report=report,
    )
    return result, snapshot


Scores = dict[str, tuple[str, float, float, bool | None]]
"""column -> (method, threshold, score, drifted from the test status or None)."""


def _all_null_in(columns: Iterable[str], *frames: pd.DataFrame) -> list[str]:
    """The ``columns`` that are entirely null in any of ``frames``."""
    return [c for c in columns if any(column(f, c).isna().all() for f in frames)]


def _sample_scores(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    ref_s: pd.DataFrame,
    cur_s: pd.DataFrame,
    in_report: dict[str, tuple[ColumnKind, bool]],
    opts: DriftOptions,
    report: bool,
) -> tuple[Snapshot | None, Scores]:
    """The scores of the ``in_report`` columns on the samples: from Evidently's report (returned too)
    when ``report``, else straight from its stat tests (:func:`screen_scores`)."""
    if not in_report:
        return None, {}
    ref_p, cur_p = _prepare(ref_s, in_report), _prepare(cur_s, in_report)
    definition = {
        "numerical_columns": [c for c, (k, _) in in_report.items() if k == "numeric"],
        "categorical_columns": [c for c, (k, _) in in_report.items() if k == "categorical"],
    }
    # Like Evidently's own large-sample default: a numeric column with <= 5 distinct values
    # (e.g. a loan term of 36/60) is compared as a distribution over its values (JS distance).
    # Counted on all rows, not on the sample, so the method never depends on the sample.
    few_values = {
        c: opts.cat_method
        for c, (k, _) in in_report.items()
        if k == "numeric"
        and opts.num_method == NUM_METHOD
        and _few_values(
            column(reference, c), column(current, c), column(ref_s, c), column(cur_s, c)
        )
    }
    if report:
        snapshot = _evidently_report(ref_p, cur_p, definition, few_values, opts)
        return snapshot, _parse_snapshot(snapshot.dict())
    return None, screen_scores(ref_p, cur_p, in_report, few_values, opts)


def _column_drift(
    name: str,
    kind: ColumnKind,
    is_pred: bool,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    parsed: Scores,
    null_cols: list[str],
    sampled: bool,
    margin: float,
    opts: DriftOptions,
) -> ColumnDrift:
    """One column's verdict: all-null (drifted), the sample's score, or the exact score on all rows
    (a column all-null in the sample only, or a sampled distance within ``margin`` of the threshold)."""
    if name in null_cols:
        return ColumnDrift(
            column=name,
            kind=kind,
            method="all-null",
            threshold=opts.threshold,
            score=1.0,
            drifted=True,
            is_prediction=is_pred,
        )
    full: dict[str, tuple[ColumnKind, bool]] = {name: (kind, is_pred)}
    if name not in parsed:  # all-null in the sample only
        method = opts.num_method if kind == "numeric" else opts.cat_method
        score, drifted = _exact_score(
            column(_prepare(reference, full), name),
            column(_prepare(current, full), name),
            kind,
            method,
            opts.threshold,
        )
        return ColumnDrift(
            column=name,
            kind=kind,
            method=method,
            threshold=opts.threshold,
            score=score,
            drifted=drifted,
            exact=True,
            is_prediction=is_pred,
        )
    method, thr, score, status = parsed[name]
    drifted = (
        status if status is not None else (score < thr if _is_p_value(method) else score >= thr)
    )
    near = abs(score - thr) <= margin
    if sampled and near and not _is_p_value(method):
        exact, exact_drifted = _exact_score(
            column(_prepare(reference, full), name),
            column(_prepare(current, full), name),
            kind,
            method,
            thr,
        )
        return ColumnDrift(
            column=name,
            kind=kind,
            method=method,
            threshold=thr,
            score=exact,
            drifted=exact_drifted,
            exact=True,
            sampled_score=score,
            is_prediction=is_pred,
        )
    return ColumnDrift(
        column=name,
        kind=kind,
        method=method,
        threshold=thr,
        score=score,
        drifted=bool(drifted),
        exact=not sampled,
        is_prediction=is_pred,
    )


def check_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    contract: DatasetContract,
    *,
    options: DriftOptions | None = None,
    model_name: str | None = None,
    model_version: str | None = None,
    time_column: str | None = "timestamp",
    prediction_columns: Sequence[str] = PREDICTION_COLUMNS,
) -> DriftResult:
    """Drift of ``current`` against ``reference`` on the contract's features (+ prediction columns).

    See the module docstring for the pinned methods and the big-window strategy.
    """
    result, _ = drift_report(
        reference,
        current,
        contract,
        options=options,
        model_name=model_name,
        model_version=model_version,
        time_column=time_column,
        prediction_columns=prediction_columns,
        report=False,  # only the verdict is wanted: the screen gives the report's scores without its widgets
    )
    return result

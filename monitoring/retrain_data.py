"""Where retraining data comes from: feedback labels joined to logged predictions.

Drift alone gives no labels. The path is:

1. **Join.** Every feedback record (``prediction_id``, ``label``) is joined to the logged prediction
   (its inputs read apart from the log's own columns, :mod:`serving.log.layout`) with the same ``prediction_id`` (inner join; feedback for unknown ids is ignored, and when a
   prediction got several labels the first one stands, as in the feedback store's trust rule). The joined row becomes one labelled row in
   the dataset's schema: the contract's feature columns as logged, the target = the label, and the
   time column = the request's own value when the client sent it, else the prediction timestamp.
2. **New rows only.** Rows already in the latest dataset version (same values in every column)
   are not new. With no new labelled row (or fewer than ``RetrainRule.min_new_rows``) nothing is
   built and the result says why (``created=False``, ``reason``).
3. **Merge rule (sliding window by event time).** previous version + new rows, sorted by the time
   column, keeping the newest ``max_rows`` rows (default: as many rows as the previous version had,
   or the new rows if they are more), and, when ``max_age_days`` is set, only rows within that
   many days of the newest row. The window is counted in rows by default, not in days, so the
   result depends only on the data, never on today's date.
4. **Ingest.** The merged frame is written to a parquet file under MLOOP_HOME/tmp and goes through
   the normal ``ingest_dataset`` (contract check included: a batch of bad labels is rejected
   there like any other bad data), which gives a new DVC-versioned dataset version with label source
   ``feedback`` in the version index. A retrain on drift then trains on the newest version; the gate
   does not trust its labels and checks the challenger on the newest ``ingested`` version's holdout
   too (see :mod:`models.gate_scoring`).

Nothing is cached: every call re-reads the prediction log, the feedback and the latest version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.core.util.hashing import hash_pandas_object  # what pd.util lazily re-exports, typed
from pydantic import BaseModel, Field

from mloop.core.contract import DatasetContract
from mloop.core.frames import column, numeric
from mloop.core.lineage import LABEL_FEEDBACK, DatasetVersion
from mloop.core.settings import Settings


class RetrainRule(BaseModel):
    """How labelled feedback is merged with the previous dataset version."""

    max_rows: int | None = Field(
        default=None,
        ge=1,
        description="Keep the newest N rows by event time (None: the previous version's row count, "
        "or the new rows' count if larger).",
    )
    max_age_days: float | None = Field(
        default=None,
        gt=0,
        description="Also drop rows older than this many days before the newest row.",
    )
    min_new_rows: int = Field(
        default=1, ge=1, description="Fewer new labelled rows than this: build nothing."
    )


class MergeStats(BaseModel):
    previous_rows: int
    labelled_rows: int = Field(description="Feedback labels joined to a logged prediction.")
    new_rows: int = Field(description="Labelled rows not already in the previous version.")
    kept_rows: int = Field(description="Rows of the merged version.")
    kept_new_rows: int
    dropped_rows: int = Field(description="Rows that fell out of the sliding window.")


class RetrainData(BaseModel):
    """Outcome of building a retraining dataset. ``created`` False: nothing new, see ``reason``."""

    dataset: str
    created: bool
    reason: str
    version: DatasetVersion | None = Field(
        default=None, description="The new (or identical existing) version."
    )
    previous_md5: str | None = None
    stats: MergeStats | None = None
    rule: RetrainRule = Field(default_factory=RetrainRule)
    source: str | None = Field(
        default=None, description="The merged parquet file that was ingested."
    )


def labelled_rows(
    predictions: pd.DataFrame, feedback: pd.DataFrame, contract: DatasetContract
) -> pd.DataFrame:
    """Feedback joined to predictions by ``prediction_id``, in the dataset's schema (pure).

    ``predictions`` in the prediction log's layout (:mod:`serving.log.layout`: the inputs apart from the
    log's own columns, so a feature may be named ``label`` or ``timestamp``). Columns: the contract's
    columns in contract order (features, target, time column).
    """
    from serving.log.layout import split_log

    names = [c.name for c in contract.columns]
    if predictions.empty or feedback.empty:
        return pd.DataFrame({n: pd.Series(dtype="object") for n in names})
    fb = feedback.dropna(subset=["prediction_id", "label"])
    if "timestamp" in fb.columns:
        fb = fb.sort_values("timestamp", kind="stable")
    first = fb.drop_duplicates("prediction_id", keep="first")
    label = dict(zip(first["prediction_id"], first["label"], strict=True))
    meta, inputs = split_log(predictions.drop_duplicates("prediction_id", keep="last"))
    known = [pid in label for pid in meta["prediction_id"]]
    meta, inputs = meta.loc[known].reset_index(drop=True), inputs.loc[known].reset_index(drop=True)
    out = pd.DataFrame(index=meta.index)
    for spec in contract.columns:
        if spec.name == contract.target:
            out[spec.name] = [label[pid] for pid in meta["prediction_id"]]
        elif spec.name == contract.time_column:
            stamp = pd.to_datetime(meta["timestamp"], utc=True, errors="coerce")
            sent = inputs.get(spec.name)  # the request's own value when the client sent it
            out[spec.name] = (
                stamp
                if sent is None
                else pd.to_datetime(sent, utc=True, errors="coerce").fillna(stamp)
            )
        elif spec.name in inputs.columns:
            out[spec.name] = inputs[spec.name]
        else:
            out[spec.name] = np.nan
    return out


def _align(frame: pd.DataFrame, like: pd.DataFrame, contract: DatasetContract) -> pd.DataFrame:
    """``frame`` with ``like``'s columns and dtypes (time column tz matched), so rows compare exactly."""
    out = frame.reindex(columns=list(like.columns))
    for name in like.columns:
        target_dtype = like[name].dtype
        if name == contract.time_column or pd.api.types.is_datetime64_any_dtype(target_dtype):
            ts = pd.to_datetime(out[name], utc=True, errors="coerce")
            tz = getattr(target_dtype, "tz", None)
            out[name] = ts.dt.tz_convert(tz) if tz is not None else ts.dt.tz_localize(None)
            out[name] = out[name].astype(target_dtype)
        elif pd.api.types.is_bool_dtype(target_dtype):
            out[name] = out[name].astype(bool)
        elif pd.api.types.is_integer_dtype(target_dtype):
            values = numeric(column(out, name))
            out[name] = values.astype(target_dtype) if not values.isna().any() else values
        elif pd.api.types.is_float_dtype(target_dtype):
            out[name] = numeric(column(out, name)).astype(target_dtype)
        else:
            out[name] = out[name].astype(object).where(out[name].notna(), None)
            out[name] = out[name].map(lambda v: v if v is None else str(v))
            out[name] = (
                out[name].astype(target_dtype)
                if pd.api.types.is_object_dtype(target_dtype)
                else out[name]
            )
    return out


def _row_keys(df: pd.DataFrame) -> np.ndarray:
    return hash_pandas_object(df, index=False).to_numpy()


def merge_window(
    previous: pd.DataFrame, labelled: pd.DataFrame, contract: DatasetContract, rule: RetrainRule
) -> tuple[pd.DataFrame, MergeStats]:
    """Previous version + new labelled rows under the sliding-window rule (pure; see module doc)."""
    new = _align(labelled, previous, contract) if len(previous.columns) else labelled
    if len(previous) and len(new):
        seen = set(_row_keys(previous).tolist())
        new = new[[k not in seen for k in _row_keys(new)]]
    new = new.drop_duplicates()
    merged = pd.concat([previous.assign(_new=False), new.assign(_new=True)], ignore_index=True)
    time_col = contract.time_column
    if time_col and time_col in merged.columns:
        merged = merged.sort_values(time_col, kind="stable").reset_index(drop=True)
        if rule.max_age_days is not None and len(merged):
            newest = merged[time_col].max()
            merged = merged.loc[merged[time_col] >= newest - pd.Timedelta(days=rule.max_age_days)]
    cap = rule.max_rows if rule.max_rows is not None else max(len(previous), len(new))
    merged = merged.tail(cap) if cap else merged.iloc[0:0]
    kept_new = int(merged["_new"].sum())
    stats = MergeStats(
        previous_rows=len(previous),
        labelled_rows=len(labelled),
        new_rows=len(new),
        kept_rows=len(merged),
        kept_new_rows=kept_new,
        dropped_rows=len(previous) + len(new) - len(merged),
    )
    return merged.drop(columns="_new").reset_index(drop=True), stats


def build_retrain_dataset(
    settings: Settings,
    model_name: str,
    *,
    rule: RetrainRule | None = None,
    dataset: str | None = None,
) -> RetrainData:
    """Build and ingest a new labelled version of the model's dataset from feedback (see module doc).

    ``dataset`` defaults to the model name (registered model name == dataset name). Returns a
    ``RetrainData`` with ``created=False`` and the ``reason`` when there is nothing new to train on.
    Raises ``DataRejected`` when the merged data fails the contract.
    """
    from mloop.core.contract import load_contract
    from mloop.core.datasets import ingest_dataset
    from serving.log.feedback import read_feedback
    from serving.log.predictions import read_predictions
    from serving.log.remote_parts import remote_log

    rule = rule or RetrainRule()
    name = dataset or model_name
    state = settings.state
    remote = remote_log(settings)  # team mode: the parts in S3; else None (local files)
    feedback = read_feedback(state.feedback, model_name, remote=remote)
    if feedback is None or feedback.empty:
        return RetrainData(
            dataset=name,
            created=False,
            reason=f"no feedback labels for model {model_name}",
            rule=rule,
        )
    predictions = read_predictions(state.predictions, model_name, remote=remote)
    contract = load_contract(settings.project_dir, name)
    labelled = labelled_rows(predictions, feedback, contract)
    if labelled.empty:
        return RetrainData(
            dataset=name,
            created=False,
            reason=f"{len(feedback)} feedback labels, none matching a logged prediction of {model_name}",
            rule=rule,
        )
    prev_version, previous = _latest_version(settings, name, labelled.iloc[0:0])
    merged, stats = merge_window(previous, labelled, contract, rule)
    if stats.new_rows < rule.min_new_rows:
        return RetrainData(
            dataset=name,
            created=False,
            reason=(
                f"no new labelled data: {stats.labelled_rows} labelled predictions, {stats.new_rows} not already in "
                f"version {prev_version.md5 if prev_version else '-'} (need {rule.min_new_rows})"
            ),
            previous_md5=prev_version.md5 if prev_version else None,
            stats=stats,
            rule=rule,
        )
    state.tmp.mkdir(parents=True, exist_ok=True)
    source = state.tmp / f"retrain-{name}-{_digest(merged)}.parquet"
    _write_parquet(merged, source)
    result: Any = ingest_dataset(settings, source, dataset=name, label_source=LABEL_FEEDBACK)
    version: DatasetVersion = result.version
    created = bool(getattr(result, "created", True))
    return RetrainData(
        dataset=name,
        created=created,
        reason=(
            f"{stats.new_rows} new labelled rows merged with {stats.previous_rows} previous rows; kept the newest "
            f"{stats.kept_rows} by {contract.time_column or 'order'}"
            + ("" if created else " (identical to an existing version)")
        ),
        version=version,
        previous_md5=prev_version.md5 if prev_version else None,
        stats=stats,
        rule=rule,
        source=str(source),
    )


def _latest_version(
    settings: Settings, name: str, empty: pd.DataFrame
) -> tuple[DatasetVersion | None, pd.DataFrame]:
    """The dataset's latest version and its rows; (None, ``empty``) before its first version."""
    from mloop.core.datasets import get_version, read_version
    from mloop.core.errors import NotFoundError

    try:
        version = get_version(settings, name)
    except NotFoundError:
        return None, empty
    return version, read_version(settings, name, version.md5)


def _digest(df: pd.DataFrame) -> str:
    return f"{int(hash_pandas_object(df, index=False).sum()) & 0xFFFFFFFFFFFF:012x}"


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    try:
        from mloop.core.frames import write_frame

        write_frame(df, path)
    except ImportError:  # pragma: no cover
        df.to_parquet(path, index=False)

"""The window a check looked at, and deterministic sampling for big windows.

Pure functions over DataFrames: no I/O, nothing cached. Sampling is seeded, so the same window
and seed always give the same rows (and so the same drift verdict).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from serving.log.layout import LOG_COLUMNS, split_log

LOG_PREFIX = "log."


class Window(BaseModel):
    """What a drift/quality check looked at."""

    rows: int = Field(description="Rows in the current window (before any sampling).")
    start: datetime | None = Field(default=None, description="Earliest timestamp in the window.")
    end: datetime | None = Field(default=None, description="Latest timestamp in the window.")
    reference_rows: int = Field(
        default=0, description="Rows of reference data (before any sampling)."
    )
    sampled_rows: int = Field(
        default=0, description="Current rows Evidently saw (== rows unless sampled)."
    )
    sampled_reference_rows: int = Field(default=0, description="Reference rows Evidently saw.")
    seed: int = Field(default=0, description="Seed of the row sample.")


def sample_rows(df: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    """At most ``max_rows`` rows of ``df``, drawn uniformly without replacement with ``seed``.

    Deterministic for a given (frame, max_rows, seed); keeps the original row order. Returns
    ``df`` itself when it is small enough.
    """
    if max_rows is None or len(df) <= max_rows:
        return df
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(df), size=max_rows, replace=False))
    return df.iloc[idx]


def time_range(df: pd.DataFrame, column: str | None) -> tuple[datetime | None, datetime | None]:
    """(min, max) of a timestamp column, or (None, None) when absent/empty."""
    if column is None or column not in df.columns or df.empty:
        return None, None
    ts = pd.to_datetime(df[column], utc=True, errors="coerce").dropna()
    if ts.empty:
        return None, None
    return ts.min().to_pydatetime(), ts.max().to_pydatetime()


def check_frame(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """A frame in the prediction log's layout (the window, or the scored reference) as the drift check reads
    it: the inputs under their own names (what the report shows), each log column under its own name too,
    or as ``log.<name>`` when an input has that name; and log column -> the name it got. Pure."""
    meta, inputs = split_log(frame)
    taken = set(inputs.columns)
    names: dict[str, str] = {}
    for column in LOG_COLUMNS:
        name = column
        while name in taken:  # e.g. a feature named "prediction": the model's is "log.prediction"
            name = LOG_PREFIX + name
        names[column] = name
    return pd.concat([inputs, meta.rename(columns=names)], axis=1), names

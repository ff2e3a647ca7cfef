"""Helpers for the models tests: a controllable synthetic dataset, its contract, a project checkout.

The synthetic frame has a known signal so tests can build clearly better, worse, noise-only and
slice-regressing challengers on purpose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mloop.core.contract import ColumnSpec, DatasetContract, Task
from mloop.core.settings import Settings

if TYPE_CHECKING:
    from models.gate_decision import GateConfig


def synth_frame(
    rows: int = 3000,
    seed: int = 0,
    *,
    label_noise: float = 0.0,
    scramble_segment: str | None = None,
    scramble_until: float = 0.8,
    scramble_feature: str | None = None,
    segment_signals: bool = False,
    task: str = "classification",
) -> pd.DataFrame:
    """Loan-like rows ordered by ``event_time``. ``label_noise`` replaces that share of labels with
    coin flips; ``scramble_segment`` replaces the labels of that segment in the oldest
    ``scramble_until`` share of rows (the training part of a time-based split) with coin flips;
    ``scramble_feature`` replaces that feature with noise in the same rows (a model trained there
    cannot use it). ``segment_signals``: segment A depends only on income, B only on debt, C only
    on age (so a model can be good on one segment and useless on another)."""
    rng = np.random.default_rng(seed)
    income = rng.normal(0, 1, rows)
    debt = rng.normal(0, 1, rows)
    age = rng.normal(0, 1, rows)
    segment = rng.choice(["A", "B", "C"], size=rows, p=[0.5, 0.3, 0.2])
    grade = rng.choice(["g1", "g2", "g3", "g4"], size=rows)
    flag = rng.random(rows) < 0.4
    seg_effect = np.where(segment == "B", 2.0 * debt, 0.0)
    logit = -1.6 + 1.6 * income - 1.0 * age + seg_effect + 0.6 * (grade == "g4") + 0.3 * flag
    if segment_signals:
        logit = -1.4 + 3.0 * np.select([segment == "A", segment == "B"], [income, debt], age)
    if task == "regression":
        y: np.ndarray = logit + rng.normal(0, 0.3, rows)
    else:
        y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
        if label_noise:
            noisy = rng.random(rows) < label_noise
            y = np.where(noisy, rng.integers(0, 2, rows), y)
        if scramble_segment:
            old = np.arange(rows) < int(scramble_until * rows)
            pick = old & (segment == scramble_segment)
            y = np.where(pick, rng.integers(0, 2, rows), y)
    old_rows = np.arange(rows) < int(scramble_until * rows)
    if scramble_feature:
        noise = rng.normal(0, 1, rows)
        if scramble_feature == "income":
            income = np.where(old_rows, noise, income)
        elif scramble_feature == "age":
            age = np.where(old_rows, noise, age)
        else:
            debt = np.where(old_rows, noise, debt)
    debt_with_nan = debt.copy()
    debt_with_nan[rng.random(rows) < 0.03] = np.nan
    grade_obj = grade.astype(object)
    grade_obj[rng.random(rows) < 0.02] = None
    return pd.DataFrame(
        {
            "income": income,
            "debt": debt_with_nan,
            "age": age,
            "segment": segment,
            "grade": grade_obj,
            "flag": flag,
            "event_time": pd.date_range("2025-01-01", periods=rows, freq="min", tz="UTC"),
            "target": y,
        }
    )


def synth_contract(
    name: str = "loans", *, task: Task = "classification", time_column: str | None = "event_time"
) -> DatasetContract:
    cols = [
        ColumnSpec(name="income", kind="numeric", nullable=False),
        ColumnSpec(name="debt", kind="numeric", nullable=True, max_null_share=0.1),
        ColumnSpec(name="age", kind="numeric", nullable=False),
        ColumnSpec(name="segment", kind="categorical", nullable=False, categories=["A", "B", "C"]),
        ColumnSpec(
            name="grade", kind="categorical", nullable=True, categories=["g1", "g2", "g3", "g4"]
        ),
        ColumnSpec(name="flag", kind="boolean", nullable=False),
        ColumnSpec(name="event_time", kind="datetime", nullable=False),
        ColumnSpec(
            name="target", kind="integer" if task == "classification" else "numeric", nullable=False
        ),
    ]
    return DatasetContract(
        name=name, task=task, target="target", time_column=time_column, columns=cols
    )


def ingest_frame(settings: Settings, df: pd.DataFrame, name: str) -> str:
    """Version ``df`` as dataset ``name`` with the data helper's real ingest (contract + DVC); returns the md5."""
    import hashlib

    # pandas.util re-exports it through a module __getattr__ that type checkers cannot follow
    from pandas.core.util.hashing import hash_pandas_object

    from mloop.core.datasets import ingest_dataset

    digest = hashlib.md5(hash_pandas_object(df, index=False).to_numpy().tobytes()).hexdigest()[:12]
    path = settings.state.tmp / f"{name}-{digest}.parquet"
    df.to_parquet(path, index=False)
    result = ingest_dataset(
        settings,
        path,
        dataset=name,
        target="target",
        task="classification",
        time_column="event_time",
    )
    return result.version.md5


def gate_config(**fields: Any) -> GateConfig:
    """``GateConfig(**fields)``: the same validation and defaults, through ``model_validate``
    (the defaults come from the settings' Field metadata, which type checkers do not read)."""
    from models.gate_decision import GateConfig

    return GateConfig.model_validate(fields)

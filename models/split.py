"""Train/holdout split. Pure and deterministic given (rows, contract, test_size, seed).

Runs log ``split_test_size`` and ``split_seed`` so anyone (the gate, monitoring, ``mloop
reproduce``) can re-derive the exact holdout from the dataset md5 and these two numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, Field

from mloop.core.contract import DatasetContract
from mloop.core.errors import MloopError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd


class SplitParams(BaseModel):
    """How the holdout is cut: the newest rows when the contract has a time column, else stratified."""

    test_size: float = Field(
        default=0.2, gt=0, lt=1, description="Share of rows held out for evaluation and the gate."
    )
    seed: int = Field(
        default=42, description="Seed of the stratified shuffle (ignored by a time-based split)."
    )


def split_dataset(
    df: pd.DataFrame, contract: DatasetContract, *, test_size: float = 0.2, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, holdout). Time-based (holdout = newest ``test_size`` share, stable order) when the
    contract has a time column; else stratified on the target for classification, shuffled for
    regression."""
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from mloop.core.frames import column

    if contract.target not in df.columns:
        raise MloopError(
            f"target column {contract.target!r} missing", where=f"dataset {contract.name}"
        )
    n_test = int(round(len(df) * test_size))
    if n_test < 1 or n_test >= len(df):
        raise MloopError(
            f"cannot hold out {test_size:.0%} of {len(df)} rows",
            where=f"dataset {contract.name}",
            fix="use more rows",
        )
    if contract.time_column and contract.time_column in df.columns:
        times = pd.to_datetime(df[contract.time_column], utc=True, errors="coerce")
        order = times.reset_index(drop=True).sort_values(kind="mergesort").index.to_numpy()
        ordered = df.iloc[order]
        train, test = ordered.iloc[: len(df) - n_test], ordered.iloc[len(df) - n_test :]
        how = f"the holdout is the newest {test_size:.0%} of rows by {contract.time_column!r}"
    else:
        stratify = column(df, contract.target) if contract.task == "classification" else None
        if stratify is not None and stratify.value_counts().min() < 2:
            stratify = None
        parts = train_test_split(df, test_size=n_test, random_state=seed, stratify=stratify)
        train, test = (
            cast(pd.DataFrame, parts[0]),
            cast(pd.DataFrame, parts[1]),
        )  # frames in, frames out
        how = "a class with one row cannot be on both sides of the split"
    if contract.task == "classification":
        unseen = holdout_only_classes(column(train, contract.target), column(test, contract.target))
        if unseen:
            listed = ", ".join(
                f"{label!r} ({rows} rows)" for label, rows in list(unseen.items())[:10]
            )
            raise MloopError(
                f"class(es) {listed} of {contract.target!r} are only in the holdout ({how}): no model learns a "
                "class it never saw in training",
                where=f"dataset {contract.name}",
                fix="ingest a version with earlier rows of these classes (or without them), or train on one "
                "that has them",
            )
    return train, test


def holdout_only_classes(train_labels: pd.Series, holdout_labels: pd.Series) -> dict[str, int]:
    """Rows per class (named as text) that the holdout has and the training side has not. Pure."""
    held = holdout_labels.dropna()
    unseen = held.loc[~held.isin(train_labels.dropna().unique())]
    counts = unseen.astype(str).value_counts(sort=False)
    return {str(label): int(rows) for label, rows in sorted(counts.items())}  # str already


@dataclass(frozen=True)
class HoldoutSplit:
    """Both sides of a split with their model inputs, prepared once and shared by every candidate."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    X_train: pd.DataFrame
    X_holdout: pd.DataFrame
    y_holdout: np.ndarray
    train_class_counts: dict[Any, int] | None = None
    """Rows per class of the training target (classification): what the gate metric is chosen from."""


def prepare_split(df: pd.DataFrame, contract: DatasetContract, params: SplitParams) -> HoldoutSplit:
    """:func:`split_dataset` with ``params``, plus the prepared feature frames, the holdout labels and the
    training class counts."""
    from models.pipeline import prepare_features
    from models.target import class_counts

    train, holdout = split_dataset(df, contract, test_size=params.test_size, seed=params.seed)
    return HoldoutSplit(
        train=train,
        holdout=holdout,
        X_train=prepare_features(train, contract),
        X_holdout=prepare_features(holdout, contract),
        y_holdout=holdout[contract.target].to_numpy(),
        train_class_counts=class_counts(train[contract.target])
        if contract.task == "classification"
        else None,
    )

"""Permutation importance (sklearn.inspection): raw columns, deterministic with a seed, both tasks."""

from __future__ import annotations

import pytest

from mloop.core.contract import Task
from models.evaluate import permutation_importance
from models.pipeline import build_pipeline, prepare_features
from models.spec import ModelSpec
from tests.models.helpers import synth_contract, synth_frame


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_importance_is_seeded_and_keyed_by_raw_columns(task: Task) -> None:
    contract, df = synth_contract(task=task), synth_frame(600, seed=3, task=task)
    X = prepare_features(df, contract)
    pipe = build_pipeline(contract, ModelSpec(), 0).fit(X, df["target"])
    first = permutation_importance(pipe, X, df["target"], task, seed=1, max_rows=300)
    assert set(first) == set(X.columns) and all(isinstance(v, float) for v in first.values())
    assert first == permutation_importance(pipe, X, df["target"], task, seed=1, max_rows=300)
    assert max(first, key=first.__getitem__) == "income"

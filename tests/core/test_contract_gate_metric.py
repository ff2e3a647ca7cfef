"""The contract suggests the gate metric that fits its target; an explicit choice still wins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mloop.core.contract.inference import infer_contract, suggested_gate_metric
from mloop.core.settings import Settings
from models.gate_decision import GateConfig


def _frame(target: np.ndarray) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x": rng.normal(size=len(target)), "target": target})


def test_rare_positive_class_gates_on_pr_auc() -> None:
    target = np.zeros(1000, dtype=int)
    target[:10] = 1  # 1% positives
    contract = infer_contract(_frame(target), name="rare", target="target")
    assert contract.task == "classification" and contract.gate_metric == "pr_auc"


@pytest.mark.parametrize(
    ("target", "task", "metric"),
    [
        (np.tile([0, 1], 500), "classification", "roc_auc"),  # balanced binary
        (
            np.tile(["a", "b", "c"], 334)[:1000],
            "classification",
            "roc_auc",
        ),  # multiclass: macro OvR
        (np.linspace(0, 1, 1000), "regression", "rmse"),
    ],
)
def test_other_targets_keep_the_usual_metric(target: np.ndarray, task: str, metric: str) -> None:
    contract = infer_contract(_frame(target), name="t", target="target")
    assert contract.task == task and contract.gate_metric == metric


def test_suggestion_needs_two_present_classes() -> None:
    assert suggested_gate_metric("classification", {0: 990, 1: 10}) == "pr_auc"
    assert (
        suggested_gate_metric("classification", {0: 990, 1: 0, 2: 10}) == "pr_auc"
    )  # an empty level is no class
    assert suggested_gate_metric("classification", {0: 500, 1: 500}) == "roc_auc"


def test_explicit_metric_wins_over_the_contracts_suggestion() -> None:
    suggested = GateConfig.from_settings(Settings()).with_suggested_metric("pr_auc")
    assert suggested.metric == "pr_auc" and suggested.metric_for("classification") == "pr_auc"
    explicit = GateConfig.from_settings(Settings(gate_metric="f1")).with_suggested_metric("pr_auc")
    assert explicit.metric_for("classification") == "f1"
    override = GateConfig.from_settings(Settings(), metric="log_loss").with_suggested_metric(
        "pr_auc"
    )
    assert override.metric == "log_loss"
    assert GateConfig.from_settings(Settings()).with_suggested_metric(None).metric == "roc_auc"

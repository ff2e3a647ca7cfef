"""A retrain request's claim on the ledger, its result and artifact text: tmp MLOOP_HOME, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mloop.core.errors import MloopError
from mloop.core.settings import Settings
from monitoring.policy import RetrainLedger, ledger_path
from monitoring.retraining import (
    RetrainResult,
    claim_retrain,
    drift_detail,
    model_name_from,
    retrain_markdown,
)


def test_model_name_from_event_resource() -> None:
    assert model_name_from("mloop.model.loans") == "loans" and model_name_from("loans") == "loans"


@pytest.mark.parametrize("bad", ["mloop.model.x/../../canary", "../etc", "", "mloop.model."])
def test_model_name_from_refuses_a_name_outside_the_rule(bad: str) -> None:
    with pytest.raises(MloopError, match="invalid model name"):
        model_name_from(bad)


def test_claim_records_allowed_retrains_and_applies_the_cooldown(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", project_dir=tmp_path, retrain_cooldown_minutes=30)
    now = datetime(2025, 1, 1, 12, tzinfo=UTC)
    first = claim_retrain(
        settings, "loans", trigger="drift", event_id="e1", flow_run_id="f1", force=False, now=now
    )
    again = claim_retrain(
        settings,
        "loans",
        trigger="drift",
        event_id="e2",
        flow_run_id="f2",
        force=False,
        now=now + timedelta(minutes=5),
    )
    forced = claim_retrain(
        settings,
        "loans",
        trigger="manual",
        event_id=None,
        flow_run_id="f3",
        force=True,
        now=now + timedelta(minutes=6),
    )
    assert (
        first.allowed
        and not again.allowed
        and again.reason.startswith("cooldown")
        and forced.allowed
    )
    records = RetrainLedger(ledger_path(settings.state.root)).read()
    assert [(r.event_id, r.flow_run_id, r.trigger) for r in records] == [
        ("e1", "f1", "drift"),
        (None, "f3", "manual"),
    ]


def test_retrain_markdown() -> None:
    result = RetrainResult(
        model_name="loans",
        status="trained",
        reason="ok",
        trigger="drift",
        trained_version="4",
        promoted=False,
    )
    md = retrain_markdown(result, drift_detail({"drift_share": 0.5}))
    assert md.startswith("# Retrain loans: trained")
    assert (
        "| status | **trained** |" in md
        and "| promoted | False |" in md
        and "| champion now | - |" in md
    )
    assert md.endswith("Drift payload: `{'drift_share': 0.5}`")
    assert drift_detail(None) == ""
    assert (
        "| label source | - |" in md and "| approval required | - |" in md and "| gate | - |" in md
    )


def test_retrain_markdown_shows_the_label_source_and_the_trusted_verdict() -> None:
    gate = "reject: roc_auc 0.7781 vs champion 0.2079; REJECTED on the trusted holdout (ingested version ecea1e28)"
    result = RetrainResult(
        model_name="loans",
        status="trained",
        reason="ok",
        trigger="alert:DataDrift",
        trained_version="2",
        promoted=False,
        label_source="feedback",
        approval_required=True,
        gate=gate + " | x",
    )
    md = retrain_markdown(result)
    assert "| label source | feedback |" in md and "| approval required | True |" in md
    assert f"| gate | {gate} \\| x |" in md  # a pipe in the summary does not break the table

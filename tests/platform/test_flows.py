"""The retrain and remediate flows in-process on the session Prefect server (no platform needed).

Covers the policy paths that need no trained model: a skipped retrain says why (return value and
artifact), a retrain with no labelled data registers nothing, alert -> action mapping and the
refusal to act on an alert that names no model.
"""

from __future__ import annotations

import pytest

from mloop.core.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def flow_env(settings: Settings, monkeypatch: pytest.MonkeyPatch, prefect_server) -> Settings:
    monkeypatch.setenv("MLOOP_HOME", str(settings.state.root))
    monkeypatch.setenv("MLOOP_PROJECT_DIR", str(settings.project_dir))
    monkeypatch.setenv(
        "MLOOP_WEBHOOK_PORT", "9"
    )  # nothing listens: notifications must not fail a flow
    return settings


def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert found, f"no artifact {key}"
    return str(found[0].data)


def test_retrain_without_data_registers_nothing_then_cooldown_skips(flow_env: Settings) -> None:
    from flows.retrain import retrain_flow
    from monitoring.policy import RetrainLedger, ledger_path

    first = retrain_flow(model_name="mloop.model.nodata", event_id="e1")
    assert first.model_name == "nodata"
    assert first.status == "no-data" and "no feedback labels" in first.reason
    assert first.trained_version is None

    second = retrain_flow(model_name="nodata", event_id="e2")
    assert second.status == "skipped" and second.reason.startswith("cooldown")
    assert "skipped" in _artifact("retrain-nodata") and "cooldown" in _artifact("retrain-nodata")
    records = RetrainLedger(ledger_path(flow_env.state.root)).read()
    assert [r.event_id for r in records] == ["e1"]


def test_retrain_daily_budget_zero_skips(
    flow_env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.retrain import retrain_flow

    monkeypatch.setenv("MLOOP_DAILY_RETRAIN_BUDGET", "0")
    result = retrain_flow(model_name="capped")
    assert result.status == "skipped" and result.reason.startswith("daily budget")


def test_remediate_notify_only_for_unmapped_alert(flow_env: Settings) -> None:
    from flows.remediate import remediate_flow

    result = remediate_flow(alertname="mloop.alert.DiskFull", labels={"model": "loans"})
    assert result.alertname == "DiskFull" and result.action == "notify" and result.outcome == "done"
    assert "DiskFull" in _artifact("remediation")


def test_remediate_rollback_needs_a_model(flow_env: Settings) -> None:
    from flows.remediate import remediate_flow

    result = remediate_flow(alertname="HighErrorRate", labels={})
    assert (
        result.action == "rollback"
        and result.outcome == "skipped"
        and "names no model" in result.detail
    )


def test_remediate_rollback_without_previous_champion_fails_cleanly(flow_env: Settings) -> None:
    from flows.remediate import remediate_flow

    result = remediate_flow(alertname="HighErrorRate", labels={"model": "ghost"})
    assert result.action == "rollback" and result.outcome == "failed"
    assert "no previous champion" in result.detail


def test_remediate_actions_parameter_overrides_configuration(flow_env: Settings) -> None:
    from flows.remediate import remediate_flow

    result = remediate_flow(
        alertname="HighErrorRate", labels={"model": "loans"}, actions={"HighErrorRate": "ignore"}
    )
    assert result.action == "ignore" and result.outcome == "skipped"

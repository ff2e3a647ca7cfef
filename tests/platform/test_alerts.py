"""Alertmanager payload parsing, alert -> action mapping, and the webhook receiver app.

The receiver requires the platform's bearer token on every endpoint but /healthz and accepts only
allowed Host names, so the clients here send the token and a loopback Host (``client_for``).
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from mloop.core.alert_actions import DEFAULT_ALERT_ACTIONS
from mloop.core.settings import Settings
from monitoring.alerts import AlertmanagerPayload, action_for, alertname_from_event
from monitoring.webhook import create_app, read_notifications


def am_payload(*alerts: dict[str, Any], common: dict[str, str] | None = None) -> dict[str, Any]:
    """An Alertmanager (version 4) webhook body."""
    return {
        "version": "4",
        "groupKey": '{}:{alertname="HighErrorRate"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "mloop",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": common or {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.local:9093",
        "alerts": list(alerts),
    }


def alert(name: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, **labels},
        "annotations": {"summary": f"{name} fired"},
        "startsAt": "2026-01-01T12:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.local/graph",
        "fingerprint": "abc123",
    }


def test_mapping_defaults() -> None:
    assert action_for("HighErrorRate") == "rollback"
    assert action_for("QualityDrop") == "rollback"
    assert action_for("DataDrift") == "retrain"
    assert action_for("datadrift") == "retrain"  # case-insensitive fallback
    assert action_for("SomethingElse") == "notify"


def test_settings_default_is_the_one_alert_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings.alert_actions defaults to mloop.core.alert_actions' table, which monitoring.alerts uses too."""
    monkeypatch.delenv("MLOOP_ALERT_ACTIONS", raising=False)
    assert Settings().alert_actions == dict(DEFAULT_ALERT_ACTIONS)
    for name in (
        "HighErrorRate",
        "QualityDrop",
        "QualityDegraded",
        "DataDrift",
        "DriftDetected",
        "HighLatency",
    ):
        assert action_for(name, Settings().alert_actions) == action_for(name)
    assert action_for("HighLatency") == "notify"  # not in the table: unknown names are notified


def test_mapping_from_configuration() -> None:
    assert action_for("HighErrorRate", {"HighErrorRate": "retrain"}) == "retrain"
    assert action_for("HighErrorRate", {}) == "notify"


def test_mapping_rejects_unknown_action() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        action_for("HighErrorRate", {"HighErrorRate": "reboot"})


def test_settings_alert_actions_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOOP_ALERT_ACTIONS", '{"HighErrorRate": "notify"}')
    assert action_for("HighErrorRate", Settings().alert_actions) == "notify"


def test_payload_keeps_only_firing_named_alerts() -> None:
    p = AlertmanagerPayload.model_validate(
        am_payload(
            alert("HighErrorRate", model="loans"), alert("Old", status="resolved"), alert("")
        )
    )
    firing = p.firing()
    assert [a.alertname for a in firing] == ["HighErrorRate"]
    payload = firing[0].event_payload()
    assert payload["model_name"] == "loans" and payload["labels"]["model"] == "loans"
    assert alertname_from_event("mloop.alert.HighErrorRate") == "HighErrorRate"


def test_model_name_from_common_labels() -> None:
    p = AlertmanagerPayload.model_validate(
        am_payload(alert("HighErrorRate"), common={"model_name": "loans"})
    )
    assert p.firing()[0].event_payload(p.common_labels)["model_name"] == "loans"


def client_for(settings: Settings, emit: Any, token: str | None = "platform") -> TestClient:
    """A test client of the receiver on a loopback Host, with the platform's token (``token="platform"``),
    a given one, or none (``token=None``)."""
    app = create_app(settings, emit)
    bearer = settings.bearer_token() if token == "platform" else token
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return TestClient(app, base_url="http://127.0.0.1", headers=headers)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any], dict[str, str]]] = []

    def __call__(self, event: str, resource_id: str, payload: dict[str, Any], **labels: str) -> str:
        self.calls.append((event, resource_id, payload, labels))
        return f"id-{len(self.calls)}"


def test_webhook_turns_firing_alerts_into_events(settings: Settings) -> None:
    rec = Recorder()
    client = client_for(settings, rec)
    resp = client.post(
        "/alerts",
        json=am_payload(alert("HighErrorRate", model="loans"), alert("X", status="resolved")),
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["received"] == 2 and len(body["emitted"]) == 1
    event, resource, payload, labels = rec.calls[0]
    assert event == "mloop.alert.HighErrorRate"
    assert resource == "mloop.model.loans"
    assert payload["alertname"] == "HighErrorRate"
    assert labels["mloop.label.model"] == "loans"


def test_webhook_refuses_broken_payload(settings: Settings) -> None:
    client = client_for(settings, Recorder())
    assert client.post("/alerts", json={"alerts": [{"status": "exploded"}]}).status_code == 422


def test_webhook_token_required_when_set(settings: Settings) -> None:
    s = Settings(
        home=settings.home, project_dir=settings.project_dir, api_token=SecretStr("s3cret")
    )
    rec = Recorder()
    client = client_for(s, rec, token=None)
    body = am_payload(alert("HighErrorRate", model="loans"))
    assert client.post("/alerts", json=body).status_code == 401
    assert (
        client.post("/alerts", json=body, headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )
    assert rec.calls == []
    assert (
        client.post("/alerts", json=body, headers={"Authorization": "Bearer s3cret"}).status_code
        == 200
    )
    assert len(rec.calls) == 1
    assert client.post("/notifications", json={"subject": "x"}).status_code == 401
    assert client.get("/notifications").status_code == 401


def test_webhook_token_required_by_default(settings: Settings) -> None:
    """No MLOOP_API_TOKEN set: the platform secret's token is required all the same."""
    assert settings.api_token is None and settings.auth
    rec = Recorder()
    client = client_for(settings, rec, token=None)
    body = am_payload(alert("HighErrorRate", model="loans"))
    assert client.post("/alerts", json=body).status_code == 401
    assert client.post("/notifications", json={"subject": "x"}).status_code == 401
    assert client.get("/notifications").status_code == 401
    assert client.get("/healthz").status_code == 200
    assert rec.calls == []
    good = client_for(settings, rec)
    assert good.post("/alerts", json=body).status_code == 200 and len(rec.calls) == 1


def test_webhook_open_only_when_auth_is_off(settings: Settings) -> None:
    s = Settings(home=settings.home, project_dir=settings.project_dir, auth=False)
    assert (
        client_for(s, Recorder(), token=None)
        .post("/alerts", json=am_payload(alert("X")))
        .status_code
        == 200
    )


def test_notifications_are_logged_under_home(settings: Settings) -> None:
    client = client_for(settings, Recorder())
    assert (
        client.post(
            "/notifications", json={"subject": "promoted", "body": "v2", "name": "mloop"}
        ).status_code
        == 200
    )
    rows = read_notifications(settings.state.root)
    assert [r["subject"] for r in rows] == ["promoted"]
    assert client.get("/notifications").json()[0]["body"] == "v2"

"""The webhook receiver's security rules, one negative test each: token, names, limits, dedupe, Host,
the capped notifications file. A recording emitter stands in for Prefect (``create_app(settings, emit)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mloop.core.settings import Settings
from monitoring.webhook import (
    MAX_NOTIFICATION_BODY_CHARS,
    create_app,
    notifications_path,
    read_notifications,
)
from tests.core.test_names import BAD_NAMES, tree_snapshot


class Recorder:
    """Records every event the app emits."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any], dict[str, str]]] = []

    def __call__(self, event: str, resource_id: str, payload: dict[str, Any], **labels: str) -> str:
        self.calls.append((event, resource_id, payload, labels))
        return f"id-{len(self.calls)}"


def alert(name: str, fingerprint: str = "fp-1", **labels: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": name, **labels},
        "annotations": {},
        "fingerprint": fingerprint,
    }


def payload(*alerts: dict[str, Any], common: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "version": "4",
        "status": "firing",
        "commonLabels": common or {},
        "alerts": list(alerts),
    }


@pytest.fixture
def home_settings(tmp_path: Path) -> Settings:
    """Settings whose MLOOP_HOME is ``tmp_path/home`` (its parent is the test's own tmp dir)."""
    s = Settings(home=tmp_path / "home", project_dir=tmp_path)
    s.state.ensure()
    return s


def client(
    settings: Settings, rec: Recorder, *, token: bool = True, host: str = "127.0.0.1"
) -> TestClient:
    headers = {"Authorization": f"Bearer {settings.bearer_token()}"} if token else {}
    return TestClient(create_app(settings, rec), base_url=f"http://{host}", headers=headers)


def test_every_endpoint_but_healthz_needs_the_token(home_settings: Settings) -> None:
    rec = Recorder()
    c = client(home_settings, rec, token=False)
    assert c.post("/alerts", json=payload(alert("HighErrorRate", model="loans"))).status_code == 401
    assert c.post("/notifications", json={"subject": "s"}).status_code == 401
    assert c.get("/notifications").status_code == 401
    wrong = c.post("/alerts", json=payload(alert("X")), headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and home_settings.bearer_token() not in wrong.text
    assert c.get("/healthz").status_code == 200
    assert rec.calls == [] and not notifications_path(home_settings.state.root).exists()


@pytest.mark.parametrize(
    "bad", [n for n in BAD_NAMES if n]
)  # an empty label is an absent one (Prometheus)
def test_a_bad_model_name_refuses_the_whole_post(home_settings: Settings, bad: str) -> None:
    rec = Recorder()
    c = client(home_settings, rec)
    resp = c.post(
        "/alerts",
        json=payload(alert("Fine", model="loans"), alert("HighErrorRate", model_name=bad)),
    )
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert (
        "'model_name'" in detail and "invalid model name" in detail and "letters, digits" in detail
    )
    assert "nothing was emitted" in detail
    assert rec.calls == []


def test_a_bad_model_name_in_common_labels_is_refused(home_settings: Settings) -> None:
    rec = Recorder()
    resp = client(home_settings, rec).post(
        "/alerts", json=payload(alert("X"), common={"model": "x/../../../canary"})
    )
    assert resp.status_code == 422 and "'model'" in resp.json()["detail"] and rec.calls == []


def test_the_canary_alert_changes_nothing_outside_or_inside_home(
    home_settings: Settings, tmp_path: Path
) -> None:
    """An alert naming `x/../../../canary`: refused; no file under the tmp dir holding MLOOP_HOME changes."""
    rec = Recorder()
    c = client(home_settings, rec)  # the platform secret exists from here on
    before = tree_snapshot(tmp_path)
    resp = c.post("/alerts", json=payload(alert("HighErrorRate", model="x/../../../canary")))
    assert resp.status_code == 422
    assert rec.calls == []
    assert tree_snapshot(tmp_path) == before
    assert not list(tmp_path.parent.glob("canary*")) and not list(tmp_path.glob("canary*"))


def test_too_many_alerts_in_one_post(home_settings: Settings) -> None:
    s = home_settings.model_copy(update={"max_alerts_per_request": 10})
    rec = Recorder()
    resp = client(s, rec).post(
        "/alerts", json=payload(*[alert("X", fingerprint=str(i)) for i in range(11)])
    )
    assert resp.status_code == 413, resp.text
    assert (
        "at most 10" in resp.json()["detail"]
        and "MLOOP_MAX_ALERTS_PER_REQUEST" in resp.json()["detail"]
    )
    assert rec.calls == []
    assert (
        client(s, rec)
        .post("/alerts", json=payload(*[alert("X", fingerprint=str(i)) for i in range(10)]))
        .status_code
        == 200
    )


def test_500_copies_of_one_alert_are_one_event(home_settings: Settings) -> None:
    rec = Recorder()
    alerts = [alert("HighErrorRate", fingerprint=f"fp-{i:03d}", model="loans") for i in range(500)]
    resp = client(home_settings, rec).post("/alerts", json=payload(*alerts))
    assert resp.status_code == 200, resp.text
    assert len(rec.calls) == 1
    event, resource, body, _ = rec.calls[0]
    assert (event, resource) == ("mloop.alert.HighErrorRate", "mloop.model.loans")
    assert body["alert_count"] == 500 and body["fingerprint"] == "fp-000"
    assert len(body["fingerprints"]) == 20 and body["fingerprints_truncated"] is True
    answer = resp.json()
    assert answer["received"] == 500 and [e["alert_count"] for e in answer["emitted"]] == [500]


def test_dedupe_keeps_one_event_per_model_and_alert_name(home_settings: Settings) -> None:
    rec = Recorder()
    alerts = [alert("HighErrorRate", model="loans")] * 3 + [
        alert("HighErrorRate", model="churn"),
        alert("DataDrift", model="loans"),
        alert("DataDrift"),
    ]
    assert client(home_settings, rec).post("/alerts", json=payload(*alerts)).status_code == 200
    keys = [(c[0], c[2]["model_name"], c[2]["alert_count"]) for c in rec.calls]
    assert keys == [
        ("mloop.alert.HighErrorRate", "loans", 3),
        ("mloop.alert.HighErrorRate", "churn", 1),
        ("mloop.alert.DataDrift", "loans", 1),
        ("mloop.alert.DataDrift", None, 1),
    ]


def test_a_foreign_host_header_is_refused(home_settings: Settings) -> None:
    rec = Recorder()
    resp = client(home_settings, rec, host="evil.example").post(
        "/alerts", json=payload(alert("X", model="loans"))
    )
    assert resp.status_code == 400
    assert rec.calls == []
    assert client(home_settings, rec, host="localhost").get("/healthz").status_code == 200
    allowed = home_settings.model_copy(update={"allowed_hosts": ["mloop.example.org"]})
    assert client(allowed, rec, host="mloop.example.org").get("/healthz").status_code == 200


def test_an_oversized_body_is_refused(home_settings: Settings) -> None:
    s = home_settings.model_copy(update={"max_body_bytes": 2048})
    rec = Recorder()
    resp = client(s, rec).post(
        "/alerts", json=payload(alert("X", model="loans", filler="a" * 4096))
    )
    assert resp.status_code == 413 and "MLOOP_MAX_BODY_BYTES" in resp.json()["error"]
    assert rec.calls == []


def test_a_notification_body_is_length_capped(home_settings: Settings) -> None:
    c = client(home_settings, Recorder())
    resp = c.post(
        "/notifications", json={"subject": "s", "body": "x" * (MAX_NOTIFICATION_BODY_CHARS + 1)}
    )
    assert resp.status_code == 422
    assert not notifications_path(home_settings.state.root).exists()


def test_the_notifications_file_is_capped_with_one_older_generation(
    home_settings: Settings,
) -> None:
    s = home_settings.model_copy(update={"notifications_max_bytes": 2048})
    c = client(s, Recorder())
    for i in range(40):
        assert (
            c.post("/notifications", json={"subject": f"n{i}", "body": "b" * 100}).status_code
            == 200
        )
    path = notifications_path(s.state.root)
    older = path.with_name(path.name + ".1")
    assert path.stat().st_size <= 2048 and older.stat().st_size <= 2048
    assert not path.with_name(path.name + ".2").exists()
    newest = read_notifications(s.state.root)
    assert newest[-1]["subject"] == "n39"
    assert [r["subject"] for r in c.get("/notifications", params={"last_n": 1}).json()] == ["n39"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_the_served_document_declares_the_guards_and_the_token(home_settings: Settings) -> None:
    doc = client(home_settings, Recorder()).get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, method in (
        ("/alerts", "post"),
        ("/notifications", "post"),
        ("/notifications", "get"),
    ):
        operation = doc["paths"][path][method]
        assert operation["security"] == [{"bearer": []}], path
        assert {"400", "401", "413"} <= set(operation["responses"]), path
    assert "security" not in doc["paths"]["/healthz"]["get"]
    assert "422" in doc["paths"]["/alerts"]["post"]["responses"]
    assert doc["paths"]["/alerts"]["post"]["requestBody"]["required"] is True
    no_auth = home_settings.model_copy(update={"auth": False})
    off = client(no_auth, Recorder(), token=False).get("/openapi.json").json()
    assert "security" not in off["paths"]["/alerts"]["post"]  # MLOOP_AUTH=false: no 401 either
    assert "401" not in off["paths"]["/alerts"]["post"]["responses"]


def test_a_405_lists_every_method_of_the_path(home_settings: Settings) -> None:
    resp = client(home_settings, Recorder()).request("OPTIONS", "/notifications")
    assert resp.status_code == 405
    assert set(resp.headers["allow"].split(", ")) == {"GET", "POST"}  # not only POST


def test_an_alert_time_must_be_text_as_documented(home_settings: Settings) -> None:
    c = client(home_settings, Recorder())
    for when in (0, 1.5, True):
        assert c.post("/alerts", json=payload({**alert("A"), "endsAt": when})).status_code == 422
    good = {**alert("A"), "startsAt": "2026-01-01T00:00:00Z", "endsAt": None}
    assert c.post("/alerts", json=payload(good)).status_code == 200

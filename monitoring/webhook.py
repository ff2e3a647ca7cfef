"""Webhook receiver: Alertmanager alerts in, Prefect events out; notifications logged to MLOOP_HOME.

``POST /alerts`` takes the JSON Alertmanager sends and emits one Prefect event
``mloop.alert.<alertname>`` per firing alert (labels and annotations in the payload, resource
``mloop.model.<name>`` when a label names the model). ``POST /notifications`` is where the Prefect
notification block posts by default: each notification is appended to
``MLOOP_HOME/notifications/notifications.jsonl`` so the demo needs no external service.
Write endpoints require ``Authorization: Bearer <MLOOP_API_TOKEN>`` when that setting is set.

The app gets its event emitter as an argument (``create_app(settings, emit)``), so it has no
Prefect import of its own; ``main()`` (``python -m monitoring.webhook``) wires in
:func:`mloop.core.events.emit`. Nothing is cached.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query
from pydantic import BaseModel, ConfigDict

from mloop.core.events import alert_event, model_resource
from mloop.core.settings import Settings
from monitoring.alerts import AlertmanagerPayload

log = logging.getLogger("mloop.webhook")

Emitter = Callable[..., Any]
"""``emit(event, resource_id, payload, **resource_labels) -> event id`` (see mloop.core.events.emit)."""


class EmittedAlert(BaseModel):
    alertname: str
    event: str
    resource_id: str
    event_id: str | None


class AlertsAnswer(BaseModel):
    received: int
    emitted: list[EmittedAlert]


class Notification(BaseModel):
    """What a CustomWebhookNotificationBlock posts (``{{subject}}``, ``{{body}}``, ``{{name}}``)."""

    model_config = ConfigDict(extra="allow")

    subject: str = ""
    body: str = ""
    name: str | None = None


def notifications_path(state_root: Path) -> Path:
    return state_root / "notifications" / "notifications.jsonl"


def read_notifications(state_root: Path, last_n: int | None = None) -> list[dict[str, Any]]:
    """Logged notifications, oldest first (the last ``last_n`` when given)."""
    path = notifications_path(state_root)
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows[-last_n:] if last_n else rows


def create_app(settings: Settings, emit: Emitter) -> FastAPI:
    """The receiver app for ``settings`` (token, MLOOP_HOME); ``emit`` sends Prefect events."""
    token = settings.api_token.get_secret_value() if settings.api_token else None
    state_root = settings.state.root

    def require_token(authorization: str | None = Header(default=None)) -> None:
        if token is None:
            return
        expected = f"Bearer {token}"
        if authorization is None or not hmac.compare_digest(authorization.encode(), expected.encode()):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token (MLOOP_API_TOKEN)")

    app = FastAPI(title="mloop webhook receiver", version="1")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/alerts", dependencies=[Depends(require_token)])
    def alerts(payload: AlertmanagerPayload) -> AlertsAnswer:
        emitted: list[EmittedAlert] = []
        for alert in payload.firing():
            event = alert_event(alert.alertname)
            model = alert.model_name(payload.common_labels)
            resource_id = model_resource(model) if model else f"mloop.alert-source.{alert.fingerprint or alert.alertname}"
            labels = {f"mloop.label.{k}": str(v) for k, v in alert.labels.items()}
            event_id = emit(event, resource_id, alert.event_payload(payload.common_labels), **labels)
            log.info("alert %s -> event %s (%s)", alert.alertname, event, event_id)
            emitted.append(
                EmittedAlert(alertname=alert.alertname, event=event, resource_id=resource_id, event_id=event_id)
            )
        return AlertsAnswer(received=len(payload.alerts), emitted=emitted)

    @app.post("/notifications", dependencies=[Depends(require_token)])
    def notifications(note: Notification) -> dict[str, str]:
        path = notifications_path(state_root)
        path.parent.mkdir(parents=True, exist_ok=True)
        row = {"received_at": datetime.now(UTC).isoformat(), **note.model_dump()}
        with open(path, "a") as fh:
            fh.write(json.dumps(row, default=str) + "\n")
        log.info("notification: %s", note.subject)
        return {"status": "logged"}

    @app.get("/notifications")
    def list_notifications(last_n: int = Query(default=50, ge=1, le=1000)) -> list[dict[str, Any]]:
        return read_notifications(state_root, last_n)

    return app


def main() -> None:  # pragma: no cover - exercised through `mloop up`
    """Serve the receiver on settings.host:settings.webhook_port (``python -m monitoring.webhook``)."""
    import uvicorn

    from mloop.core.events import emit

    settings = Settings()
    settings.apply_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings, emit), host=settings.host, port=settings.webhook_port, log_level="info")


if __name__ == "__main__":  # pragma: no cover
    main()

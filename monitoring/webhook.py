"""Webhook receiver: Alertmanager alerts in, Prefect events out; notifications logged to MLOOP_HOME.

``POST /alerts`` takes the JSON Alertmanager sends and emits ONE Prefect event
``mloop.alert.<alertname>`` per (model, alert name) among its firing alerts (labels and annotations
in the payload with how many alerts it stands for, resource ``mloop.model.<name>`` when a label
names the model). ``POST /notifications`` is where the Prefect notification block posts by default:
each notification is appended to ``MLOOP_HOME/notifications/notifications.jsonl`` (capped, one
older generation kept) so the demo needs no external service.

Secure by default: every endpoint but ``/healthz`` requires ``Authorization: Bearer <token>``
(``Settings.bearer_token()``: the platform secret or MLOOP_API_TOKEN; only MLOOP_AUTH=false turns it
off); the app wears :class:`mloop.core.web.GuardMiddleware` (Host allowlist, body limit); a POST
carries at most ``max_alerts_per_request`` alerts; a model name that breaks the name rule refuses
the whole POST (422) before anything is emitted.

The served ``/openapi.json`` declares every answer (:func:`complete_document`): the guard's 400 and
413, the token's 401 (and its security scheme), FastAPI's 400 for a body that is not JSON and the
422s; a 405 lists in ``Allow`` every method of the path (:func:`method_not_allowed`).

The app gets its event emitter as an argument (``create_app(settings, emit)``), so it has no
Prefect import of its own; ``main()`` (``python -m monitoring.webhook``) wires in
:func:`mloop.core.events.emit`, which writes each event into the durable outbox under MLOOP_HOME
before it answers: an alert received while the Prefect server is down is delivered when it is
back (the answer's ``event_id`` is the id it will carry). Nothing is cached.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from mloop.core.events import alert_event, model_resource
from mloop.core.jsonl import append_jsonl, read_jsonl
from mloop.core.openapi import complete_common, declare, operations, require_bearer
from mloop.core.settings import Settings
from mloop.core.web import TOKEN_REFUSED, GuardMiddleware, Refusal, bearer_matches
from monitoring.alerts import (
    AlertGroup,
    AlertmanagerPayload,
    group_alerts,
    invalid_model_names,
)

log = logging.getLogger("mloop.webhook")

Emitter = Callable[..., Any]
"""``emit(event, resource_id, payload, **resource_labels) -> event id`` (see mloop.core.events.emit)."""

MAX_SUBJECT_CHARS = 1_000
MAX_NOTIFICATION_BODY_CHARS = 64_000
"""Longest notification body the receiver logs (longer bodies are refused with 422)."""

NOT_JSON = Refusal(400, "The body is not JSON (FastAPI: 'There was an error parsing the body')")
TOO_MANY_ALERTS = Refusal(413, "More alerts in one POST than MLOOP_MAX_ALERTS_PER_REQUEST")
BAD_MODEL_NAME = Refusal(
    422, "An alert names a model that breaks the name rule: nothing was emitted"
)
INVALID = Refusal(422, "The request does not follow the schema (FastAPI's detail)")


class EmittedAlert(BaseModel):
    alertname: str
    event: str
    resource_id: str
    event_id: str | None
    model_name: str | None = None
    alert_count: int = Field(
        default=1, description="How many alerts of the POST this one event stands for."
    )


class AlertsAnswer(BaseModel):
    received: int
    emitted: list[EmittedAlert]


class Notification(BaseModel):
    """What a CustomWebhookNotificationBlock posts (``{{subject}}``, ``{{body}}``, ``{{name}}``)."""

    model_config = ConfigDict(extra="allow")

    subject: str = Field(default="", max_length=MAX_SUBJECT_CHARS)
    body: str = Field(default="", max_length=MAX_NOTIFICATION_BODY_CHARS)
    name: str | None = Field(default=None, max_length=MAX_SUBJECT_CHARS)


def notifications_path(state_root: Path) -> Path:
    return state_root / "notifications" / "notifications.jsonl"


def read_notifications(state_root: Path, last_n: int | None = None) -> list[dict[str, Any]]:
    """Logged notifications of the current file, oldest first (the last ``last_n`` when given)."""
    rows = read_jsonl(notifications_path(state_root), _json_object, what="notifications").rows
    return rows[-last_n:] if last_n else rows


def _json_object(line: str) -> dict[str, Any]:
    """One notification line; ValueError for anything but a JSON object (set aside by the reader)."""
    row = json.loads(line)
    if not isinstance(row, dict):
        raise ValueError("a notification line must be a JSON object")
    return row


def append_capped(path: Path, line: str, max_bytes: int) -> None:
    """Append ``line`` to ``path``; when that would pass ``max_bytes``, the file first moves to
    ``<path>.1`` (replacing the older generation). A single line longer than the cap is still written.
    Not fsynced (a notification is a copy of what Prefect already holds); a torn last line is repaired
    first by :func:`mloop.core.jsonl.append_jsonl`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = line.encode()
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = 0
    if size and size + len(data) > max_bytes:
        os.replace(path, path.with_name(path.name + ".1"))
    append_jsonl(path, line.rstrip("\n"), what="notifications", fsync=False)


def _bearer_check(token: str | None) -> Callable[..., None]:
    """A FastAPI dependency refusing (401) a request without ``Authorization: Bearer <token>``."""

    def require_token(authorization: str | None = Header(default=None)) -> None:
        if token is None:
            return
        if authorization is None or not bearer_matches(authorization, token):
            raise HTTPException(
                status_code=TOKEN_REFUSED.status,
                detail="missing or wrong bearer token (see `mloop token`)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_token


def _emit_group(group: AlertGroup, payload: AlertmanagerPayload, emit: Emitter) -> EmittedAlert:
    """One Prefect event for one group of alerts (one model, one alert name): what was emitted."""
    event = alert_event(group.alertname)
    body = group.event_payload(payload.common_labels)
    model = group.model_name
    resource_id = (
        model_resource(model)
        if model
        else f"mloop.alert-source.{body['fingerprint'] or group.alertname}"
    )
    labels = {f"mloop.label.{k}": str(v) for k, v in group.alerts[0].labels.items()}
    event_id = emit(event, resource_id, body, **labels)
    log.info("alert %s (%d) -> event %s (%s)", group.alertname, len(group.alerts), event, event_id)
    return EmittedAlert(
        alertname=group.alertname,
        event=event,
        resource_id=resource_id,
        event_id=event_id,
        model_name=model,
        alert_count=len(group.alerts),
    )


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    """FastAPI's answer to an HTTP error, except that a 405's ``Allow`` lists every method of the
    path (Starlette's lists only those of the first route of that path, e.g. POST and not GET)."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        allowed = {
            method
            for route in request.app.routes
            if isinstance(route, APIRoute) and route.matches(request.scope)[0] != Match.NONE
            for method in route.methods or ()
        }
        exc = StarletteHTTPException(405, exc.detail, {"Allow": ", ".join(sorted(allowed))})
    return await http_exception_handler(request, exc)


def complete_document(app: FastAPI, guard: Callable[..., None] | None) -> dict[str, Any]:
    """FastAPI's document of ``app`` with every answer it does not know of: the guard's, the token's
    on the routes that depend on ``guard`` (None: no token, no 401), 400 for a body that is not JSON
    and the 422s of the handlers (FastAPI's own 422 body is a list, a handler's a message)."""
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    guarded = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, APIRoute) and any(d.dependency is guard for d in route.dependencies)
        for method in route.methods or ()
    }
    complete_common(doc)
    validation = "#/components/schemas/HTTPValidationError"
    for method, path, operation in operations(doc):
        if guard is not None and (method, path) in guarded:
            require_bearer(doc, operation)
        if "requestBody" in operation:
            declare(operation, NOT_JSON)
        if "422" in operation.get("responses", {}):
            declare(operation, INVALID, schema={"$ref": validation})
        if path == "/alerts":
            declare(operation, BAD_MODEL_NAME)
            declare(operation, TOO_MANY_ALERTS)
    return doc


def serve_document(app: FastAPI, guard: Callable[..., None] | None) -> None:
    """``app`` serves :func:`complete_document` at ``/openapi.json`` (built once: the routes are fixed)."""
    document: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not document:
            document.update(complete_document(app, guard))
        return document

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to change the document


def _receiver(settings: Settings, guard: Callable[..., None] | None) -> FastAPI:
    """The app without its routes: the guards (Host, body size), the 405 answer of
    :func:`method_not_allowed` and the completed document (built at its first request, routes included)."""
    app = FastAPI(title="mloop webhook receiver", version="1")
    app.add_exception_handler(StarletteHTTPException, method_not_allowed)
    app.add_middleware(
        GuardMiddleware,
        allowed_hosts=settings.host_allowlist(),
        max_body_bytes=settings.max_body_bytes,
    )
    serve_document(app, guard)
    return app


def create_app(settings: Settings, emit: Emitter) -> FastAPI:
    """The receiver app for ``settings`` (token, limits, hosts, MLOOP_HOME); ``emit`` queues and sends Prefect events."""
    token = settings.bearer_token()
    state_root = settings.state.root
    max_alerts = settings.max_alerts_per_request
    # rotation + append of the notifications file, one request at a time
    write_lock = threading.Lock()
    check = _bearer_check(token)
    guarded = [Depends(check)]
    app = _receiver(settings, check if token is not None else None)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/alerts", dependencies=guarded)
    def alerts(payload: AlertmanagerPayload) -> AlertsAnswer:
        if len(payload.alerts) > max_alerts:
            raise HTTPException(
                status_code=TOO_MANY_ALERTS.status,
                detail=f"{len(payload.alerts)} alerts in one request: at most "
                f"{max_alerts} (MLOOP_MAX_ALERTS_PER_REQUEST); send smaller groups",
            )
        problems = invalid_model_names(payload)
        if problems:
            raise HTTPException(
                status_code=BAD_MODEL_NAME.status,
                detail="; ".join(problems) + ": nothing was emitted",
            )
        emitted = [_emit_group(group, payload, emit) for group in group_alerts(payload)]
        return AlertsAnswer(received=len(payload.alerts), emitted=emitted)

    @app.post("/notifications", dependencies=guarded)
    def notifications(note: Notification) -> dict[str, str]:
        row = {"received_at": datetime.now(UTC).isoformat(), **note.model_dump()}
        with write_lock:
            append_capped(
                notifications_path(state_root),
                json.dumps(row, default=str) + "\n",
                settings.notifications_max_bytes,
            )
        log.info("notification: %s", note.subject[:200])
        return {"status": "logged"}

    @app.get("/notifications", dependencies=guarded)
    def list_notifications(last_n: int = Query(default=50, ge=1, le=1000)) -> list[dict[str, Any]]:
        return read_notifications(state_root, last_n)

    return app


def main() -> None:  # pragma: no cover - exercised through `mloop up`
    """Serve the receiver on settings.host:settings.webhook_port (``python -m monitoring.webhook``)."""
    import uvicorn

    from mloop.core.events import emit

    settings = Settings()
    settings.apply_env()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings, emit), host=settings.host, port=settings.webhook_port, log_level="info"
    )


if __name__ == "__main__":  # pragma: no cover
    main()

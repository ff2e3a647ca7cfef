"""The durable outbox of mloop's Prefect events: written ahead under MLOOP_HOME, delivered when the server answers.

An event is never sent straight to Prefect. :func:`emit` first writes it as one JSON file under
``MLOOP_HOME/outbox/`` (temporary file, fsync, rename, directory fsync; 0600), then delivers the
queue at once with a short deadline. A file is deleted only after the server has answered 2xx to
``POST <api>/events``; while the server is down the event waits, and :func:`deliver_pending`
(called by ``mloop up``, by the platform's watchdog every few seconds, and by every later
:func:`emit`) sends it when the server answers again, oldest first.

Exactly once per event id: an event keeps its id (a uuid chosen when it is written) on every
delivery attempt, and Prefect's trigger service ignores an id it has already seen
(``event_has_been_seen``; its event store inserts with ON CONFLICT DO NOTHING). Delivery itself is
at least once: an attempt whose answer was lost is sent again with the same id. The one gap is
Prefect's, not ours: the trigger service remembers ids in memory (15 minutes), so a re-sent event
whose first delivery reached a server that then restarted could trigger again; the flows that
must not run twice key on the data themselves (train skips an identical run, retrain claims a
ledger entry).

Where events go: :func:`deliver_pending` (``mloop up``, the watchdog) sends to the platform's own
server (``Settings.prefect_api_url``, basic auth from the platform secret). :func:`emit` sends to
the Prefect API its process is configured for (``PREFECT_API_URL``, as every platform process and
the CLI with a running server have it; the tests' session server), else to the platform's server
- never to a temporary server Prefect may start for a CLI command while the platform's server is
down (the event would die with it).

Two processes may flush at once (the watchdog, ``mloop up``, an emitting flow): each event file is
claimed with a non-blocking ``flock`` and re-checked after the claim, so one process sends it. A
file that is not a valid event is moved to ``outbox/corrupt/`` (warned and counted, as
:mod:`mloop.core.jsonl` does with torn lines); one the server refuses (400/413/422) to
``outbox/rejected/``. Prefect is never imported here: inside a flow or task run (Prefect already
imported) the run is added as related resources, as ``prefect.events.emit_event`` does, so the
event shows on its flow run in the UI.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from filelock import lock_descriptor
from pydantic_core import to_jsonable_python

from mloop.core.files import write_atomic
from mloop.core.http import basic_auth_header, request

if TYPE_CHECKING:
    from mloop.core.settings import Settings

log = logging.getLogger(__name__)

OUTBOX_DIR = "outbox"
CORRUPT_DIR = "corrupt"
REJECTED_DIR = "rejected"
SUFFIX = ".json"
TMP_PREFIX = ".tmp-"
STALE_TMP_SECONDS = 600.0
"""A temporary file older than this was left by a crash before its rename: removed."""
EMIT_DEADLINE_S = 2.0
"""How long :func:`emit` tries to deliver before it leaves the event queued (connection refused: ~1.5 s)."""
DELIVER_DEADLINE_S = 10.0
ATTEMPT_TIMEOUT_S = 5.0
REFUSED_STATUS = frozenset({400, 413, 422})
"""Answers that say the event itself is wrong: sending it again cannot help, so it is set aside."""


@dataclass(frozen=True)
class OutboxTarget:
    """Where queued events go: a Prefect API URL (ending in ``/api``) and its basic-auth string ("" none)."""

    api: str
    auth_string: str = ""

    def __repr__(self) -> str:  # the auth string never shows
        return f"OutboxTarget({self.api!r}, auth={bool(self.auth_string)})"


@dataclass(frozen=True)
class DeliveryReport:
    """What one :func:`deliver_pending` did: events delivered, still queued, set aside, and the last failure."""

    delivered: int = 0
    pending: int = 0
    """Events still queued when it returned (a recount: includes what other processes queued meanwhile)."""
    rejected: int = 0
    corrupt: int = 0
    busy: int = 0
    """Files another process held (delivering it) or had just delivered: left to it."""
    error: str | None = None
    """Why delivery stopped early (server down, unauthorized...), secret-free; None when the queue drained."""


def outbox_dir(root: Path) -> Path:
    """The outbox folder of the MLOOP_HOME ``root``."""
    return root / OUTBOX_DIR


def platform_target(settings: Settings) -> OutboxTarget:
    """The platform's own Prefect server (``Settings.prefect_api_url``) with the platform secret's auth string."""
    auth = settings.client_auth_env().get("PREFECT_API_AUTH_STRING", "")
    return OutboxTarget(api=settings.prefect_api_url.rstrip("/"), auth_string=auth)


def process_target(settings: Settings) -> OutboxTarget:
    """Where this process's events go: ``PREFECT_API_URL`` when set, else the platform's server (see module doc).

    A temporary server Prefect starts for a CLI command does not set ``PREFECT_API_URL``, so an
    event emitted under one is queued for the platform's server instead.
    """
    configured = os.environ.get("PREFECT_API_URL")
    if not configured:
        return platform_target(settings)
    auth = os.environ.get("PREFECT_API_AUTH_STRING") or settings.client_auth_env().get(
        "PREFECT_API_AUTH_STRING", ""
    )
    return OutboxTarget(api=configured.rstrip("/"), auth_string=auth)


def _json_fallback(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    return item() if callable(item) else str(value)


def build_event(
    event: str,
    resource: dict[str, str],
    payload: dict[str, Any],
    *,
    related: list[dict[str, str]] | None = None,
    event_id: str | None = None,
    occurred: datetime | None = None,
) -> dict[str, Any]:
    """The JSON body of one Prefect event (as ``POST /api/events`` takes it). Pure but for the id and clock."""
    return {
        "id": event_id or str(uuid.uuid4()),
        "occurred": (occurred or datetime.now(UTC)).isoformat(),
        "event": event,
        "resource": dict(resource),
        "related": list(related or []),
        "payload": to_jsonable_python(payload, fallback=_json_fallback),
    }


def run_related_resources() -> list[dict[str, str]]:
    """The current Prefect flow/task run as related resources, like Prefect's events worker adds them.

    Empty outside a run, and when Prefect was never imported (then there is no run): this never
    imports Prefect. Only what the run context holds is used (no API reads): flow run, task run,
    flow, deployment and the run's tags.
    """
    context = sys.modules.get("prefect.context")
    if context is None:
        return []
    flow_ctx = context.FlowRunContext.get()
    task_ctx = context.TaskRunContext.get()
    flow_run = getattr(flow_ctx, "flow_run", None)
    task_run = getattr(task_ctx, "task_run", None)
    related: list[dict[str, str]] = []
    if flow_run is not None:
        related.append(_related("flow-run", flow_run.id, flow_run.name))
    elif task_run is not None and task_run.flow_run_id is not None:
        related.append(_related("flow-run", task_run.flow_run_id, None))
    if task_run is not None:
        related.append(_related("task-run", task_run.id, task_run.name))
    if flow_run is not None:
        flow = getattr(flow_ctx, "flow", None)
        related.append(_related("flow", flow_run.flow_id, getattr(flow, "name", None)))
        if flow_run.deployment_id is not None:
            related.append(_related("deployment", flow_run.deployment_id, None))
        related += [
            {"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"}
            for tag in sorted(flow_run.tags or [])
        ]
    return related


def _related(kind: str, object_id: object, name: str | None) -> dict[str, str]:
    resource = {"prefect.resource.id": f"prefect.{kind}.{object_id}", "prefect.resource.role": kind}
    if name:
        resource["prefect.resource.name"] = name
    return resource


def write_event(root: Path, body: dict[str, Any]) -> Path:
    """Queue ``body`` durably: temporary file, fsync, rename to ``<ns>-<id>.json``, fsync of the folder."""
    folder = outbox_dir(root)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = f"{time.time_ns():020d}-{body['id']}{SUFFIX}"
    path = folder / name
    write_atomic(
        path,
        json.dumps(body, separators=(",", ":")).encode(),
        tmp=folder / f"{TMP_PREFIX}{name}",
        sync_dir=True,
    )
    return path


def pending_files(root: Path) -> list[Path]:
    """Queued event files, oldest first (their names start with the write time in ns)."""
    folder = outbox_dir(root)
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.name.endswith(SUFFIX) and not p.name.startswith(".")
    )


def pending_count(root: Path) -> int:
    """How many events wait in the outbox of ``root`` (for ``mloop status``)."""
    return len(pending_files(root))


@contextlib.contextmanager
def _claim(path: Path) -> Iterator[int | None]:
    """An fd of ``path`` locked for this process, or None when another holds it or it is gone.

    After the lock, ``path`` must still name the locked file: another process may have delivered
    (unlinked) or set it aside (renamed) between our open and our lock.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield None
        return
    try:
        if not lock_descriptor(fd, blocking=False):  # flock: the event file itself is the lock
            yield None
            return
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        yield fd if same else None
    finally:
        os.close(fd)  # releases the lock


def parse_event(data: bytes) -> dict[str, Any]:
    """An event body read back from its file; ValueError when it is not one. Pure."""
    body = json.loads(data)
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("event"), str)
        or not isinstance(body.get("resource"), dict)
    ):
        raise ValueError("not an event object (needs 'event' and 'resource')")
    uuid.UUID(str(body.get("id")))
    return body


def _set_aside(path: Path, sub: str, reason: str) -> None:
    folder = path.parent / sub
    folder.mkdir(exist_ok=True, mode=0o700)
    os.replace(path, folder / path.name)
    log.warning("outbox: %s set aside in %s/ (%s)", path.name, sub, reason)


def _remove_stale_tmp(root: Path, now: float) -> None:
    folder = outbox_dir(root)
    for tmp in folder.glob(f"{TMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > STALE_TMP_SECONDS:
                tmp.unlink()


def _send(body: dict[str, Any], target: OutboxTarget, deadline: float) -> httpx.Response:
    headers = basic_auth_header(target.auth_string) if target.auth_string else {}
    return request(
        "POST",
        f"{target.api}/events",
        json=[body],
        headers=headers,
        deadline=deadline,
        timeout=ATTEMPT_TIMEOUT_S,
    )


def deliver_pending(
    settings: Settings, *, deadline: float = DELIVER_DEADLINE_S, target: OutboxTarget | None = None
) -> DeliveryReport:
    """Deliver every queued event, oldest first, until the queue is empty or ``deadline`` seconds pass.

    Stops at the first event the server does not take (down, 5xx, 401...): later events wait with
    it, so they keep their order. ``target``: where to (default: the platform's server,
    :func:`platform_target`; :func:`emit` passes :func:`process_target`).
    """
    root = settings.state.root
    target = target or platform_target(settings)
    end = time.monotonic() + deadline
    _remove_stale_tmp(root, time.time())
    delivered = rejected = corrupt = busy = 0
    error: str | None = None
    for path in pending_files(root):
        remaining = end - time.monotonic()
        if remaining <= 0:
            error = f"deadline of {deadline:.0f}s passed"
            break
        with _claim(path) as fd:
            if fd is None:
                busy += 1
                continue
            try:
                body = parse_event(path.read_bytes())
            except (OSError, ValueError) as exc:
                _set_aside(path, CORRUPT_DIR, f"{type(exc).__name__}: {str(exc)[:200]}")
                corrupt += 1
                continue
            try:
                resp = _send(body, target, remaining)
            except httpx.HTTPError as exc:
                error = f"{target.api} not answering ({type(exc).__name__})"
                break
            if resp.is_success:
                path.unlink()
                delivered += 1
            elif resp.status_code in REFUSED_STATUS:
                _set_aside(path, REJECTED_DIR, f"HTTP {resp.status_code}: {resp.text[:200]}")
                rejected += 1
            else:
                error = f"{target.api} answered HTTP {resp.status_code}"
                break
    if delivered:
        log.info("outbox: %d event(s) delivered to %s", delivered, target.api)
    return DeliveryReport(
        delivered=delivered,
        pending=pending_count(root),
        rejected=rejected,
        corrupt=corrupt,
        busy=busy,
        error=error,
    )


def emit(
    settings: Settings,
    event: str,
    resource: dict[str, str],
    payload: dict[str, Any],
    *,
    related: list[dict[str, str]] | None = None,
    deadline: float = EMIT_DEADLINE_S,
) -> str:
    """Queue one event durably, then try to deliver the queue; returns the event id (delivered or not).

    ``related`` defaults to the current Prefect run (:func:`run_related_resources`).
    """
    body = build_event(
        event, resource, payload, related=run_related_resources() if related is None else related
    )
    write_event(settings.state.root, body)
    report = deliver_pending(settings, deadline=deadline, target=process_target(settings))
    if report.error is not None:
        log.warning(
            "event %s (%s) queued in the outbox, delivered when the Prefect server answers: %s",
            body["id"],
            event,
            report.error,
        )
    return str(body["id"])

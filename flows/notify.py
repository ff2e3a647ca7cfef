"""Notifications: one Prefect notification block and one automation that uses it.

The block (``mloop-notifications``, a Custom Webhook) posts ``{subject, body, name}`` to
``Settings.notify_url`` (default: the local webhook receiver's ``/notifications``, which logs to
MLOOP_HOME, so the demo needs no external service; point it at Slack/Teams/any webhook to go
live). With auth on, a block posting to the local receiver carries the platform's bearer token
(a block secret; an external notify_url never gets it), and this
setup authenticates to the Prefect server with ``PREFECT_API_AUTH_STRING`` from the platform
environment. The automation (``mloop-notify``) sends a notification on every promotion, rejection,
rollback and drift event. ``mloop up`` runs ``python -m flows.notify`` to create or refresh both,
and the zombie automation. Flows may also call :func:`notify` directly for outcomes that have no
event of their own.

The zombie automation (``mloop-crash-zombie-runs``, Prefect's "detect zombie flows" recipe, which a
self-hosted server must create itself): every flow run the worker starts sends a heartbeat event
every ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (30, set in prefect.yaml's work-pool env); a run
whose heartbeats stop for :data:`ZOMBIE_SECONDS` without a terminal state (its process was killed)
is set Crashed, and the ``prefect.flow-run.Crashed`` event starts the ``recover`` flow
(prefect.yaml). Its sibling ``mloop-crash-stuck-pending-runs`` crashes a run that stays Pending
for :data:`STUCK_SECONDS` (a worker killed while submitting it: no process, so no heartbeat ever).
Both are updated in place when they exist (same id), created otherwise.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flows.sync import sync_result
from mloop.core import events
from mloop.core.service_urls import http_url
from mloop.core.settings import Settings

BLOCK_NAME = "mloop-notifications"
AUTOMATION_NAME = "mloop-notify"
NOTIFY_EVENTS = (
    events.MODEL_PROMOTED,
    events.MODEL_REJECTED,
    events.MODEL_ROLLED_BACK,
    events.DRIFT_DETECTED,
    events.QUALITY_DEGRADED,
)
SUBJECT = "mloop: {{ event.event }} on {{ event.resource.id }}"
BODY = (
    "{{ event.event }} on {{ event.resource.id }} at {{ event.occurred }}\n"
    "version: {{ event.payload.version }}\n"
    "reason: {{ event.payload.reason }}\n"
    "drift share: {{ event.payload.drift_share }}\n"
    "payload: {{ event.payload | tojson }}"
)

ZOMBIE_AUTOMATION_NAME = "mloop-crash-zombie-runs"
ZOMBIE_SECONDS = 90
"""A run without a heartbeat (sent every 30 s) or terminal state for this long is marked Crashed."""
ZOMBIE_MESSAGE = (
    "Crashed by mloop-crash-zombie-runs: no heartbeat for {seconds} s, its process died (worker killed or host "
    "lost). The recover flow fails its open MLflow runs, frees its concurrency slot and retries train/retrain/deploy "
    "once."
)
STUCK_AUTOMATION_NAME = "mloop-crash-stuck-pending-runs"
STUCK_SECONDS = 180
"""A run handed to a worker (Pending) that neither starts nor changes state for this long is marked Crashed."""
STUCK_MESSAGE = (
    "Crashed by mloop-crash-stuck-pending-runs: Pending for {seconds} s without starting, the worker that took it "
    "died before its process ran. The recover flow retries train/retrain/deploy once."
)
FLOW_RUN_ENDED = (
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
)
HEARTBEAT = "prefect.flow-run.heartbeat"
RUNNING = "prefect.flow-run.Running"
PENDING = ("prefect.flow-run.Pending", "prefect.flow-run.Submitting")
"""A worker sets a run it takes ``Submitting`` (a Pending state); the engine may set ``Pending``."""
MOVED_ON = (
    "prefect.flow-run.Running",
    "prefect.flow-run.Scheduled",
    "prefect.flow-run.AwaitingConcurrencySlot",
    "prefect.flow-run.AwaitingRetry",
    "prefect.flow-run.Late",
    "prefect.flow-run.Cancelling",
    "prefect.flow-run.Paused",
    "prefect.flow-run.Suspended",
    "prefect.flow-run.TimedOut",
)
"""Any state a Pending run moves on to (besides the terminal ones): it is not stuck."""

if TYPE_CHECKING:  # pragma: no cover
    from prefect.automations import Automation

log = logging.getLogger("mloop.notify")


def notify_url(settings: Settings) -> str:
    return settings.notify_url or f"{http_url(settings.host, settings.webhook_port)}/notifications"


def ensure_notifications(settings: Settings) -> str:
    """Create or overwrite the notification block and the automation; returns the automation id."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.types import SecretDict

    # The bearer token goes only to the platform's own receiver, never to an external notify_url.
    token = settings.bearer_token() if settings.notify_url is None else None
    block = CustomWebhookNotificationBlock(
        name="mloop",
        url=notify_url(settings),
        json_data={"subject": "{{subject}}", "body": "{{body}}", "name": "{{name}}"},
        headers={"Authorization": "Bearer {{token}}"} if token else None,
        secrets=SecretDict({"token": token} if token else {}),
        timeout=5,
        cookies=None,  # its default, given: pyright reads only `default=` as one, not Field(None)
    )
    block_id = sync_result(block.save(BLOCK_NAME, overwrite=True))
    try:
        sync_result(sync_result(Automation.read(name=AUTOMATION_NAME)).delete())
    except ValueError:
        pass
    automation = Automation(
        name=AUTOMATION_NAME,
        description="Notify (webhook block mloop-notifications) on promotion, rejection, rollback and drift.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "mloop.*"},
            expect=set(NOTIFY_EVENTS),
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)],
    )
    return str(sync_result(automation.create()).id)


def crash_automation(
    name: str, description: str, after: set[str], expect: set[str], seconds: int, message: str
) -> Automation:
    """A proactive automation, one bucket per flow run: after one of ``after``, one of ``expect`` must come
    within ``seconds``, else the run is set Crashed with ``message``."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    return Automation(
        name=name,
        description=description,
        trigger=EventTrigger(
            after=after,
            expect=expect,
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED, name="Crashed", message=message, force=False
            )  # force: its default, given (pyright reads only `default=` as one, not Field(False))
        ],
    )


def zombie_automation(seconds: int = ZOMBIE_SECONDS) -> Automation:
    """The automation that marks a flow run Crashed when its heartbeats stop (one bucket per flow run).

    The bucket opens on the run's Running state as well as on a heartbeat: a run killed before its first
    heartbeat (sent ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` s after it starts) would otherwise stay Running
    forever (seen in the chaos test: a monitor run killed with its worker seconds after it began)."""
    return crash_automation(
        ZOMBIE_AUTOMATION_NAME,
        f"A flow run with no heartbeat or terminal state for {seconds} s is a zombie: mark it Crashed.",
        after={HEARTBEAT, RUNNING},
        expect={HEARTBEAT, *FLOW_RUN_ENDED},
        seconds=seconds,
        message=ZOMBIE_MESSAGE.format(seconds=seconds),
    )


def stuck_pending_automation(seconds: int = STUCK_SECONDS) -> Automation:
    """The automation that marks a flow run Crashed when it stays Pending (its worker died while submitting it).

    Such a run never sends a heartbeat, so the zombie automation never sees it; it would hold its place
    (and, for deploy, its concurrency slot) forever.
    """
    return crash_automation(
        STUCK_AUTOMATION_NAME,
        f"A flow run Pending for {seconds} s without starting: its worker died; mark it Crashed.",
        after=set(PENDING),
        expect={HEARTBEAT, *MOVED_ON, *FLOW_RUN_ENDED},
        seconds=seconds,
        message=STUCK_MESSAGE.format(seconds=seconds),
    )


def ensure_automation(wanted: Automation) -> str:
    """Create ``wanted``, or update the automation of the same name in place; returns its id."""
    from prefect.automations import Automation

    try:
        existing = sync_result(Automation.read(name=wanted.name))
    except ValueError:
        return str(sync_result(wanted.create()).id)
    wanted.id = existing.id
    sync_result(wanted.update())
    return str(existing.id)


def ensure_zombie_automation(seconds: int = ZOMBIE_SECONDS) -> str:
    """Create the zombie automation, or update the existing one in place; returns its id."""
    return ensure_automation(zombie_automation(seconds))


def notify(subject: str, body: str) -> bool:
    """Send through the notification block; False (and a warning) when that fails.

    A notification that cannot be delivered must never fail the flow that sends it.
    """
    try:
        from prefect.blocks.notifications import CustomWebhookNotificationBlock

        block = sync_result(CustomWebhookNotificationBlock.load(BLOCK_NAME))
        sync_result(block.notify(body, subject=subject))
        return True
    except Exception as exc:
        log.warning("notification %r not delivered: %s", subject, exc)
        return False


def main() -> None:
    settings = Settings()
    settings.apply_env()
    automation_id = ensure_notifications(settings)
    print(
        f"notification block {BLOCK_NAME} -> {notify_url(settings)}; automation {AUTOMATION_NAME} ({automation_id})"
    )
    print(
        f"automation {ZOMBIE_AUTOMATION_NAME} ({ensure_zombie_automation()}): no heartbeat for {ZOMBIE_SECONDS} s "
        "-> Crashed"
    )
    stuck = ensure_automation(stuck_pending_automation())
    print(f"automation {STUCK_AUTOMATION_NAME} ({stuck}): Pending for {STUCK_SECONDS} s -> Crashed")


if __name__ == "__main__":
    main()

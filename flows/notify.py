"""Notifications: one Prefect notification block and one automation that uses it.

The block (``mloop-notifications``, a Custom Webhook) posts ``{subject, body, name}`` to
``Settings.notify_url`` (default: the local webhook receiver's ``/notifications``, which logs to
MLOOP_HOME, so the demo needs no external service; point it at Slack/Teams/any webhook to go
live). With auth on, a block posting to the local receiver carries the platform's bearer token
(a block secret; an external notify_url never gets it), and this
setup authenticates to the Prefect server with ``PREFECT_API_AUTH_STRING`` from the platform
environment. The automation (``mloop-notify``) sends a notification on every promotion, rejection,
rollback and drift event. ``mloop up`` runs ``python -m flows.notify`` to create or refresh both.
Flows may also call :func:`notify` directly for outcomes that have no event of their own.
"""

from __future__ import annotations

import logging

from mloop.core import events
from mloop.core.processes import http_url
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

log = logging.getLogger("mloop.notify")


def notify_url(settings: Settings) -> str:
    return settings.notify_url or f"{http_url(settings.host, settings.webhook_port)}/notifications"


def ensure_notifications(settings: Settings) -> str:
    """Create or overwrite the notification block and the automation; returns the automation id."""
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    # The bearer token goes only to the platform's own receiver, never to an external notify_url.
    token = settings.bearer_token() if settings.notify_url is None else None
    block = CustomWebhookNotificationBlock(
        name="mloop",
        url=notify_url(settings),
        json_data={"subject": "{{subject}}", "body": "{{body}}", "name": "{{name}}"},
        headers={"Authorization": "Bearer {{token}}"} if token else None,
        secrets={"token": token} if token else {},
        timeout=5,
    )
    block_id = block.save(BLOCK_NAME, overwrite=True)
    try:
        Automation.read(name=AUTOMATION_NAME).delete()
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
            within=0,
        ),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT, body=BODY)],
    ).create()
    return str(automation.id)


def notify(subject: str, body: str) -> bool:
    """Send through the notification block; False (and a warning) when that fails.

    A notification that cannot be delivered must never fail the flow that sends it.
    """
    try:
        from prefect.blocks.notifications import CustomWebhookNotificationBlock

        CustomWebhookNotificationBlock.load(BLOCK_NAME).notify(body, subject=subject)
        return True
    except Exception as exc:  # noqa: BLE001 - delivery is best effort by design
        log.warning("notification %r not delivered: %s", subject, exc)
        return False


def main() -> None:
    settings = Settings()
    settings.apply_env()
    automation_id = ensure_notifications(settings)
    print(f"notification block {BLOCK_NAME} -> {notify_url(settings)}; automation {AUTOMATION_NAME} ({automation_id})")


if __name__ == "__main__":
    main()

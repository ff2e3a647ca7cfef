"""Prefect event names and resources used across mloop, and one helper to emit them.

Every arrow with an ``mloop.*`` label in docs/architecture.md is one of these events; deployment
triggers in prefect.yaml turn them into flow runs.
"""

from __future__ import annotations

from typing import Any

DATASET_VERSIONED = "mloop.dataset.versioned"
MODEL_TRAINED = "mloop.model.trained"
MODEL_PROMOTED = "mloop.model.promoted"
MODEL_REJECTED = "mloop.model.rejected"
MODEL_DEPLOYED = "mloop.model.deployed"
MODEL_ROLLED_BACK = "mloop.model.rolled-back"
DRIFT_DETECTED = "mloop.drift.detected"
QUALITY_DEGRADED = "mloop.quality.degraded"
ALERT_PREFIX = "mloop.alert."


def dataset_resource(name: str) -> str:
    return f"mloop.dataset.{name}"


def model_resource(name: str) -> str:
    return f"mloop.model.{name}"


def alert_event(alertname: str) -> str:
    """Event name for an external alert (``mloop.alert.<alertname>``), name normalised to [a-z0-9-_.]."""
    clean = "".join(c if c.isalnum() or c in "-_." else "-" for c in alertname.strip()).strip("-")
    if not clean:
        raise ValueError("alertname is empty: an alert needs a labels.alertname")
    return ALERT_PREFIX + clean


def emit(event: str, resource_id: str, payload: dict[str, Any], **resource_labels: str) -> str | None:
    """Emit a Prefect event; returns the event id (None when events are disabled).

    Works inside a flow (the event is related to the flow run) and from a plain process.
    """
    from prefect.events import emit_event  # prefect is heavy: import where used

    resource = {"prefect.resource.id": resource_id, **resource_labels}
    sent = emit_event(event=event, resource=resource, payload=payload)
    return str(sent.id) if sent is not None else None

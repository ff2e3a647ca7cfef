"""Prefect event names and resources used across mloop, and one helper to emit them.

Every arrow with an ``mloop.*`` label in docs/architecture.md is one of these events; deployment
triggers in prefect.yaml turn them into flow runs. :func:`emit` writes each event ahead into the
outbox under MLOOP_HOME (:mod:`mloop.core.outbox`), so an event emitted while the Prefect server
is down is delivered when it answers again.
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


def emit(event: str, resource_id: str, payload: dict[str, Any], **resource_labels: str) -> str:
    """Emit a Prefect event through the durable outbox (:mod:`mloop.core.outbox`); returns its id.

    The event is on disk under MLOOP_HOME before this returns and reaches the Prefect server now,
    or when it answers again. Inside a flow or task run the event is related to that run (it shows
    on the run in the Prefect UI); it works from a plain process too. Settings come from the
    environment (MLOOP_HOME, the platform's Prefect URL and secret).
    """
    from mloop.core import outbox
    from mloop.core.settings import Settings

    resource = {"prefect.resource.id": resource_id, **resource_labels}
    return outbox.emit(Settings(), event, resource, payload)

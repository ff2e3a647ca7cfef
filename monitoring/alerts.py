"""Alertmanager payloads and the alert -> remediation mapping. Pure: no I/O, no Prefect.

An Alertmanager webhook (``version: "4"``) carries a group of alerts; each firing alert becomes one
Prefect event ``mloop.alert.<alertname>`` (see :func:`mloop.core.events.alert_event`) whose payload is
:meth:`Alert.event_payload`. The remediate flow maps the alert name to an action with
:func:`action_for` (configuration: ``Settings.alert_actions``, whose default is the table
:data:`mloop.core.alerts.DEFAULT_ALERT_ACTIONS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mloop.core.alerts import ACTIONS, DEFAULT_ALERT_ACTIONS, UNKNOWN_ALERT_ACTION, AlertAction

MODEL_LABELS: tuple[str, ...] = ("model", "model_name", "mloop_model")
"""Alert labels that name the affected model, in order of preference."""


class Alert(BaseModel):
    """One alert as Alertmanager sends it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    status: Literal["firing", "resolved"] = "firing"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = Field(default=None, alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str | None = Field(default=None, alias="generatorURL")
    fingerprint: str | None = None

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    def model_name(self, common_labels: Mapping[str, str] | None = None) -> str | None:
        """The model the alert is about (from its labels, then the group's common labels)."""
        for source in (self.labels, common_labels or {}):
            for key in MODEL_LABELS:
                if source.get(key):
                    return source[key]
        return None

    def event_payload(self, common_labels: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The payload of the ``mloop.alert.<alertname>`` event (JSON-safe)."""
        return {
            "alertname": self.alertname,
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "model_name": self.model_name(common_labels),
            "starts_at": self.starts_at.isoformat() if self.starts_at else None,
            "fingerprint": self.fingerprint,
        }


class AlertmanagerPayload(BaseModel):
    """The JSON body of an Alertmanager webhook (version 4). Unknown fields are kept, not refused."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    version: str = "4"
    status: Literal["firing", "resolved"] = "firing"
    receiver: str | None = None
    group_key: str | None = Field(default=None, alias="groupKey")
    group_labels: dict[str, str] = Field(default_factory=dict, alias="groupLabels")
    common_labels: dict[str, str] = Field(default_factory=dict, alias="commonLabels")
    common_annotations: dict[str, str] = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str | None = Field(default=None, alias="externalURL")
    alerts: list[Alert] = Field(default_factory=list)

    def firing(self) -> list[Alert]:
        """Alerts that are firing and have a name (resolved alerts trigger nothing)."""
        return [a for a in self.alerts if a.status == "firing" and a.alertname]


def action_for(alertname: str, mapping: Mapping[str, str] | None = None) -> AlertAction:
    """The configured action for ``alertname`` (exact name first, then case-insensitive); ``notify`` if unknown.

    Raises ValueError when the configuration names an action that does not exist, so a typo in
    the configuration fails loudly instead of silently doing nothing.
    """
    table = dict(DEFAULT_ALERT_ACTIONS if mapping is None else mapping)
    action = table.get(alertname)
    if action is None:
        lowered = {k.lower(): v for k, v in table.items()}
        action = lowered.get(alertname.lower(), UNKNOWN_ALERT_ACTION)
    if action not in ACTIONS:
        raise ValueError(f"alert {alertname!r} maps to unknown action {action!r} (known: {', '.join(ACTIONS)})")
    return action  # type: ignore[return-value]


def alertname_from_event(event_name: str) -> str:
    """``mloop.alert.HighErrorRate`` -> ``HighErrorRate`` (other names are returned unchanged)."""
    prefix = "mloop.alert."
    return event_name[len(prefix) :] if event_name.startswith(prefix) else event_name

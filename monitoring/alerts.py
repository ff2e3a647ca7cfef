"""Alertmanager payloads and the alert -> remediation mapping. Pure: no I/O, no Prefect.

An Alertmanager webhook (``version: "4"``) carries a group of alerts. Its firing alerts are grouped
per (model, alert name) (:func:`group_alerts`): each group becomes ONE Prefect event
``mloop.alert.<alertname>`` (see :func:`mloop.core.events.alert_event`) whose payload is
:meth:`AlertGroup.event_payload` (how many alerts it stands for and their fingerprints, capped), so
500 copies of one alert start one remediation, not 500. A model name an alert carries must follow
the one name rule (:func:`invalid_model_names`), since it reaches file paths and the registry.
The remediate flow maps the alert name to an action with
:func:`action_for` (configuration: ``Settings.alert_actions``, whose default is the table
:data:`mloop.core.alert_actions.DEFAULT_ALERT_ACTIONS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from mloop.core.alert_actions import (
    ACTIONS,
    DEFAULT_ALERT_ACTIONS,
    UNKNOWN_ALERT_ACTION,
    AlertAction,
)
from mloop.core.errors import MloopError
from mloop.core.names import check_name

MODEL_LABELS: tuple[str, ...] = ("model", "model_name", "mloop_model")
"""Alert labels that name the affected model, in order of preference."""
MAX_FINGERPRINTS = 20
"""Most fingerprints one grouped event lists (the count is always exact)."""


def _timestamp_text(value: Any) -> Any:
    """Alertmanager sends RFC 3339 text: a number is refused, as the documented schema says
    (pydantic would otherwise read ``0`` as 1970-01-01)."""
    if value is not None and not isinstance(value, str | datetime):
        raise ValueError("Input should be an RFC 3339 date-time string")
    return value


Timestamp = Annotated[datetime, BeforeValidator(_timestamp_text)]


class Alert(BaseModel):
    """One alert as Alertmanager sends it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    status: Literal["firing", "resolved"] = "firing"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: Timestamp | None = Field(default=None, alias="startsAt")
    ends_at: Timestamp | None = Field(default=None, alias="endsAt")
    generator_url: str | None = Field(default=None, alias="generatorURL")
    fingerprint: str | None = None

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    def model_label(self, common_labels: Mapping[str, str] | None = None) -> tuple[str, str] | None:
        """``(label key, model name)`` naming the affected model (its labels, then the group's common labels)."""
        for source in (self.labels, common_labels or {}):
            for key in MODEL_LABELS:
                if source.get(key):
                    return key, source[key]
        return None

    def model_name(self, common_labels: Mapping[str, str] | None = None) -> str | None:
        """The model the alert is about (from its labels, then the group's common labels)."""
        found = self.model_label(common_labels)
        return found[1] if found else None

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


class AlertGroup(BaseModel):
    """Every firing alert of one payload about the same (model, alert name): one event."""

    alertname: str
    model_name: str | None
    alerts: list[Alert]

    @property
    def fingerprints(self) -> list[str]:
        """The distinct fingerprints of the group's alerts, sorted (so a repost gives the same order)."""
        return sorted({a.fingerprint for a in self.alerts if a.fingerprint})

    def event_payload(
        self,
        common_labels: Mapping[str, str] | None = None,
        max_fingerprints: int = MAX_FINGERPRINTS,
    ) -> dict[str, Any]:
        """The first alert's event payload plus ``alert_count`` and ``fingerprints`` (capped).

        ``fingerprint`` is the group's smallest fingerprint: the key a remediation locks on, stable
        when Alertmanager posts the same group again.
        """
        prints = self.fingerprints
        return {
            **self.alerts[0].event_payload(common_labels),
            "model_name": self.model_name,
            "fingerprint": prints[0] if prints else None,
            "alert_count": len(self.alerts),
            "fingerprints": prints[:max_fingerprints],
            "fingerprints_truncated": len(prints) > max_fingerprints,
        }


def group_alerts(payload: AlertmanagerPayload) -> list[AlertGroup]:
    """The payload's firing alerts grouped per (model, alert name), in order of first appearance."""
    groups: dict[tuple[str | None, str], AlertGroup] = {}
    for alert in payload.firing():
        model = alert.model_name(payload.common_labels)
        key = (model, alert.alertname)
        if key not in groups:
            groups[key] = AlertGroup(alertname=alert.alertname, model_name=model, alerts=[])
        groups[key].alerts.append(alert)
    return list(groups.values())


def invalid_model_names(payload: AlertmanagerPayload) -> list[str]:
    """One message per distinct alert label whose model name breaks the name rule (empty: all valid).

    Every alert counts, resolved ones too: a payload naming a model that cannot exist is refused whole.
    """
    problems: list[str] = []
    for alert in payload.alerts:
        found = alert.model_label(payload.common_labels)
        if found is None:
            continue
        key, name = found
        try:
            check_name(name, "model")
        except MloopError as exc:
            message = f"alert label {key!r}: {exc.what} ({exc.fix})"
            if message not in problems:
                problems.append(message)
    return problems


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
        raise ValueError(
            f"alert {alertname!r} maps to unknown action {action!r} (known: {', '.join(ACTIONS)})"
        )
    return action


def alertname_from_event(event_name: str) -> str:
    """``mloop.alert.HighErrorRate`` -> ``HighErrorRate`` (other names are returned unchanged)."""
    prefix = "mloop.alert."
    return event_name[len(prefix) :] if event_name.startswith(prefix) else event_name

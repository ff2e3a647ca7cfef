"""One remediation of an alert: which model it names, why it ran, its result and how that reads.

Pure: the remediate flow decides the action (:func:`monitoring.alerts.action_for`), runs it (the
rollback and retrain flows) and publishes what these functions build.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from monitoring.alerts import MODEL_LABELS

REMEDIATION_ARTIFACT_KEY = "remediation"


class RemediationResult(BaseModel):
    """What one remediation run did."""

    alertname: str
    model_name: str | None
    action: str
    outcome: str = Field(description="done, skipped, failed: with the detail in `detail`.")
    detail: str
    audit: dict[str, Any] | None = Field(default=None, description="The audit record a rollback wrote.")
    retrain: dict[str, Any] | None = None


def affected_model(labels: Mapping[str, str], model_name: str | None = None) -> str | None:
    """``model_name``, else the first model label (``model``, ``model_name``, ...) the alert carries."""
    return model_name or next((labels[k] for k in MODEL_LABELS if labels.get(k)), None)


def alert_reason(alertname: str, annotations: Mapping[str, str] | None, event_id: str | None) -> str:
    """``alert <name>: <summary or description> (event <id>)``: recorded with the action."""
    notes = annotations or {}
    summary = notes.get("summary") or notes.get("description") or ""
    return f"alert {alertname}" + (f": {summary}" if summary else "") + (f" (event {event_id})" if event_id else "")


def as_dict(value: Any) -> dict[str, Any] | None:
    """A flow's result as JSON-ready data (pydantic models dumped, other values wrapped)."""
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return value
    return {"value": str(value)}


def describe_audit(audit: dict[str, Any] | None) -> str:
    """``champion 3 -> 2 (applied)`` from a rollback's audit record."""
    if not audit:
        return "no audit record returned"
    return f"champion {audit.get('from_version')} -> {audit.get('to_version')} ({audit.get('outcome', 'applied')})"


def remediation_markdown(result: RemediationResult, labels: Mapping[str, str], reason: str) -> str:
    """The remediation run's markdown artifact: what happened, the alert's labels, the audit record."""
    label_rows = "\n".join(f"| `{k}` | {v} |" for k, v in sorted(labels.items())) or "| - | - |"
    md = (
        f"# Remediation: {result.alertname} -> {result.action} ({result.outcome})\n\n"
        f"- model: `{result.model_name}`\n- reason: {reason}\n- what happened: {result.detail}\n\n"
        f"## Alert labels\n\n| label | value |\n|---|---|\n{label_rows}\n"
    )
    if result.audit:
        md += "\n## Audit record\n\n```json\n" + json.dumps(result.audit, indent=2, default=str) + "\n```\n"
    return md

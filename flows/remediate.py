"""Remediation: an alert (``mloop.alert.<alertname>``) -> the configured action, recorded.

The action comes from ``Settings.alert_actions`` (``MLOOP_ALERT_ACTIONS``, JSON) or the flow's
``actions`` parameter: ``rollback`` runs the models helper's rollback flow (alias back to the
previous champion, audit record written; the ``mloop.model.rolled-back`` event then redeploys),
``retrain`` runs the retrain flow (cooldown and budget apply), ``notify`` only notifies, ``ignore``
records and does nothing. Every run publishes a markdown artifact and sends a notification saying
what it did. Nothing is cached.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from mloop.core.settings import Settings


class RemediationResult(BaseModel):
    """What one remediation run did."""

    alertname: str
    model_name: str | None
    action: str
    outcome: str = Field(description="done, skipped, failed: with the detail in `detail`.")
    detail: str
    audit: dict[str, Any] | None = Field(default=None, description="The audit record a rollback wrote.")
    retrain: dict[str, Any] | None = None


def _as_dict(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return value
    return {"value": str(value)}


@flow(name="remediate", log_prints=True)
def remediate_flow(
    alertname: str,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    model_name: str | None = None,
    event_id: str | None = None,
    actions: dict[str, str] | None = None,
) -> RemediationResult:
    """Run the remediation configured for an alert and record it.

    Args:
        alertname: The alert's name (Alertmanager label `alertname`), e.g. HighErrorRate.
        labels: The alert's labels; `model` or `model_name` names the affected model.
        annotations: The alert's annotations (summary, description), quoted in the record.
        model_name: The affected model, when not given by a label.
        event_id: Id of the `mloop.alert.*` event that triggered the run, if any.
        actions: Alert name -> action (rollback, retrain, notify, ignore) overriding the configuration.
    """
    from flows.notify import notify
    from monitoring.alerts import MODEL_LABELS, action_for, alertname_from_event

    logger = get_run_logger()
    settings = Settings()
    labels = dict(labels or {})
    # The event name is normalised (safe characters only); the alert's own label keeps the exact name.
    alertname = str(labels.get("alertname") or alertname_from_event(alertname))
    model = model_name or next((labels[k] for k in MODEL_LABELS if labels.get(k)), None)
    action = action_for(alertname, actions if actions is not None else settings.alert_actions)
    summary = (annotations or {}).get("summary") or (annotations or {}).get("description") or ""
    reason = f"alert {alertname}" + (f": {summary}" if summary else "") + (f" (event {event_id})" if event_id else "")
    logger.info("alert %s on model %s -> action %s", alertname, model, action)

    result = RemediationResult(alertname=alertname, model_name=model, action=action, outcome="done", detail="")
    if action in ("rollback", "retrain") and not model:
        result.outcome, result.detail = "skipped", "the alert names no model (label `model` or `model_name`)"
    elif action == "rollback":
        from flows.promote import rollback_flow
        from mloop.core.errors import MloopError

        try:
            record = rollback_flow(name=model, reason=reason, actor=f"remediate:{alertname}")
            result.audit = _as_dict(record)
            result.detail = f"rolled back {model}: " + _describe(result.audit)
        except MloopError as exc:
            result.outcome, result.detail = "failed", f"rollback of {model} failed: {exc.what}"
    elif action == "retrain":
        from flows.retrain import retrain_flow

        retrained = retrain_flow(model_name=model, trigger=f"alert:{alertname}", event_id=event_id)
        result.retrain = _as_dict(retrained)
        result.detail = f"retrain of {model}: {retrained.status} ({retrained.reason})"
    elif action == "notify":
        result.detail = "notified only (no automatic action configured for this alert)"
    else:
        result.outcome, result.detail = "skipped", "ignored by configuration"

    logger.info("remediation: %s", result.detail)
    _artifact(result, labels, reason)
    notify(f"mloop remediation: {alertname} -> {action} ({result.outcome})", f"{reason}\n{result.detail}")
    return result


def _describe(audit: dict[str, Any] | None) -> str:
    if not audit:
        return "no audit record returned"
    return f"champion {audit.get('from_version')} -> {audit.get('to_version')} ({audit.get('outcome', 'applied')})"


def _artifact(result: RemediationResult, labels: dict[str, str], reason: str) -> None:
    from prefect.artifacts import create_markdown_artifact

    label_rows = "\n".join(f"| `{k}` | {v} |" for k, v in sorted(labels.items())) or "| - | - |"
    md = (
        f"# Remediation: {result.alertname} -> {result.action} ({result.outcome})\n\n"
        f"- model: `{result.model_name}`\n- reason: {reason}\n- what happened: {result.detail}\n\n"
        f"## Alert labels\n\n| label | value |\n|---|---|\n{label_rows}\n"
    )
    if result.audit:
        md += "\n## Audit record\n\n```json\n" + json.dumps(result.audit, indent=2, default=str) + "\n```\n"
    create_markdown_artifact(markdown=md, key="remediation", description=f"{result.alertname} -> {result.action}")

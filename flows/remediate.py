"""Remediation: an alert (``mloop.alert.<alertname>``) -> the configured action, recorded.

The action comes from ``Settings.alert_actions`` (``MLOOP_ALERT_ACTIONS``, JSON) or the flow's
``actions`` parameter: ``rollback`` runs the models helper's rollback flow (alias back to the
previous champion, audit record written; the ``mloop.model.rolled-back`` event then redeploys),
``retrain`` runs the retrain flow (cooldown and budget apply), ``notify`` only notifies, ``ignore``
records and does nothing. Every run publishes a markdown artifact and sends a notification saying
what it did. Nothing is cached.

One remediation per (model, alert name, fingerprint) at a time: the run claims a non-blocking lock
under MLOOP_HOME/locks (:func:`monitoring.remediation.claim_remediation`); a second run for the same
key while one runs ends at once as "skipped: already remediating". The model name is a validated
:data:`mloop.core.names.ModelName` (Prefect refuses a bad one before the run starts), and one taken
from the labels is checked by the same rule.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from mloop.core.names import ModelName
from mloop.core.settings import Settings
from monitoring.remediation import RemediationResult

__all__ = ["RemediationResult", "remediate_flow"]


def _act(result: RemediationResult, reason: str, event_id: str | None) -> RemediationResult:
    """Run ``result.action`` for ``result.model_name`` (a subflow for rollback and retrain); fill in the outcome."""
    from mloop.core.errors import MloopError
    from monitoring.remediation import as_dict, describe_audit

    model, action = result.model_name, result.action
    if action in ("rollback", "retrain") and not model:
        result.outcome, result.detail = (
            "skipped",
            "the alert names no model (label `model` or `model_name`)",
        )
    elif action == "rollback" and model:  # `and model`: always true here, it narrows the type
        from flows.promote import rollback_flow

        try:
            result.audit = as_dict(
                rollback_flow(name=model, reason=reason, actor=f"remediate:{result.alertname}")
            )
            result.detail = f"rolled back {model}: " + describe_audit(result.audit)
        except MloopError as exc:
            result.outcome, result.detail = "failed", f"rollback of {model} failed: {exc.what}"
    elif action == "retrain" and model:
        from flows.retrain import retrain_flow

        retrained = retrain_flow(
            model_name=model, trigger=f"alert:{result.alertname}", event_id=event_id
        )
        result.retrain = as_dict(retrained)
        result.detail = f"retrain of {model}: {retrained.status} ({retrained.reason})"
    elif action == "notify":
        result.detail = "notified only (no automatic action configured for this alert)"
    else:
        result.outcome, result.detail = "skipped", "ignored by configuration"
    return result


@flow(name="remediate", log_prints=True)
def remediate_flow(
    alertname: str,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    model_name: ModelName | None = None,
    event_id: str | None = None,
    actions: dict[str, str] | None = None,
    fingerprint: str | None = None,
) -> RemediationResult:
    """Run the remediation configured for an alert and record it.

    Args:
        alertname: The alert's name (Alertmanager label `alertname`), e.g. HighErrorRate.
        labels: The alert's labels; `model` or `model_name` names the affected model.
        annotations: The alert's annotations (summary, description), quoted in the record.
        model_name: The affected model, when not given by a label.
        event_id: Id of the `mloop.alert.*` event that triggered the run, if any.
        actions: Alert name -> action (rollback, retrain, notify, ignore) overriding the configuration.
        fingerprint: The alert's (group's) fingerprint: one remediation per model, alert and fingerprint at a time.
    """
    from prefect.artifacts import create_markdown_artifact

    from flows.notify import notify
    from monitoring.alerts import action_for, alertname_from_event
    from monitoring.remediation import (
        REMEDIATION_ARTIFACT_KEY,
        affected_model,
        alert_reason,
        claim_remediation,
        remediation_markdown,
        skipped_duplicate,
    )

    logger = get_run_logger()
    settings = Settings()
    labels = dict(labels or {})
    # The event name is normalised (safe characters only); the alert's own label keeps the exact name.
    alertname = str(labels.get("alertname") or alertname_from_event(alertname))
    model = affected_model(labels, model_name)
    action = action_for(alertname, actions if actions is not None else settings.alert_actions)
    reason = alert_reason(alertname, annotations, event_id)
    logger.info("alert %s on model %s -> action %s", alertname, model, action)
    result = RemediationResult(
        alertname=alertname, model_name=model, action=action, outcome="done", detail=""
    )
    with claim_remediation(settings.state.locks, model, alertname, fingerprint) as claimed:
        result = (
            _act(result, reason, event_id) if claimed else skipped_duplicate(result, fingerprint)
        )
    logger.info("remediation: %s", result.detail)
    create_markdown_artifact(
        markdown=remediation_markdown(result, labels, reason),
        key=REMEDIATION_ARTIFACT_KEY,
        description=f"{alertname} -> {action}",
    )
    notify(
        f"mloop remediation: {alertname} -> {action} ({result.outcome})",
        f"{reason}\n{result.detail}",
    )
    return result

"""One remediation of an alert: which model it names, why it ran, its result and how that reads.

Pure but for :func:`claim_remediation` (a lock file under ``MLOOP_HOME/locks``): the remediate
flow decides the action (:func:`monitoring.alerts.action_for`), runs it (the rollback and retrain
flows) while it holds the claim for its (model, alert name, fingerprint), and publishes what these
functions build. A second run for a key that is being remediated ends at once as skipped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mloop.core.files import try_lock
from mloop.core.names import NAME_PATTERN, check_name, child_path
from monitoring.alerts import MODEL_LABELS

REMEDIATION_ARTIFACT_KEY = "remediation"
ALREADY_REMEDIATING = "skipped: already remediating"


class RemediationResult(BaseModel):
    """What one remediation run did."""

    alertname: str
    model_name: str | None
    action: str
    outcome: str = Field(description="done, skipped, failed: with the detail in `detail`.")
    detail: str
    audit: dict[str, Any] | None = Field(
        default=None, description="The audit record a rollback wrote."
    )
    retrain: dict[str, Any] | None = None


def affected_model(labels: Mapping[str, str], model_name: str | None = None) -> str | None:
    """``model_name``, else the first model label (``model``, ``model_name``, ...) the alert carries.

    Raises MloopError when that name breaks the name rule (it would reach lock and audit paths).
    """
    found = model_name or next((labels[k] for k in MODEL_LABELS if labels.get(k)), None)
    return check_name(found, "model") if found else None


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def remediation_lock_name(model_name: str | None, alertname: str, fingerprint: str | None) -> str:
    """``remediate~<model>~<alertname>~<hash of the fingerprint>.lock``: validated parts only.

    The model must follow the name rule; an alert name that does not is replaced by its hash. ``~``
    is outside the rule, so two different keys never share a file name.
    """
    model = check_name(model_name, "model") if model_name else "-"  # "-" cannot be a model name
    alert = (
        alertname
        if NAME_PATTERN.match(alertname) and ".." not in alertname
        else "h" + _hash(alertname)
    )
    return f"remediate~{model}~{alert}~{_hash(fingerprint or '')}.lock"


@contextmanager
def claim_remediation(
    locks_dir: Path, model_name: str | None, alertname: str, fingerprint: str | None
) -> Iterator[bool]:
    """Hold the (model, alert name, fingerprint) claim while the block runs; yields False at once
    (without waiting) when another run holds it. A non-blocking OS file lock: released when the
    holder ends, even by a crash."""
    with try_lock(
        child_path(locks_dir, remediation_lock_name(model_name, alertname, fingerprint))
    ) as held:
        yield held


def skipped_duplicate(result: RemediationResult, fingerprint: str | None) -> RemediationResult:
    """``result`` marked as skipped: another run is remediating the same key."""
    result.outcome = "skipped"
    result.detail = (
        f"{ALREADY_REMEDIATING} {result.model_name or '-'} / {result.alertname} "
        f"(fingerprint {fingerprint or '-'}) in another run"
    )
    return result


def alert_reason(
    alertname: str, annotations: Mapping[str, str] | None, event_id: str | None
) -> str:
    """``alert <name>: <summary or description> (event <id>)``: recorded with the action."""
    notes = annotations or {}
    summary = notes.get("summary") or notes.get("description") or ""
    return (
        f"alert {alertname}"
        + (f": {summary}" if summary else "")
        + (f" (event {event_id})" if event_id else "")
    )


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
        md += (
            "\n## Audit record\n\n```json\n"
            + json.dumps(result.audit, indent=2, default=str)
            + "\n```\n"
        )
    return md

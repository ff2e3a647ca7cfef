"""Payloads of the model events the train flow emits (event names live in :mod:`mloop.core.events`).

Pure dict builders, so the payload keys documented in docs/architecture.md are written once and
tested without a server.
"""

from __future__ import annotations

from typing import Any

from mloop.core import events
from models.gate_decision import GateReport


def trained_payload(
    *,
    version: str,
    metrics: dict[str, float],
    trigger: str,
    data_md5: str,
    run_id: str,
    spec: str,
    label_source: str = "ingested",
) -> dict[str, Any]:
    """``mloop.model.trained``: the registered version and where it came from (``label_source``: whether the
    training labels were ingested from a file or came from feedback)."""
    return {
        "version": version,
        "metrics": metrics,
        "reason": trigger,
        "data_md5": data_md5,
        "run_id": run_id,
        "spec": spec,
        "label_source": label_source,
    }


def decision_payload(
    *,
    version: str,
    metrics: dict[str, float],
    reason: str,
    data_md5: str,
    champion: str | None,
    report: GateReport,
) -> dict[str, Any]:
    """``mloop.model.promoted`` / ``mloop.model.rejected`` from the train flow (``trusted``: the trusted
    holdout comparison, None when it was not run)."""
    return {
        "version": version,
        "metrics": metrics,
        "reason": reason,
        "data_md5": data_md5,
        "champion": champion,
        "gain": report.gain,
        "ci_low": report.ci_low,
        "trusted": report.trusted.model_dump(mode="json") if report.trusted is not None else None,
    }


def decision_event(*, promoted: bool, decision: str, promote: bool) -> str | None:
    """The event a train run's outcome emits, or None.

    Promoted: ``mloop.model.promoted``. The gate or an approver said no, or the guarded alias move
    lost: ``mloop.model.rejected``. ``promote=False`` with a passing gate: nothing (the challenger
    stays registered, nothing was rejected).
    """
    if promoted:
        return events.MODEL_PROMOTED
    if decision == "reject" or promote:
        return events.MODEL_REJECTED
    return None

"""What a monitor run concludes from a check: status, reason, the events (with payloads) and the result.

Pure: builds values from a :class:`~monitoring.drift.DriftResult`; the monitor flow emits the
events (names from :mod:`mloop.core.events`) and publishes the result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from mloop.core import events
from monitoring.drift import DriftResult

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

MonitorStatus = Literal["ok", "drift", "degraded", "drift+degraded", "skipped", "unchanged"]
"""``skipped``: too few predictions; ``unchanged``: nothing new since the last check (sweep)."""


class MonitorResult(BaseModel):
    """What one monitor run found and did."""

    model_name: str
    model_version: str | None
    status: MonitorStatus
    reason: str
    drift: DriftResult | None = None
    report_path: str | None = None
    mlflow_run_id: str | None = None
    workspace_snapshot_id: str | None = None
    events: list[str] = Field(default_factory=list, description="Names of the events emitted.")
    window_versions: list[str] = Field(
        default_factory=list, description="Model versions that served the window."
    )


def window_versions(window: pd.DataFrame) -> list[str]:
    """The model versions that served the window's predictions, sorted."""
    if "model_version" not in window:
        return []
    return sorted({str(v) for v in window["model_version"].dropna().unique()})


def skip_reason(rows: int, min_rows: int) -> str | None:
    """Why a window of ``rows`` predictions is too small to check, or None when it is big enough."""
    if rows >= min_rows:
        return None
    return f"{rows} predictions in the window (< {min_rows}): nothing to compare"


def skipped_markdown(model_name: str, reason: str) -> str:
    return f"# Drift check: {model_name}\n\nSkipped: {reason}."


def degraded(result: DriftResult) -> bool:
    return result.quality is not None and result.quality.degraded


def status(result: DriftResult) -> MonitorStatus:
    """ok, drift, degraded or drift+degraded."""
    bad = degraded(result)
    if result.dataset_drift and bad:
        return "drift+degraded"
    return "drift" if result.dataset_drift else "degraded" if bad else "ok"


def reason(result: DriftResult) -> str:
    """One line: drifted columns and share vs threshold, and the quality verdict when judged."""
    text = (
        f"{len(result.drifted_columns)}/{len(result.columns)} columns drifted (share {result.drift_share:.2f}, "
        f"threshold {result.drift_share_threshold:.2f})"
    )
    q = result.quality
    if q is None:
        return text
    verdict = "degraded: " + ", ".join(q.degraded_metrics) if q.degraded else "ok"
    return f"{text}; quality {verdict} on {q.labelled_rows} labels"


def drift_payload(result: DriftResult) -> dict[str, Any]:
    """Payload of ``mloop.drift.detected``."""
    w = result.window
    return {
        "model_name": result.model_name,
        "model_version": result.model_version,
        "drift_share": round(result.drift_share, 4),
        "drift_share_threshold": result.drift_share_threshold,
        "drifted_columns": result.drifted_columns,
        "report_path": result.report_path,
        "window": {
            "rows": w.rows,
            "start": w.start.isoformat() if w.start else None,
            "end": w.end.isoformat() if w.end else None,
        },
    }


def quality_payload(result: DriftResult) -> dict[str, Any]:
    """Payload of ``mloop.quality.degraded`` (``result.quality`` must be set)."""
    q = result.quality
    if q is None:
        raise ValueError("quality_payload needs a result with a quality verdict")
    return {
        "model_name": result.model_name,
        "model_version": result.model_version,
        "degraded_metrics": q.degraded_metrics,
        "metrics": {k: round(v, 4) for k, v in q.metrics.items()},
        "baseline": {k: round(v, 4) for k, v in q.baseline.items()},
        "tolerance": q.tolerance,
        "labelled_rows": q.labelled_rows,
        "report_path": result.report_path,
    }


def monitor_events(result: DriftResult) -> list[tuple[str, dict[str, Any]]]:
    """(event name, payload) for each event the check calls for: drift detected, quality degraded."""
    out: list[tuple[str, dict[str, Any]]] = []
    if result.dataset_drift:
        out.append((events.DRIFT_DETECTED, drift_payload(result)))
    if degraded(result):
        out.append((events.QUALITY_DEGRADED, quality_payload(result)))
    return out

"""The alert -> remediation table: the one source of ``Settings.alert_actions``' default.

Core, not ``monitoring``: settings (core) take their default from here, and
:mod:`monitoring.alerts` maps alert names with it. Pure data, no imports above core.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Literal

AlertAction = Literal["rollback", "retrain", "notify", "ignore"]
ACTIONS: tuple[AlertAction, ...] = ("rollback", "retrain", "notify", "ignore")
UNKNOWN_ALERT_ACTION: AlertAction = "notify"
"""What an alert name missing from the table gets: recorded and notified, nothing changed."""

DEFAULT_ALERT_ACTIONS: MappingProxyType[str, AlertAction] = MappingProxyType(
    {
        "HighErrorRate": "rollback",
        "QualityDrop": "rollback",
        "QualityDegraded": "rollback",
        "DataDrift": "retrain",
        "DriftDetected": "retrain",
    }
)
"""Alert name -> action (read-only; ``MLOOP_ALERT_ACTIONS`` replaces it as a whole)."""

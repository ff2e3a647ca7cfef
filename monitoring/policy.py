"""Retrain policy: cooldown and daily budget, plus the persisted retrain ledger.

``decide_retrain`` is pure (history in, decision out). ``RetrainLedger`` is the I/O edge: a JSON
lines file under MLOOP_HOME read and appended under a file lock, so two retrain runs that start at
the same moment (a burst of drift events) cannot both pass the policy. Nothing is cached: the
ledger is re-read on every claim because another process may have written it. Appends are fsynced
(a claim must survive a crash); a torn line is set aside by :mod:`mloop.core.jsonl`, not fatal.
In team mode (:meth:`RetrainLedger.of`) the ledger is a table of the team's PostgreSQL
(:mod:`mloop.core.shared`): a claim reads the model's rows, decides and inserts in one transaction
under the model's advisory lock, so two hosts cannot both spend the last retrain of the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from mloop.core.shared import FileRecords, SharedRecords

if TYPE_CHECKING:  # pragma: no cover
    from mloop.core.settings import Settings

BUDGET_WINDOW = timedelta(hours=24)


class RetrainRecord(BaseModel):
    """One retrain that passed the policy (one line of the ledger)."""

    model_name: str
    started_at: datetime
    trigger: str = Field(
        default="drift", description="What asked for the retrain (drift, alert, manual)."
    )
    event_id: str | None = Field(
        default=None, description="Prefect event id that triggered the run, if any."
    )
    flow_run_id: str | None = None


class PolicyDecision(BaseModel):
    """Whether a retrain may start now, and why (shown in the run's artifact and return value)."""

    allowed: bool
    reason: str
    retrains_in_window: int = Field(
        description="Retrains of this model in the last 24 h (before this one)."
    )
    last_retrain_at: datetime | None = None
    next_allowed_at: datetime | None = Field(
        default=None, description="Earliest time a retrain could pass again."
    )


def decide_retrain(
    history: Sequence[RetrainRecord],
    *,
    model_name: str,
    now: datetime,
    cooldown_minutes: float,
    daily_budget: int,
    force: bool = False,
) -> PolicyDecision:
    """Apply the cooldown and the daily budget to one model's retrain history.

    The cooldown counts from the last retrain that started (not finished) for ``model_name``; the
    budget is a rolling 24-hour window. ``force`` (a person asking from the UI or CLI) skips both
    checks but is still recorded.
    """
    mine = sorted((r for r in history if r.model_name == model_name), key=lambda r: r.started_at)
    in_window = [r for r in mine if now - r.started_at < BUDGET_WINDOW]
    last = mine[-1].started_at if mine else None
    common = {"retrains_in_window": len(in_window), "last_retrain_at": last}
    if force:
        return PolicyDecision(
            allowed=True, reason="forced: cooldown and budget not applied", **common
        )
    cooldown = timedelta(minutes=cooldown_minutes)
    if last is not None and now - last < cooldown:
        wait_until = last + cooldown
        return PolicyDecision(
            allowed=False,
            reason=(
                f"cooldown: last retrain of {model_name} started at {last.isoformat()}, "
                f"less than {cooldown_minutes:g} min ago; next allowed at {wait_until.isoformat()}"
            ),
            next_allowed_at=wait_until,
            **common,
        )
    if len(in_window) >= daily_budget:
        if not in_window:  # budget 0: automatic retraining is switched off
            return PolicyDecision(
                allowed=False,
                reason="daily budget: 0 (automatic retrains are switched off)",
                **common,
            )
        next_at = in_window[0].started_at + BUDGET_WINDOW
        return PolicyDecision(
            allowed=False,
            reason=(
                f"daily budget: {len(in_window)} retrains of {model_name} in the last 24 h "
                f"(budget {daily_budget}); next allowed at {next_at.isoformat()}"
            ),
            next_allowed_at=next_at,
            **common,
        )
    return PolicyDecision(
        allowed=True,
        reason=f"allowed: {len(in_window)} of {daily_budget} retrains used in the last 24 h, no retrain in the cooldown",
        **common,
    )


def ledger_path(state_root: Path) -> Path:
    """Where the retrain ledger lives under MLOOP_HOME."""
    return state_root / "retrain" / "ledger.jsonl"


class RetrainLedger:
    """The persisted retrain history: JSON lines guarded by a file lock next to it (``path``), or the
    team's shared table when ``records`` is given (see :meth:`of`)."""

    def __init__(self, path: Path, records: SharedRecords | None = None) -> None:
        self.path = path
        self.records = records if records is not None else _file_records(path)

    @classmethod
    def of(cls, settings: Settings) -> RetrainLedger:
        """The ledger of ``settings``: ``<MLOOP_HOME>/retrain/ledger.jsonl``, or in team mode the shared table."""
        from mloop.core.shared import shared_records

        return cls(ledger_path(settings.state.root), shared_records(settings))

    def read(self) -> list[RetrainRecord]:
        """Every record, oldest first (an empty list when there is no ledger yet)."""
        return self.records.read("retrain", None, RetrainRecord.model_validate_json)

    def claim(
        self,
        record: RetrainRecord,
        *,
        cooldown_minutes: float,
        daily_budget: int,
        force: bool = False,
    ) -> PolicyDecision:
        """Decide under the lock; append ``record`` only when the retrain is allowed."""

        def decide(history: list[RetrainRecord]) -> tuple[PolicyDecision, RetrainRecord | None]:
            decision = decide_retrain(
                history,
                model_name=record.model_name,
                now=record.started_at,
                cooldown_minutes=cooldown_minutes,
                daily_budget=daily_budget,
                force=force,
            )
            return decision, record if decision.allowed else None

        return self.records.claim(
            "retrain", record.model_name, RetrainRecord.model_validate_json, decide
        )


def _file_records(path: Path) -> FileRecords:
    """The file implementation with its ledger at ``path`` (a claim locks ``<path>.lock``, 60 s)."""
    root = path.parent.parent
    return FileRecords(
        locks=root / "locks", audit=root / "audit", ledger=path, datasets=root / "datasets"
    )


def utcnow() -> datetime:
    return datetime.now(UTC)

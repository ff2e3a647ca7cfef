"""One retrain request: the claim on the retrain ledger, the result, and how the result reads.

:func:`claim_retrain` is the I/O edge (the ledger under MLOOP_HOME, see :mod:`monitoring.policy`);
the rest is pure. The retrain flow wires them to the dataset builder and the train flow.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from mloop.core.events import model_resource
from mloop.core.files import try_lock
from mloop.core.lineage import LabelSource
from mloop.core.names import check_name, child_path
from mloop.core.settings import Settings
from mloop.core.shared import SharedRecords
from monitoring.policy import PolicyDecision

RetrainStatus = Literal["skipped", "no-data", "trained"]
ALREADY_RETRAINING = "already retraining"


class RetrainResult(BaseModel):
    """What one retrain run did."""

    model_name: str
    status: RetrainStatus
    reason: str
    trigger: str
    event_id: str | None = None
    dataset_md5: str | None = Field(default=None, description="The dataset version trained on.")
    trained_version: str | None = Field(
        default=None, description="Registered model version, if one was trained."
    )
    promoted: bool | None = Field(
        default=None, description="The gate's verdict on the trained version."
    )
    champion: str | None = None
    label_source: LabelSource | None = Field(
        default=None,
        description="Where the trained data's labels came from (feedback for a version built from it).",
    )
    approval_required: bool | None = Field(
        default=None,
        description="The train run waited for a person (MLOOP_APPROVE_FEEDBACK_RETRAINS and feedback labels).",
    )
    gate: str | None = Field(
        default=None, description="The gate's one-line summary, trusted holdout included."
    )


def model_name_from(value: str) -> str:
    """Accept ``loans`` or the event resource id ``mloop.model.loans``; the name must follow the name rule."""
    prefix = model_resource("")
    return check_name(value[len(prefix) :] if value.startswith(prefix) else value, "model")


def claim_retrain(
    settings: Settings,
    model_name: str,
    *,
    trigger: str,
    event_id: str | None,
    flow_run_id: str,
    force: bool,
    now: datetime | None = None,
) -> PolicyDecision:
    """Claim a retrain of ``model_name`` on the persisted ledger (under its lock): allowed only inside
    the model's daily budget and outside its cooldown (its own values from ``mloop monitor configure``,
    else ``MLOOP_DAILY_RETRAIN_BUDGET`` / ``MLOOP_RETRAIN_COOLDOWN_MINUTES``) unless ``force``; both
    count this model's retrains only. An allowed claim is recorded."""
    from monitoring.model_config import resolve_config
    from monitoring.policy import RetrainLedger, RetrainRecord

    config = resolve_config(settings, model_name)
    record = RetrainRecord(
        model_name=model_name,
        started_at=now or datetime.now(UTC),
        trigger=trigger,
        event_id=event_id,
        flow_run_id=flow_run_id,
    )
    return RetrainLedger.of(settings).claim(
        record,
        cooldown_minutes=config.retrain_cooldown_minutes,
        daily_budget=config.daily_retrain_budget,
        force=force,
    )


@contextmanager
def hold_model_retrain(
    locks_dir: Path, model_name: str, *, records: SharedRecords | None = None
) -> Iterator[bool]:
    """Hold the model's retrain lock (``locks/retrain~<model>.lock``) while the block runs; yields False at
    once (without waiting) when another run of the same model holds it. Runs of different models never
    wait for each other. A non-blocking OS file lock: released when the holder ends, even by a crash. In
    team mode (``records`` from :func:`mloop.core.shared.shared_records`) the same-named PostgreSQL
    advisory lock instead, released when the holder's connection ends."""
    path = child_path(locks_dir, f"retrain~{check_name(model_name, 'model')}.lock")
    if records is not None:
        with records.try_lock(path.stem) as held:
            yield held
        return
    with try_lock(path) as held:
        yield held


def retrain_markdown(result: RetrainResult, detail: str = "") -> str:
    """The retrain run's markdown artifact: a table of the result, then ``detail``."""
    rows = [
        ("model", result.model_name),
        ("status", f"**{result.status}**"),
        ("reason", result.reason),
        ("trigger", result.trigger),
        ("event id", result.event_id or "-"),
        ("dataset md5", result.dataset_md5 or "-"),
        ("trained version", result.trained_version or "-"),
        ("label source", result.label_source or "-"),
        (
            "approval required",
            "-" if result.approval_required is None else str(result.approval_required),
        ),
        ("promoted", "-" if result.promoted is None else str(result.promoted)),
        ("champion now", result.champion or "-"),
        ("gate", (result.gate or "-").replace("|", "\\|")),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (
        f"# Retrain {result.model_name}: {result.status}\n\n| | |\n|---|---|\n{table}\n\n{detail}"
    )


def drift_detail(drift: dict[str, object] | None) -> str:
    """The drift event's payload as a line of the artifact (empty without one)."""
    return f"Drift payload: `{drift}`" if drift else ""

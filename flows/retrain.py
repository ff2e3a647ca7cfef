"""Retrain on drift: policy check -> new labelled dataset version -> train (gate decides).

Triggered by ``mloop.drift.detected`` (prefect.yaml), by the remediate flow (alert -> retrain), or by
hand from the UI/CLI. A burst of drift events starts one retrain: the deployment runs one at a time
(``concurrency_limit: 1``, CANCEL_NEW), and every run first claims the persisted retrain ledger
under a file lock (``MLOOP_HOME/retrain/ledger.jsonl``, see ``monitoring.policy``): a run inside the
cooldown or over the daily budget stops there and says why (log, markdown artifact, return value).
A claimed run that finds no new labelled data says so and registers nothing; the claim still
counts, so a drift storm without labels does not spin.

Nothing is cached: each run re-reads the ledger, the prediction log and the feedback.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from mloop.core.settings import Settings

RetrainStatus = Literal["skipped", "no-data", "trained"]


class RetrainResult(BaseModel):
    """What one retrain run did."""

    model_name: str
    status: RetrainStatus
    reason: str
    trigger: str
    event_id: str | None = None
    dataset_md5: str | None = Field(default=None, description="The dataset version trained on.")
    trained_version: str | None = Field(default=None, description="Registered model version, if one was trained.")
    promoted: bool | None = Field(default=None, description="The gate's verdict on the trained version.")
    champion: str | None = None


def model_name_from(value: str) -> str:
    """Accept ``loans`` or the event resource id ``mloop.model.loans``."""
    prefix = "mloop.model."
    return value[len(prefix) :] if value.startswith(prefix) else value


def _artifact(result: RetrainResult, detail: str = "") -> None:
    from prefect.artifacts import create_markdown_artifact

    rows = [
        ("model", result.model_name),
        ("status", f"**{result.status}**"),
        ("reason", result.reason),
        ("trigger", result.trigger),
        ("event id", result.event_id or "-"),
        ("dataset md5", result.dataset_md5 or "-"),
        ("trained version", result.trained_version or "-"),
        ("promoted", "-" if result.promoted is None else str(result.promoted)),
        ("champion now", result.champion or "-"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    md = f"# Retrain {result.model_name}: {result.status}\n\n| | |\n|---|---|\n{table}\n\n{detail}"
    key = "retrain-" + "".join(c if c.isalnum() else "-" for c in result.model_name.lower())
    create_markdown_artifact(markdown=md, key=key, description=f"retrain {result.model_name}: {result.status}")


@flow(name="retrain", log_prints=True)
def retrain_flow(
    model_name: str,
    trigger: str = "drift",
    event_id: str | None = None,
    drift: dict[str, Any] | None = None,
    force: bool = False,
) -> RetrainResult:
    """Retrain a model on its newest labelled data, if the cooldown and the daily budget allow.

    Args:
        model_name: Registered model (= dataset) name; the event resource id `mloop.model.<name>` works too.
        trigger: What asked for the retrain (drift, alert:<name>, manual): recorded in the ledger.
        event_id: Id of the Prefect event that triggered the run, if any.
        drift: The drift event's payload (share, drifted columns, report), shown in the run's artifact.
        force: Skip the cooldown and the budget (a person asking); still recorded.
    """
    from prefect.runtime import flow_run

    from monitoring.policy import RetrainLedger, RetrainRecord, ledger_path

    logger = get_run_logger()
    settings = Settings()
    name = model_name_from(model_name)
    record = RetrainRecord(
        model_name=name,
        started_at=datetime.now(UTC),
        trigger=trigger,
        event_id=event_id,
        flow_run_id=str(flow_run.get_id() or ""),
    )
    decision = RetrainLedger(ledger_path(settings.state.root)).claim(
        record,
        cooldown_minutes=settings.retrain_cooldown_minutes,
        daily_budget=settings.daily_retrain_budget,
        force=force,
    )
    base = {"model_name": name, "trigger": trigger, "event_id": event_id}
    drift_md = f"Drift payload: `{drift}`" if drift else ""
    if not decision.allowed:
        result = RetrainResult(status="skipped", reason=decision.reason, **base)
        logger.info("retrain of %s skipped: %s", name, decision.reason)
        _artifact(result, drift_md)
        return result
    logger.info("retrain of %s allowed: %s", name, decision.reason)

    from monitoring.retrain_data import build_retrain_dataset

    built = build_retrain_dataset(settings, name)
    if not built.created or built.version is None:
        result = RetrainResult(
            status="no-data", reason=f"nothing trained, nothing registered: {built.reason}", **base
        )
        logger.info("retrain of %s: %s", name, result.reason)
        _artifact(result, drift_md)
        return result
    md5 = built.version.md5
    logger.info("retrain of %s: new dataset version %s (%s)", name, md5, built.reason)

    from flows.train import train_flow

    trained = train_flow(dataset=built.dataset, version=md5, trigger=f"retrain:{trigger}")
    result = RetrainResult(
        status="trained",
        reason=f"trained on dataset version {md5}: {built.reason}",
        dataset_md5=md5,
        trained_version=trained.version,
        promoted=trained.promoted,
        champion=trained.champion,
        **base,
    )
    logger.info("retrain of %s: version %s, promoted=%s", name, result.trained_version, result.promoted)
    _artifact(result, drift_md)
    return result

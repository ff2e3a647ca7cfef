"""Retrain on drift: policy check -> new labelled dataset version -> train (gate decides).

The new version's labels came from feedback (label source ``feedback``): the gate also checks the
challenger on a trusted holdout no feedback can change, and ``MLOOP_APPROVE_FEEDBACK_RETRAINS`` makes
the train run wait for a person before the champion moves.

Triggered by ``mloop.drift.detected`` (prefect.yaml), by the remediate flow (alert -> retrain), or by
hand from the UI/CLI. Many models share the deployment: up to 2 runs at once, more wait in line
(``concurrency_limit: 2``, ENQUEUE), so a drift on one model is never dropped while another model
retrains. Per model, a burst of drift events trains once: a run first takes the model's retrain lock
(``locks/retrain~<model>.lock``; a second run of the same model meanwhile stops at once as skipped),
then claims the persisted retrain ledger under its file lock (``MLOOP_HOME/retrain/ledger.jsonl``,
see ``monitoring.policy``): a run inside THAT model's cooldown or over its daily budget (its own values
from ``mloop monitor configure``, else the global settings) stops there and says why (log, markdown
artifact, return value). A claimed run that finds no new labelled data says so and registers
nothing; the claim still counts, so a drift storm without labels does not spin.

Nothing is cached: each run re-reads the ledger, the prediction log and the feedback.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from mloop.core.artifacts import artifact_key
from mloop.core.settings import Settings
from mloop.core.shared import shared_records
from monitoring.retraining import RetrainResult, RetrainStatus, drift_detail, model_name_from

__all__ = ["RetrainResult", "RetrainStatus", "model_name_from", "retrain_flow"]


def _report(result: RetrainResult, message: str, detail: str) -> RetrainResult:
    """Log ``message``, publish the result as a markdown artifact (key ``retrain-<model>``), return it."""
    from prefect.artifacts import create_markdown_artifact

    from monitoring.retraining import retrain_markdown

    get_run_logger().info(message)
    create_markdown_artifact(
        markdown=retrain_markdown(result, detail),
        key=artifact_key("retrain", result.model_name),
        description=f"retrain {result.model_name}: {result.status}",
    )
    return result


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

    from monitoring.retraining import ALREADY_RETRAINING, hold_model_retrain

    settings = Settings()
    name = model_name_from(model_name)
    base = {"model_name": name, "trigger": trigger, "event_id": event_id}
    with hold_model_retrain(settings.state.locks, name, records=shared_records(settings)) as held:
        if not held:
            skipped = RetrainResult(
                status="skipped", reason=f"{ALREADY_RETRAINING} {name} in another run", **base
            )
            return _report(
                skipped, f"retrain of {name} skipped: {skipped.reason}", drift_detail(drift)
            )
        return _retrain(
            settings, name, base, force, str(flow_run.get_id() or ""), drift_detail(drift)
        )


def _retrain(
    settings: Settings, name: str, base: dict[str, Any], force: bool, flow_run_id: str, detail: str
) -> RetrainResult:
    """Claim (cooldown, budget), build the new labelled dataset version, train it: the run's result."""
    from flows.train import train_flow
    from models.gate_scoring import approval_required
    from monitoring.retrain_data import build_retrain_dataset
    from monitoring.retraining import claim_retrain

    trigger, event_id = base["trigger"], base["event_id"]
    claim = claim_retrain(
        settings, name, trigger=trigger, event_id=event_id, force=force, flow_run_id=flow_run_id
    )
    if not claim.allowed:
        skipped = RetrainResult(status="skipped", reason=claim.reason, **base)
        return _report(skipped, f"retrain of {name} skipped: {claim.reason}", detail)
    get_run_logger().info("retrain of %s allowed: %s", name, claim.reason)
    built = build_retrain_dataset(settings, name)
    if not built.created or built.version is None:
        no_data = RetrainResult(
            status="no-data", reason=f"nothing trained, nothing registered: {built.reason}", **base
        )
        return _report(no_data, f"retrain of {name}: {no_data.reason}", detail)
    md5, labels = built.version.md5, built.version.label_source
    approval = approval_required(settings.approve_feedback_retrains, labels)
    get_run_logger().info(
        "retrain of %s: new dataset version %s (%s labels; %s)", name, md5, labels, built.reason
    )
    trained = train_flow(
        dataset=built.dataset, version=md5, trigger=f"retrain:{trigger}", require_approval=approval
    )
    result = RetrainResult(
        status="trained",
        reason=f"trained on dataset version {md5}: {built.reason}",
        dataset_md5=md5,
        trained_version=trained.version,
        promoted=trained.promoted,
        champion=trained.champion,
        label_source=labels,
        approval_required=approval,
        gate=trained.gate.summary() if trained.gate else None,
        **base,
    )
    return _report(
        result,
        f"retrain of {name}: version {result.trained_version}, promoted={result.promoted}",
        detail,
    )

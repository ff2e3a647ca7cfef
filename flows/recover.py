"""Recover flow: a Crashed train/retrain/deploy run gets its MLflow runs FAILED, its slot freed, one retry.

Triggered by ``prefect.flow-run.Crashed`` events of the train, retrain and deploy flows
(prefect.yaml); a run is Crashed when its process died (the zombie automation of
:mod:`flows.notify` saw its heartbeats stop). Steps, each idempotent:

1. the MLflow runs the crashed run (and its subflow runs) left RUNNING are marked FAILED (never
   cacheable, never champion);
2. the deployment concurrency leases its states held are released (the server releases them on
   Running -> Crashed already; releasing a released lease is a no-op, so a slot is never kept);
3. the same deployment runs again with the same parameters, once: policy in
   :func:`models.recovery.plan_recovery` (the retry is tagged ``mloop-retry-of:<id>``, which is
   also its idempotency key; a crashed retry is not retried again).

The champion is never touched: a crashed train never promoted (the alias moves in its last step).
A markdown artifact (key ``recover-<flow run id>``) says what was done and why. Nothing is cached.
"""

from __future__ import annotations

from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.sync import sync_result
from mloop.core.artifacts import artifact_key
from mloop.core.settings import Settings
from models.recovery import CrashedRun, RecoveryReport

__all__ = ["RecoveryReport", "recover_flow"]


@task(name="read-crashed-run", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def read_crashed(flow_run_id: str) -> tuple[CrashedRun, list[str], list[str]]:
    """The run as recovery sees it, the ids of its subflow runs, and the ids of runs already retrying it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        FlowRunFilterTags,
    )

    from models.recovery import retry_tag

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
        flow_name = client.read_flow(run.flow_id).name
        deployment = client.read_deployment(run.deployment_id).name if run.deployment_id else None
        leases = {
            str(s.state_details.deployment_concurrency_lease_id)
            for s in client.read_flow_run_states(run.id)
            if s.state_details.deployment_concurrency_lease_id
        }
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])
            )
        )
        retries = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[retry_tag(flow_run_id)]))
        )
    crashed = CrashedRun(
        id=flow_run_id,
        name=run.name,
        flow_name=flow_name,
        state_type=run.state_type.value if run.state_type else "",
        deployment_id=str(run.deployment_id) if run.deployment_id else None,
        deployment_name=f"{flow_name}/{deployment}" if deployment else None,
        parent_task_run_id=str(run.parent_task_run_id) if run.parent_task_run_id else None,
        parameters=dict(run.parameters or {}),
        tags=list(run.tags or []),
        lease_ids=sorted(leases),
    )
    return (
        crashed,
        [str(c.id) for c in children],
        [str(r.id) for r in retries if str(r.id) != flow_run_id],
    )


@task(name="fail-mlflow-runs", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def fail_mlflow_runs(tracking_uri: str, flow_run_ids: list[str]) -> list[str]:
    """Mark FAILED the MLflow runs these flow runs left open."""
    from models.tracking import fail_open_runs

    return [
        run_id
        for flow_run_id in flow_run_ids
        for run_id in fail_open_runs(tracking_uri, flow_run_id)
    ]


@task(name="release-leases", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def release_leases(lease_ids: list[str]) -> list[str]:
    """Release the deployment concurrency leases (no-op for a lease the server released already)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for lease_id in lease_ids:
            client.release_concurrency_slots_with_lease(UUID(lease_id))
    return lease_ids


@task(name="re-run", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def rerun(run: CrashedRun) -> str:
    """Start the crashed run's deployment again (same parameters, tagged and keyed as its retry); don't wait."""
    from prefect.deployments import run_deployment

    from models.recovery import retry_of, retry_parameters, retry_tag

    assert run.deployment_id is not None
    started = run_deployment(
        UUID(run.deployment_id),
        parameters=retry_parameters(run.flow_name, run.parameters),
        timeout=0,
        tags=[t for t in run.tags if retry_of([t]) is None] + [retry_tag(run.id)],
        idempotency_key=retry_tag(run.id),
        as_subflow=False,
    )
    return str(sync_result(started).id)


@flow(name="recover")
def recover_flow(flow_run_id: str) -> RecoveryReport:
    """Recover a Crashed flow run: fail its open MLflow runs, free its concurrency slot, re-run it once.

    Args:
        flow_run_id: The crashed flow run's id (or its event resource id `prefect.flow-run.<id>`).
    """
    from prefect.artifacts import create_markdown_artifact

    from models.recovery import flow_run_id_from, plan_recovery, recovery_markdown

    run_id = flow_run_id_from(flow_run_id)
    crashed, children, retries = read_crashed(run_id)
    plan = plan_recovery(crashed, retries)
    report = RecoveryReport(
        flow_run_id=run_id,
        flow_name=crashed.flow_name,
        deployment=crashed.deployment_name,
        reason=plan.reason,
    )
    if plan.clean_up:
        report.failed_mlflow_runs = fail_mlflow_runs(Settings().tracking_uri, [run_id, *children])
        report.released_leases = release_leases(crashed.lease_ids)
    if plan.retry:
        report.retried, report.retry_run_id = True, rerun(crashed)
    get_run_logger().info(
        "recovery of %s (%s): %s%s",
        run_id,
        crashed.flow_name,
        plan.reason,
        f"; retry {report.retry_run_id}" if report.retried else "",
    )
    create_markdown_artifact(
        key=artifact_key("recover", run_id),
        markdown=recovery_markdown(report),
        description=f"recover {crashed.flow_name} run {crashed.name}: "
        f"{'retried' if report.retried else 'not retried'}",
    )
    return report

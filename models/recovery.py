"""Crash recovery policy: what the ``recover`` flow does for a Crashed flow run, decided without I/O.

A flow run is Crashed when its process died (the zombie automation saw its heartbeats stop, or the
engine reported it). The ``recover`` flow reads that run from Prefect, then asks
:func:`plan_recovery` whether to run its deployment again: only a top-level run of the train,
retrain or deploy deployment is retried, only once (the retry carries the tag
``mloop-retry-of:<crashed id>``, and a crashed retry is not retried again), and never twice for the
same crash (a run already tagged as its retry means: done). :func:`retry_parameters` gives the
retry's parameters; :func:`recovery_markdown` the run's artifact.

The champion never moves because of a crash: a train run moves the alias only in its last step,
so a crashed train has not promoted anything, and recovery only fails its open MLflow runs and
starts the work again (the retry's own gate decides).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

RECOVERABLE_FLOWS = ("train", "retrain", "deploy")
"""Flows whose crashed deployment runs are re-run once."""
RETRY_TAG_PREFIX = "mloop-retry-of:"
FLOW_RUN_RESOURCE_PREFIX = "prefect.flow-run."


def retry_tag(flow_run_id: str) -> str:
    """The tag of the run that retries ``flow_run_id`` (also its idempotency key)."""
    return f"{RETRY_TAG_PREFIX}{flow_run_id}"


def retry_of(tags: list[str]) -> str | None:
    """The id of the run that a run with ``tags`` retries (None: not a retry)."""
    for tag in tags:
        if tag.startswith(RETRY_TAG_PREFIX):
            return tag[len(RETRY_TAG_PREFIX) :]
    return None


def flow_run_id_from(value: str) -> str:
    """A flow-run id from the id itself or the event resource id ``prefect.flow-run.<id>``."""
    value = value.strip()
    return (
        value[len(FLOW_RUN_RESOURCE_PREFIX) :]
        if value.startswith(FLOW_RUN_RESOURCE_PREFIX)
        else value
    )


class CrashedRun(BaseModel):
    """What recovery needs to know of a flow run (read from Prefect by the recover flow)."""

    id: str
    name: str = ""
    flow_name: str
    state_type: str = Field(description="Prefect state type, e.g. CRASHED.")
    deployment_id: str | None = None
    deployment_name: str | None = Field(
        default=None, description="<flow>/<deployment>, e.g. train/local."
    )
    parent_task_run_id: str | None = Field(
        default=None, description="Set for a subflow run (no retry of its own)."
    )
    parameters: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    lease_ids: list[str] = Field(
        default_factory=list, description="Deployment concurrency leases its states held."
    )


class RecoveryPlan(BaseModel):
    """Whether to clean up after the run (fail its MLflow runs, release its slot), whether to re-run its
    deployment, and why (or why not)."""

    clean_up: bool
    retry: bool
    reason: str


def plan_recovery(run: CrashedRun, existing_retries: list[str]) -> RecoveryPlan:
    """Retry a Crashed top-level train/retrain/deploy deployment run once; say why anything else is left.

    ``existing_retries``: ids of flow runs already tagged :func:`retry_tag` of this run.
    """
    if run.state_type != "CRASHED":
        return RecoveryPlan(
            clean_up=False,
            retry=False,
            reason=f"run is {run.state_type or 'unknown'}, not CRASHED: nothing to recover",
        )
    if run.flow_name not in RECOVERABLE_FLOWS:
        return RecoveryPlan(
            clean_up=False,
            retry=False,
            reason=f"flow {run.flow_name!r} is not recovered (only {', '.join(RECOVERABLE_FLOWS)}): "
            "nothing done",
        )
    if existing_retries:
        return RecoveryPlan(
            clean_up=True,
            retry=False,
            reason=f"already recovered: retried by {', '.join(existing_retries)}",
        )
    if (original := retry_of(run.tags)) is not None:
        return RecoveryPlan(
            clean_up=True,
            retry=False,
            reason=f"run is the retry of {original}: a crashed retry is not retried again",
        )
    if run.parent_task_run_id or not run.deployment_id:
        return RecoveryPlan(
            clean_up=True,
            retry=False,
            reason="not a deployment run of its own (a subflow or a local run): the run that "
            "started it is retried, not this one",
        )
    return RecoveryPlan(
        clean_up=True,
        retry=True,
        reason=f"crashed {run.deployment_name or run.flow_name} run: re-run once, same parameters",
    )


def retry_parameters(flow_name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """The crashed run's parameters for its retry.

    A retrain retry is forced: the crashed run already claimed the retrain ledger (its cooldown and
    budget), and the retry does that same claimed work, so the cooldown must not refuse it.
    """
    if flow_name == "retrain":
        return {**parameters, "force": True}
    return dict(parameters)


class RecoveryReport(BaseModel):
    """What one recover run did."""

    flow_run_id: str
    flow_name: str | None = None
    deployment: str | None = None
    retried: bool = False
    retry_run_id: str | None = None
    reason: str
    failed_mlflow_runs: list[str] = Field(default_factory=list)
    released_leases: list[str] = Field(default_factory=list)


def recovery_markdown(report: RecoveryReport) -> str:
    """The recover run's markdown artifact: what was crashed, what was done about it."""
    action = f"re-run as `{report.retry_run_id}`" if report.retried else "not re-run"
    rows = [
        ("crashed flow run", f"`{report.flow_run_id}`"),
        ("flow", report.flow_name or "-"),
        ("deployment", report.deployment or "-"),
        ("retry", action),
        ("why", report.reason.replace("|", "\\|")),
        (
            "MLflow runs marked FAILED",
            ", ".join(f"`{r}`" for r in report.failed_mlflow_runs) or "none open",
        ),
        (
            "concurrency leases released",
            ", ".join(f"`{x}`" for x in report.released_leases) or "none held",
        ),
    ]
    lines = [
        f"# Recovery of crashed run `{report.flow_run_id}`: {action}",
        "",
        "| | |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"

"""The recover flow and the zombie automation on the session Prefect server (a real 3.9 server).

A run of a ``train`` deployment with a limit-1 ENQUEUE concurrency slot (like deploy/local) is
driven Pending -> Running -> Crashed the way the worker and the zombie automation drive it; no
worker polls its queue, so nothing runs it. Then: the server has freed the slot by itself, and
recover fails the MLflow run it left open, re-runs the deployment once with the same parameters,
and declines a second recovery and the recovery of a crashed retry.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest

from mloop.core.settings import Settings
from mloop.core.tags import TAG_FLOW_RUN_ID

if TYPE_CHECKING:
    from prefect.automations import Automation

pytestmark = pytest.mark.integration


@pytest.fixture
def flow_env(settings: Settings, monkeypatch: pytest.MonkeyPatch, prefect_server: Any) -> Settings:
    monkeypatch.setenv("MLOOP_HOME", str(settings.state.root))
    monkeypatch.setenv("MLOOP_PROJECT_DIR", str(settings.project_dir))
    return settings


@pytest.fixture
def client(prefect_server: Any) -> Iterator[Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        yield c


def _read_automation(*, id: str | None = None, name: str | None = None) -> Automation:
    """``Automation.read`` called from sync code, where it returns the Automation (Prefect's
    overloads declare only the coroutine), by id or by name."""
    from prefect.automations import Automation

    stored = Automation.read(id=UUID(id)) if id is not None else Automation.read(name=name or "")
    assert isinstance(stored, Automation), stored
    return stored


def _active_slots(client: Any, deployment_id: UUID) -> int:
    limit = client.read_deployment(deployment_id).global_concurrency_limit
    assert limit is not None and limit.limit == 1
    return int(limit.active_slots)


def _crash(client: Any, run_id: UUID) -> None:
    """What a worker and then the zombie automation do to a run: Pending, Running, Crashed (not forced)."""
    from prefect.states import Crashed, Pending, Running

    for state in (Pending(), Running(), Crashed(message="no heartbeat (test)")):
        result = client.set_flow_run_state(run_id, state)
        assert result.status.value == "ACCEPT", (state.type, result)


def test_recover_fails_mlflow_runs_frees_the_slot_and_retries_once(
    flow_env: Settings, client: Any
) -> None:
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions
    from prefect.states import Crashed, Pending, Running

    from flows.recover import recover_flow
    from models.recovery import retry_tag
    from models.tracking import ensure_experiment, get_run, start_run

    flow_id = client.create_flow_from_name("train")
    deployment = client.create_deployment(
        flow_id,
        f"zombie-{uuid4().hex[:8]}",
        concurrency_limit=1,
        work_queue_name=f"nobody-{uuid4().hex[:8]}",
        concurrency_options=ConcurrencyOptions(collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
    )
    params = {"dataset": "loans", "seed": 7, "trigger": "new-dataset"}
    run = client.create_flow_run_from_deployment(deployment, parameters=params, tags=["mloop"])
    uri = flow_env.tracking_uri
    experiment = ensure_experiment(uri, "loans", flow_env.state.mlflow_artifacts)
    open_run = start_run(uri, experiment, run_name="loans-lr", tags={TAG_FLOW_RUN_ID: str(run.id)})

    client.set_flow_run_state(run.id, Pending())
    client.set_flow_run_state(run.id, Running())
    assert _active_slots(client, deployment) == 1
    client.set_flow_run_state(run.id, Crashed(message="no heartbeat (test)"))
    assert _active_slots(client, deployment) == 0, (
        "a crashed run kept its deployment concurrency slot"
    )

    report = recover_flow(flow_run_id=f"prefect.flow-run.{run.id}")
    assert report.retried and report.retry_run_id and report.deployment
    assert report.deployment.startswith("train/zombie-")
    assert report.failed_mlflow_runs == [open_run] and get_run(uri, open_run).status == "FAILED"
    assert (
        len(report.released_leases) == 1
    )  # the lease its Running state held (already released: a no-op)
    assert _active_slots(client, deployment) == 0
    retry = client.read_flow_run(UUID(report.retry_run_id))
    assert retry.deployment_id == deployment and retry.parameters == params
    assert set(retry.tags) == {"mloop", retry_tag(str(run.id))} and retry.parent_task_run_id is None

    again = recover_flow(flow_run_id=str(run.id))
    assert not again.retried and again.reason.startswith("already recovered")
    assert again.failed_mlflow_runs == []

    _crash(client, retry.id)
    retry_report = recover_flow(flow_run_id=str(retry.id))
    assert (
        not retry_report.retried and "a crashed retry is not retried again" in retry_report.reason
    )
    assert _active_slots(client, deployment) == 0


def test_recover_does_nothing_for_other_flows_or_live_runs(flow_env: Settings, client: Any) -> None:
    from flows.recover import recover_flow

    monitor = client.create_flow_run_from_deployment(
        client.create_deployment(
            client.create_flow_from_name("monitor"),
            f"zombie-{uuid4().hex[:8]}",
            work_queue_name=f"nobody-{uuid4().hex[:8]}",
        ),
        parameters={},
    )
    _crash(client, monitor.id)
    report = recover_flow(flow_run_id=str(monitor.id))
    assert (
        not report.retried
        and "'monitor' is not recovered" in report.reason
        and "nothing done" in report.reason
    )

    train = client.create_flow_run_from_deployment(
        client.create_deployment(
            client.create_flow_from_name("train"),
            f"zombie-{uuid4().hex[:8]}",
            work_queue_name=f"nobody-{uuid4().hex[:8]}",
        ),
        parameters={},
    )
    report = recover_flow(flow_run_id=str(train.id))
    assert not report.retried and "not CRASHED" in report.reason


def test_the_zombie_automation_is_created_once_and_updated_in_place(prefect_server: Any) -> None:
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger

    from flows.notify import ZOMBIE_AUTOMATION_NAME, ensure_zombie_automation

    first = ensure_zombie_automation(seconds=90)
    second = ensure_zombie_automation(seconds=120)
    assert first == second
    stored = _read_automation(name=ZOMBIE_AUTOMATION_NAME)
    trigger = stored.trigger
    assert isinstance(trigger, EventTrigger) and trigger.within is not None, trigger
    assert str(stored.id) == first and trigger.within.total_seconds() == 120
    assert trigger.posture == "Proactive" and trigger.for_each == {"prefect.resource.id"}
    assert trigger.after == {
        "prefect.flow-run.heartbeat",
        "prefect.flow-run.Running",
    }  # killed before a heartbeat too
    assert {
        "prefect.flow-run.heartbeat",
        "prefect.flow-run.Completed",
        "prefect.flow-run.Crashed",
    } <= trigger.expect
    action = stored.actions[0]
    assert isinstance(action, ChangeFlowRunState), action
    assert (
        action.type == "change-flow-run-state"
        and action.state.value == "CRASHED"
        and "no heartbeat" in (action.message or "")
    )
    ensure_zombie_automation()  # back to the default for any later test


def test_a_run_stuck_pending_is_crashed_by_the_stuck_automation(
    prefect_server: Any, client: Any
) -> None:
    """A worker killed while submitting a run leaves it Pending ('Submitting') with no process: no heartbeat
    ever comes, so only the stuck-pending automation ends it (here with a 20 s window)."""
    import time

    from prefect.states import Pending, Running

    from flows.notify import STUCK_AUTOMATION_NAME, ensure_automation, stuck_pending_automation

    automation_id = ensure_automation(stuck_pending_automation(seconds=20))
    assert _read_automation(id=automation_id).name == STUCK_AUTOMATION_NAME
    try:
        deployment = client.create_deployment(
            client.create_flow_from_name("monitor"),
            f"stuck-{uuid4().hex[:8]}",
            work_queue_name=f"nobody-{uuid4().hex[:8]}",
        )
        stuck = client.create_flow_run_from_deployment(deployment, parameters={})
        started = client.create_flow_run_from_deployment(deployment, parameters={})
        for run in (stuck, started):
            assert (
                client.set_flow_run_state(run.id, Pending(name="Submitting")).status.value
                == "ACCEPT"
            )
        assert (
            client.set_flow_run_state(started.id, Running()).status.value == "ACCEPT"
        )  # moved on: not stuck

        deadline = time.monotonic() + 150
        while (
            client.read_flow_run(stuck.id).state_type.value != "CRASHED"
            and time.monotonic() < deadline
        ):
            time.sleep(2)
        state = client.read_flow_run(stuck.id).state
        assert state.type.value == "CRASHED", f"a run Pending for 20+ s was not crashed: {state}"
        assert "stuck-pending" in (state.message or "")
        assert client.read_flow_run(started.id).state_type.value == "RUNNING"
    finally:
        _read_automation(id=automation_id).delete()

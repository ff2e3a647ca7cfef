"""Orphaned flow runs (mloop.platform.orphans): the pure choice, then the real thing on the session server.

On the session Prefect server (a real 3.9 server, no worker polls the queue): runs of a deployment in
the ``mloop-local`` pool are driven Pending -> Running with a recorded ``infrastructure_pid``, as the
worker drives them. A run whose process is gone is set Crashed; one whose process runs, one of
another pool, and one just started are left alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from mloop.core.settings import Settings
from mloop.platform.orphans import (
    ORPHAN_GRACE_SECONDS,
    UNSTARTED_GRACE_SECONDS,
    crash_orphaned_runs,
    orphaned_runs,
    orphaned_subflows,
    run_pid,
)
from mloop.platform.services import WORK_POOL

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
OLD = (NOW - timedelta(seconds=ORPHAN_GRACE_SECONDS + 1)).isoformat()


def _run(state: str = "RUNNING", pid: object = "4242", since: str = OLD) -> dict[str, Any]:
    return {
        "id": "r1",
        "name": "brave-fox",
        "state_type": state,
        "infrastructure_pid": pid,
        "state": {"timestamp": since},
    }


def _dead(pid: int) -> datetime | None:
    del pid
    return None


def _started(when: datetime) -> Callable[[int], datetime | None]:
    return lambda pid: when if pid == 4242 else None


def test_run_pid_reads_a_bare_pid_or_host_and_pid() -> None:
    assert run_pid("4242") == 4242
    assert run_pid("worker-host:4242") == 4242
    assert run_pid(None) is None
    assert run_pid("") is None
    assert run_pid("pod/abc") is None  # another worker type's identifier: not a local process


def test_a_running_run_whose_process_is_gone_is_an_orphan() -> None:
    [orphan] = orphaned_runs([_run()], _dead, NOW)
    assert (orphan.run_id, orphan.state, orphan.pid) == ("r1", "RUNNING", 4242)
    assert orphaned_runs(
        [_run("PENDING")], _dead, NOW
    )  # the worker died after starting its process


def test_a_run_whose_process_runs_is_no_orphan() -> None:
    assert orphaned_runs([_run()], _started(NOW - timedelta(hours=1)), NOW) == []
    assert (
        orphaned_runs([_run("PENDING")], _started(NOW), NOW) == []
    )  # the worker starts it after Pending


def test_a_running_run_whose_pid_names_a_younger_process_is_an_orphan() -> None:
    """pids come round (pid_max 32768): a process that started after the run went Running is another one."""
    running_since = NOW - timedelta(seconds=ORPHAN_GRACE_SECONDS + 1)
    [orphan] = orphaned_runs([_run()], _started(running_since + timedelta(seconds=60)), NOW)
    assert orphan.pid == 4242 and "pid 4242" in orphan.message
    assert (
        orphaned_runs([_run()], _started(running_since + timedelta(seconds=1)), NOW) == []
    )  # within the slack


def test_a_run_in_another_state_is_no_orphan() -> None:
    for state in ("COMPLETED", "CRASHED", "SCHEDULED", "CANCELLING"):
        assert orphaned_runs([_run(state)], _dead, NOW) == [], state


def test_a_running_run_without_a_recorded_process_is_no_orphan() -> None:
    assert (
        orphaned_runs([_run(pid=None)], _dead, NOW) == []
    )  # nothing to look at: the zombie automation's case


def test_a_pending_run_without_a_process_for_long_is_an_orphan() -> None:
    """Its worker died between Pending and starting the process (the stuck-pending automation's case,
    when the server lost its events)."""
    assert (
        orphaned_runs([_run("PENDING", pid=None)], _dead, NOW) == []
    )  # 31 s: a worker may still start it
    long_ago = (NOW - timedelta(seconds=UNSTARTED_GRACE_SECONDS + 1)).isoformat()
    [orphan] = orphaned_runs([_run("PENDING", pid=None, since=long_ago)], _dead, NOW)
    assert orphan.pid is None and "no process started" in orphan.message


def test_a_run_fresh_in_its_state_is_no_orphan_yet() -> None:
    fresh = (NOW - timedelta(seconds=ORPHAN_GRACE_SECONDS - 1)).isoformat()
    assert orphaned_runs([_run(since=fresh)], _dead, NOW) == []
    assert orphaned_runs([_run(since="not a time")], _dead, NOW) == []


def _subflow(state: str = "RUNNING") -> dict[str, Any]:
    return {
        "id": "s1",
        "name": "calm-owl",
        "state_type": state,
        "parent_task_run_id": "t1",
        "state": {"timestamp": OLD},
    }


def _parent(state: str, since: str = OLD) -> dict[str, Any]:
    return {"id": "p1", "name": "brave-fox", "state_type": state, "state": {"timestamp": since}}


def test_a_subflow_whose_parent_ended_is_an_orphan() -> None:
    for ended in ("CRASHED", "FAILED", "COMPLETED", "CANCELLED"):
        [orphan] = orphaned_subflows([_subflow()], {"s1": _parent(ended)}, NOW)
        assert (
            orphan.run_id == "s1"
            and f"inside flow run brave-fox, which ended ({ended.lower()})" in orphan.message
        )
    assert orphaned_subflows([_subflow("PENDING")], {"s1": _parent("CRASHED")}, NOW)


def test_a_subflow_whose_parent_runs_or_just_ended_is_no_orphan() -> None:
    just = (NOW - timedelta(seconds=ORPHAN_GRACE_SECONDS - 1)).isoformat()
    assert orphaned_subflows([_subflow()], {"s1": _parent("RUNNING")}, NOW) == []
    assert orphaned_subflows([_subflow()], {"s1": _parent("CRASHED", since=just)}, NOW) == []
    assert orphaned_subflows([_subflow()], {}, NOW) == []  # parent unknown: left alone
    assert orphaned_subflows([_subflow("COMPLETED")], {"s1": _parent("CRASHED")}, NOW) == []
    deployed = {
        **_subflow(),
        "deployment_id": "d1",
    }  # run_deployment's subflow: a process of its own
    assert orphaned_subflows([deployed], {"s1": _parent("COMPLETED")}, NOW) == []


def test_team_mode_checks_nothing(tmp_path: Any) -> None:
    """A team's runs may run on other hosts, whose processes this machine cannot see."""
    team = Settings(home=tmp_path / "home", artifacts_uri="s3://bucket/mloop", prefect_port=1)
    assert (
        crash_orphaned_runs(team, NOW) == []
    )  # returns before any request (port 1 answers nothing)


# ---------------------------------------------------------------- on the session Prefect server


@pytest.fixture
def client(prefect_server: Any) -> Iterator[Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        yield c


def _running_run(client: Any, deployment: UUID, pid: int) -> UUID:
    """A run driven as the worker drives it: Pending, its process recorded, Running."""
    from prefect.states import Pending, Running

    run = client.create_flow_run_from_deployment(deployment, parameters={})
    client.set_flow_run_state(run.id, Pending())
    client.update_flow_run(run.id, infrastructure_pid=str(pid))
    client.set_flow_run_state(run.id, Running())
    return UUID(str(run.id))


def _subflow_run(client: Any, parent: UUID) -> UUID:
    """A Running subflow of ``parent``, as the engine records one: a task run of the parent, then a flow
    run whose parent task run it is (no deployment, no pid)."""
    from prefect import flow, task
    from prefect.states import Running

    @task(name="orphans-parent-task")
    def parent_task() -> None: ...

    @flow(name=f"orphans-sub-{uuid4().hex[:6]}")
    def child() -> None: ...

    task_run = client.create_task_run(parent_task, flow_run_id=parent, dynamic_key=uuid4().hex)
    run = client.create_flow_run(child, parent_task_run_id=task_run.id)
    client.set_flow_run_state(run.id, Running())
    return UUID(str(run.id))


def _deployment(client: Any, pool: str) -> UUID:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    try:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    except ObjectAlreadyExists:
        pass
    flow_id = client.create_flow_from_name(f"orphans-{uuid4().hex[:6]}")
    return UUID(
        str(client.create_deployment(flow_id, f"orphans-{uuid4().hex[:8]}", work_pool_name=pool))
    )


@pytest.mark.integration
def test_the_watchdog_crashes_the_runs_whose_process_died(tmp_path: Any, client: Any) -> None:
    settings = Settings(
        home=tmp_path / "home", prefect_port=int(os.environ["MLOOP_TEST_PREFECT_PORT"])
    )
    ours, elsewhere = (
        _deployment(client, WORK_POOL),
        _deployment(client, f"other-{uuid4().hex[:6]}"),
    )
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process that ran and was reaped: its pid names nothing now
    orphan = _running_run(client, ours, gone.pid)
    alive = _running_run(client, ours, os.getpid())
    other_pool = _running_run(client, elsewhere, gone.pid)

    assert (
        crash_orphaned_runs(settings, datetime.now(UTC)) == []
    )  # all just started: within the grace
    later = datetime.now(UTC) + timedelta(seconds=ORPHAN_GRACE_SECONDS + 5)
    marked = crash_orphaned_runs(settings, later)
    assert [m.run_id for m in marked] == [str(orphan)]
    crashed = client.read_flow_run(orphan).state
    assert crashed.type.value == "CRASHED" and f"pid {gone.pid}" in crashed.message
    assert client.read_flow_run(alive).state.type.value == "RUNNING"
    assert client.read_flow_run(other_pool).state.type.value == "RUNNING"
    assert crash_orphaned_runs(settings, later) == []  # done once: a Crashed run is no orphan

    # Its subflow (run in its process, no pid of its own) goes next, once the parent has been Crashed as long.
    subflow = _subflow_run(client, orphan)
    assert crash_orphaned_runs(settings, datetime.now(UTC)) == []  # the parent was Crashed just now
    much_later = datetime.now(UTC) + timedelta(seconds=ORPHAN_GRACE_SECONDS + 5)
    assert [m.run_id for m in crash_orphaned_runs(settings, much_later)] == [str(subflow)]
    state = client.read_flow_run(subflow).state
    assert (
        state.type.value == "CRASHED"
        and f"inside flow run {client.read_flow_run(orphan).name}" in state.message
    )
    assert client.read_flow_run(alive).state.type.value == "RUNNING"

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
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from mloop.core.settings import Settings
from mloop.platform.orphans import ORPHAN_GRACE_SECONDS, crash_orphaned_runs, orphaned_runs, run_pid
from mloop.platform.services import WORK_POOL

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
OLD = (NOW - timedelta(seconds=ORPHAN_GRACE_SECONDS + 1)).isoformat()


def _run(state: str = "RUNNING", pid: object = "4242", since: str = OLD) -> dict[str, Any]:
    return {"id": "r1", "name": "brave-fox", "state_type": state, "infrastructure_pid": pid,
            "state": {"timestamp": since}}


def _dead(pid: int) -> bool:
    del pid
    return False


def test_run_pid_reads_a_bare_pid_or_host_and_pid() -> None:
    assert run_pid("4242") == 4242
    assert run_pid("worker-host:4242") == 4242
    assert run_pid(None) is None
    assert run_pid("") is None
    assert run_pid("pod/abc") is None  # another worker type's identifier: not a local process


def test_a_running_run_whose_process_is_gone_is_an_orphan() -> None:
    [orphan] = orphaned_runs([_run()], _dead, NOW)
    assert (orphan.run_id, orphan.state, orphan.pid) == ("r1", "RUNNING", 4242)
    assert orphaned_runs([_run("PENDING")], _dead, NOW)  # the worker died after starting its process


def test_a_run_whose_process_runs_is_no_orphan() -> None:
    assert orphaned_runs([_run()], lambda pid: pid == 4242, NOW) == []


def test_a_run_in_another_state_is_no_orphan() -> None:
    for state in ("COMPLETED", "CRASHED", "SCHEDULED", "CANCELLING"):
        assert orphaned_runs([_run(state)], _dead, NOW) == [], state


def test_a_run_without_a_recorded_process_is_no_orphan() -> None:
    assert orphaned_runs([_run(pid=None)], _dead, NOW) == []  # the stuck-pending automation's case


def test_a_run_fresh_in_its_state_is_no_orphan_yet() -> None:
    fresh = (NOW - timedelta(seconds=ORPHAN_GRACE_SECONDS - 1)).isoformat()
    assert orphaned_runs([_run(since=fresh)], _dead, NOW) == []
    assert orphaned_runs([_run(since="not a time")], _dead, NOW) == []


def test_team_mode_checks_nothing(tmp_path: Any) -> None:
    """A team's runs may run on other hosts, whose processes this machine cannot see."""
    team = Settings(home=tmp_path / "home", artifacts_uri="s3://bucket/mloop", prefect_port=1)
    assert crash_orphaned_runs(team, NOW) == []  # returns before any request (port 1 answers nothing)


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


def _deployment(client: Any, pool: str) -> UUID:
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    try:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    except ObjectAlreadyExists:
        pass
    flow_id = client.create_flow_from_name(f"orphans-{uuid4().hex[:6]}")
    return UUID(str(client.create_deployment(flow_id, f"orphans-{uuid4().hex[:8]}", work_pool_name=pool)))


@pytest.mark.integration
def test_the_watchdog_crashes_the_runs_whose_process_died(tmp_path: Any, client: Any) -> None:
    settings = Settings(home=tmp_path / "home", prefect_port=int(os.environ["MLOOP_TEST_PREFECT_PORT"]))
    ours, elsewhere = _deployment(client, WORK_POOL), _deployment(client, f"other-{uuid4().hex[:6]}")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process that ran and was reaped: its pid names nothing now
    orphan = _running_run(client, ours, gone.pid)
    alive = _running_run(client, ours, os.getpid())
    other_pool = _running_run(client, elsewhere, gone.pid)

    assert crash_orphaned_runs(settings, datetime.now(UTC)) == []  # all just started: within the grace
    later = datetime.now(UTC) + timedelta(seconds=ORPHAN_GRACE_SECONDS + 5)
    marked = crash_orphaned_runs(settings, later)
    assert [m.run_id for m in marked] == [str(orphan)]
    crashed = client.read_flow_run(orphan).state
    assert crashed.type.value == "CRASHED" and f"pid {gone.pid}" in crashed.message
    assert client.read_flow_run(alive).state.type.value == "RUNNING"
    assert client.read_flow_run(other_pool).state.type.value == "RUNNING"
    assert crash_orphaned_runs(settings, later) == []  # done once: a Crashed run is no orphan

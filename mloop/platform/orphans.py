"""Orphaned flow runs: a run left Running or Pending whose process is gone is marked Crashed.

The zombie automation of :mod:`flows.notify` does this from events (no heartbeat for 90 s). Events
travel through the Prefect server's in-memory broker, though: when the server is killed between a
run's state change and the trigger's evaluation (or while the automation's action is queued), the
bucket never opens or its action is lost, and the run stays Running forever, holding its
deployment's concurrency slot. The watchdog therefore also checks the process itself, every
``settings.reconcile_seconds``: the worker records each run's process id (``infrastructure_pid``),
and a run of this platform's work pool whose process no longer exists on this machine, for more
than :data:`ORPHAN_GRACE_SECONDS` in its state, is set Crashed. Its Crashed state then triggers
the recover flow as any zombie's does.

A subflow (``retrain`` runs ``train`` in its own process) has no process of its own to look at: it
is an orphan when its parent run has ended, Crashed by either check, for as long. And a recorded pid
can come round again (``pid_max`` is 32768 on small machines, and a test session or a busy host starts
thousands of processes): a Running run's own process started before the run went Running (the flow
process sets that state itself), so a live process that started later is another one.

Only single-machine platforms are checked: in team mode a run's process may live on another
host, where this machine cannot see it (the zombie automation still covers those runs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from mloop.core.processes import process_started
from mloop.core.settings import Settings
from mloop.core.team import is_team
from mloop.platform.client import PrefectApi, parse_time
from mloop.platform.services import WORK_POOL

log = logging.getLogger("mloop.watchdog")

ORPHAN_STATES = ("RUNNING", "PENDING")
ENDED_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
ORPHAN_GRACE_SECONDS = 30.0
"""A run must have been in its state this long: the worker records the pid just after starting the
process, and a run that just ended may still be reporting its final state."""
UNSTARTED_GRACE_SECONDS = 180.0
"""A Pending run with no recorded process for this long was handed to a worker that died before it
started the process (the stuck-pending automation's limit, for when its events were lost)."""
START_SLACK_SECONDS = 5.0
"""How much later than its Running state a run's process may seem to start (clock ticks, rounding)."""
ORPHAN_MESSAGE = (
    "Crashed by the mloop watchdog: its process (pid {pid}) is gone, yet the run was still {state} "
    "(its worker or the Prefect server was killed while it ran)"
)
UNSTARTED_MESSAGE = (
    "Crashed by the mloop watchdog: Pending for {seconds:.0f} s with no process started (its worker died "
    "while it submitted the run)"
)
SUBFLOW_MESSAGE = (
    "Crashed by the mloop watchdog: it ran inside flow run {parent}, which ended ({parent_state}) "
    "while this run was still {state}"
)

ProcessStart = Callable[[int], datetime | None]
"""When the process of a pid started; None when no process has that pid."""


@dataclass(frozen=True)
class Orphan:
    """One flow run that cannot go on: its process is gone, or (a subflow) its parent run ended."""

    run_id: str
    name: str
    state: str
    message: str
    pid: int | None = None


def run_pid(infrastructure_pid: object) -> int | None:
    """The process id a worker recorded for a run (``"1234"``, or ``"host:1234"``); None when absent. Pure."""
    text = str(infrastructure_pid or "").rsplit(":", 1)[-1].strip()
    return int(text) if text.isdigit() else None


def _state_since(run: Mapping[str, Any]) -> datetime | None:
    return parse_time((run.get("state") or {}).get("timestamp") or run.get("updated"))


def own_process_runs(state: str, since: datetime, started: datetime | None) -> bool:
    """True when the process recorded for a run in ``state`` since ``since`` still runs: one exists, and
    for a Running run it started before that state (a younger one holds a reused pid). Pure."""
    if started is None:
        return False
    return state != "RUNNING" or started <= since + timedelta(seconds=START_SLACK_SECONDS)


def orphaned_runs(
    runs: Iterable[Mapping[str, Any]],
    started: ProcessStart,
    now: datetime,
    grace: float = ORPHAN_GRACE_SECONDS,
    unstarted_grace: float = UNSTARTED_GRACE_SECONDS,
) -> list[Orphan]:
    """The runs (Prefect API flow runs) still Running or Pending whose recorded process no longer runs,
    in that state for at least ``grace`` seconds, and those Pending with no process recorded for
    ``unstarted_grace`` seconds. Pure (``started`` is the one look at the machine)."""
    out: list[Orphan] = []
    for run in runs:
        state = str(run.get("state_type") or "")
        pid = run_pid(run.get("infrastructure_pid"))
        since = _state_since(run)
        if state not in ORPHAN_STATES or since is None:
            continue
        age = (now - since).total_seconds()
        if pid is None:
            if state == "PENDING" and age >= unstarted_grace:
                out.append(
                    Orphan(
                        str(run["id"]),
                        str(run.get("name", "")),
                        state,
                        UNSTARTED_MESSAGE.format(seconds=unstarted_grace),
                    )
                )
            continue
        if age < grace or own_process_runs(state, since, started(pid)):
            continue
        message = ORPHAN_MESSAGE.format(pid=pid, state=state.lower())
        out.append(Orphan(str(run["id"]), str(run.get("name", "")), state, message, pid))
    return out


def orphaned_subflows(
    subflows: Iterable[Mapping[str, Any]],
    parents: Mapping[str, Mapping[str, Any]],
    now: datetime,
    grace: float = ORPHAN_GRACE_SECONDS,
) -> list[Orphan]:
    """The in-process subflow runs still Running or Pending whose parent flow run (``parents``: by
    subflow run id) has ended, at least ``grace`` seconds ago. A subflow with a deployment (started by
    ``run_deployment``) runs in a process of its own, which :func:`orphaned_runs` checks. Pure."""
    out: list[Orphan] = []
    for run in subflows:
        state = str(run.get("state_type") or "")
        parent = parents.get(str(run["id"]))
        if state not in ORPHAN_STATES or parent is None or run.get("deployment_id"):
            continue
        parent_state = str(parent.get("state_type") or "")
        ended = _state_since(parent)
        if (
            parent_state not in ENDED_STATES
            or ended is None
            or (now - ended).total_seconds() < grace
        ):
            continue
        message = SUBFLOW_MESSAGE.format(
            parent=parent.get("name", parent.get("id")),
            parent_state=parent_state.lower(),
            state=state.lower(),
        )
        out.append(Orphan(str(run["id"]), str(run.get("name", "")), state, message))
    return out


def _subflow_parents(api: PrefectApi, subflows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each subflow run's parent flow run (by the subflow's id), through its parent task run: two requests
    whatever the number of subflows (a task run or flow run deleted since is simply absent)."""
    task_runs = api.task_runs_by_id(sorted({str(run["parent_task_run_id"]) for run in subflows}))
    flow_run_of = {str(t["id"]): str(t["flow_run_id"]) for t in task_runs if t.get("flow_run_id")}
    parent_run = {
        str(run["id"]): flow_run_of[str(run["parent_task_run_id"])]
        for run in subflows
        if str(run["parent_task_run_id"]) in flow_run_of
    }
    found = (
        {str(r["id"]): r for r in api.flow_runs_by_id(sorted(set(parent_run.values())))}
        if parent_run
        else {}
    )
    return {child: found[parent] for child, parent in parent_run.items() if parent in found}


def crash_orphaned_runs(settings: Settings, now: datetime) -> list[Orphan]:
    """Mark this platform's orphaned runs Crashed (single machine only); returns those it marked."""
    if is_team(settings):
        return []
    api = PrefectApi.of(settings, deadline=5.0)
    orphans = orphaned_runs(
        api.flow_runs_in_states(ORPHAN_STATES, pool=WORK_POOL), process_started, now
    )
    subflows = api.subflow_runs_in_states(ORPHAN_STATES)
    if subflows:
        orphans += orphaned_subflows(subflows, _subflow_parents(api, subflows), now)
    marked: list[Orphan] = []
    for orphan in orphans:
        status = api.set_flow_run_state(orphan.run_id, "CRASHED", orphan.message)
        log.warning(
            "flow run %s (%s) set Crashed (%s): %s",
            orphan.name,
            orphan.run_id,
            status,
            orphan.message,
        )
        if status == "ACCEPT":
            marked.append(orphan)
    return marked

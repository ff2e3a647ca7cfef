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

Only single-machine platforms are checked: in team mode a run's process may live on another
host, where this machine cannot see it (the zombie automation still covers those runs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mloop.core.processes import pid_alive
from mloop.core.settings import Settings
from mloop.core.team import is_team
from mloop.platform.client import PrefectApi, parse_time
from mloop.platform.services import WORK_POOL

log = logging.getLogger("mloop.watchdog")

ORPHAN_STATES = ("RUNNING", "PENDING")
ORPHAN_GRACE_SECONDS = 30.0
"""A run must have been in its state this long: the worker records the pid just after starting the
process, and a run that just ended may still be reporting its final state."""
ORPHAN_MESSAGE = (
    "Crashed by the mloop watchdog: its process (pid {pid}) is gone, yet the run was still {state} "
    "(its worker or the Prefect server was killed while it ran)"
)


@dataclass(frozen=True)
class Orphan:
    """One flow run whose process is gone."""

    run_id: str
    name: str
    state: str
    pid: int


def run_pid(infrastructure_pid: object) -> int | None:
    """The process id a worker recorded for a run (``"1234"``, or ``"host:1234"``); None when absent. Pure."""
    text = str(infrastructure_pid or "").rsplit(":", 1)[-1].strip()
    return int(text) if text.isdigit() else None


def orphaned_runs(
    runs: Iterable[Mapping[str, Any]],
    alive: Callable[[int], bool],
    now: datetime,
    grace: float = ORPHAN_GRACE_SECONDS,
) -> list[Orphan]:
    """The runs (Prefect API flow runs) still Running or Pending whose recorded process is not ``alive``,
    in that state for at least ``grace`` seconds. Pure (``alive`` is the one look at the machine)."""
    out: list[Orphan] = []
    for run in runs:
        state = str(run.get("state_type") or "")
        pid = run_pid(run.get("infrastructure_pid"))
        since = parse_time((run.get("state") or {}).get("timestamp") or run.get("updated"))
        if state not in ORPHAN_STATES or pid is None or since is None:
            continue
        if (now - since).total_seconds() < grace or alive(pid):
            continue
        out.append(Orphan(str(run["id"]), str(run.get("name", "")), state, pid))
    return out


def crash_orphaned_runs(settings: Settings, now: datetime) -> list[Orphan]:
    """Mark this platform's orphaned runs Crashed (single machine only); returns those it marked."""
    if is_team(settings):
        return []
    api = PrefectApi.of(settings, deadline=5.0)
    runs = api.flow_runs_in_states(ORPHAN_STATES, pool=WORK_POOL)
    marked: list[Orphan] = []
    for orphan in orphaned_runs(runs, pid_alive, now):
        status = api.set_flow_run_state(
            orphan.run_id, "CRASHED", ORPHAN_MESSAGE.format(pid=orphan.pid, state=orphan.state.lower())
        )
        log.warning("flow run %s (%s) was %s with its process %d gone: set Crashed (%s)",
                    orphan.name, orphan.run_id, orphan.state, orphan.pid, status)
        if status == "ACCEPT":
            marked.append(orphan)
    return marked

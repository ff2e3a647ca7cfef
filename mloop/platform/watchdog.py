"""The platform's watchdog (``python -m mloop.platform.watchdog``): supervision and desired state.

``mloop up`` starts it last as the managed service ``watchdog`` (when ``settings.watchdog``);
``mloop down`` stops it first, so it never restarts what ``down`` is stopping. A watchdog that
dies is restarted by the next ``mloop up``. One instance per MLOOP_HOME (``run/watchdog.instance``
lock). Everything it does is one line in ``run/watchdog.log``.

Every ``settings.watchdog_seconds`` (a **cycle**, cheap: pid files, psutil, a few health GETs):

1. **Supervision.** Each service ``up`` runs is judged (:func:`judge`): a pid file naming a dead
   process, or a live one that failed :data:`UNHEALTHY_CHECKS` health checks in a row once past
   its start-up window, is dead. The Prefect server, MLflow, the webhook and the workers (as
   many as the last ``up`` asked for, ``run/prefect-workers.wanted``) must always run; ``serve``
   is supervised once it was started (its pid file exists) and restarted only when a champion
   exists. A dead service is restarted by the code ``up`` uses
   (:func:`mloop.platform.services.ensure_services`: under the service's lock, its leftover
   processes, found by their ``MLOOP_SERVICE`` marker, stopped first). A restart that fails is
   retried with a growing delay (:func:`retry_delay`).
2. **Periodic jobs** (:func:`periodic_jobs`): the reconcile step every
   ``settings.reconcile_seconds``, the delivery of the events outbox
   (:func:`mloop.core.outbox.deliver_pending`) every cycle, and, every
   ``settings.reconcile_seconds``, the flow runs left Running or Pending with their process gone
   set Crashed (:mod:`mloop.platform.orphans`).

**Reconcile** (:meth:`Watchdog.reconcile`; also on ``up`` and right after any serving restart),
**per model**: the registry's champions (MLflow alias ``champion``), what the service serves
(``GET /models``: every model it holds, loaded or not) and the active deploy runs go into one pure
decision per model (:func:`decide`). A model whose served version is not its champion, or that is
not served at all, gets the ``deploy/local`` deployment for THAT model (a flow run visible in the
Prefect UI; it rolls that model in beside the others), unless a deploy run for it is already
scheduled, pending or running, or its champion changed less than :data:`EVENT_GRACE_SECONDS` ago
by an event whose own deploy run has not been created yet. While serving is down, one deploy run
(the first model by name) is enough: it starts the service with every champion. A divergence must
be seen twice, one cycle apart (:func:`confirmed`, per model), before it acts. A served model
without a champion is left alone. The heavy imports (MLflow, for the registry) happen in this
step only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import psutil

from mloop.core import events
from mloop.core.files import try_lock
from mloop.core.outbox import deliver_pending
from mloop.core.processes import http_ok, read_pid, service_lock
from mloop.core.settings import Settings
from mloop.platform.client import PrefectApi, ServingClient, parse_time
from mloop.platform.orphans import crash_orphaned_runs
from mloop.platform.services import (
    HEARTBEAT_FILE,
    WORKER_SERVICE,
    ServiceSpec,
    ensure_services,
    health_urls,
    serve_spec,
    service_specs,
    stop_service_pid,
    urls,
    wanted_workers,
    worker_index,
    worker_services,
)
from serving.control.fleet import (  # light: MLflow only inside champion_versions
    champion_versions,
    served_versions,
    to_deploy,
)

log = logging.getLogger("mloop.watchdog")

REQUIRED: tuple[str, ...] = ("prefect-server", "mlflow", "webhook", WORKER_SERVICE)
"""Services that always run while the platform is up (restarted even without a pid file); so do the
``prefect-worker-k`` the last ``up`` asked for (:func:`watched_services`)."""
SERVE = "serve"
WATCHED: tuple[str, ...] = (*REQUIRED, SERVE)
NEEDS: dict[str, tuple[str, ...]] = {WORKER_SERVICE: ("prefect-server",)}
"""Services that cannot start while another is down: a worker (each ``prefect-worker-k`` too) waits up to 90 s
for its server to answer, which would hold the whole cycle (and the server's own restart) back."""
UNHEALTHY_CHECKS = 6
"""Failed health checks in a row (past the start-up window) after which a live service counts as dead."""
STARTUP_SECONDS = 180.0
"""A process younger than this is starting: its failed health checks are not counted."""
DEPLOYMENT = "deploy/local"
"""The deployment the reconcile step runs (parameter ``name``): the same one a promotion event triggers."""
DEPLOY_FLOW = "deploy"
ACTIVE_STATES = frozenset({"SCHEDULED", "PENDING", "RUNNING"})
"""Flow-run state types of a deploy run still on its way (a queued run is SCHEDULED)."""
EVENT_GRACE_SECONDS = 60.0
"""A champion moved by a promotion/rollback event this recent gets its deploy from that event."""
RECONCILE_REQUEST = "reconcile.request"
"""Under MLOOP_HOME/run: ``up`` creates it to ask a running watchdog for a reconcile now."""
INSTANCE_LOCK = "watchdog.instance"


# ---------------------------------------------------------------- supervision: pure parts


@dataclass(frozen=True)
class Observation:
    """One service as one cycle saw it."""

    name: str
    has_pid_file: bool
    alive: bool
    healthy: bool
    """The health check answered (True for services without a cheap check: the worker)."""
    age: float = 0.0
    """Seconds the process has run (0 when not alive)."""
    required: bool = True
    """False for ``serve``: without a pid file it is not meant to run (no champion yet, or stopped)."""


@dataclass(frozen=True)
class Verdict:
    """What to do about one service after a cycle."""

    restart: bool
    reason: str
    misses: int = 0
    """Failed health checks in a row so far (carried to the next cycle)."""


def judge(
    obs: Observation,
    misses: int,
    *,
    max_misses: int = UNHEALTHY_CHECKS,
    startup: float = STARTUP_SECONDS,
) -> Verdict:
    """Whether ``obs`` is a dead service to restart. Pure.

    Dead: no pid file (a required service), a pid file naming a dead process, or a live process
    that failed ``max_misses`` health checks in a row once older than ``startup`` seconds.
    """
    if not obs.has_pid_file:
        return Verdict(True, "no pid file") if obs.required else Verdict(False, "not started")
    if not obs.alive:
        return Verdict(True, "process gone")
    if obs.healthy:
        return Verdict(False, "ok")
    if obs.age < startup:
        return Verdict(False, "starting", misses)
    misses += 1
    if misses >= max_misses:
        return Verdict(True, f"unhealthy for {misses} checks in a row", misses)
    return Verdict(False, f"unhealthy ({misses}/{max_misses})", misses)


def waiting_for(name: str, down: AbstractSet[str]) -> bool:
    """True when a service ``name`` needs (:data:`NEEDS`; every worker what the first needs) is down: it is
    not restarted yet. Pure."""
    needs = NEEDS.get(WORKER_SERVICE if worker_index(name) is not None else name, ())
    return any(need in down for need in needs)


def watched_services(workers: int) -> tuple[str, ...]:
    """The services a cycle supervises, in order, with ``workers`` worker services (the last ``up``'s count). Pure."""
    return tuple(
        n
        for name in WATCHED
        for n in (worker_services(workers) if name == WORKER_SERVICE else (name,))
    )


def retry_delay(failures: int, base: float, cap: float = 300.0) -> float:
    """Seconds before another restart attempt after ``failures`` failed ones: base, 2x, 4x ... capped. Pure."""
    return float(min(base * 2 ** max(failures - 1, 0), cap))


# ---------------------------------------------------------------- reconcile: pure parts


@dataclass(frozen=True)
class Served:
    """One model the prediction service reports it serves (an entry of ``GET /models``)."""

    name: str
    version: str


ServingState = frozenset[Served] | Literal["down", "starting"]
"""What the service serves (one :class:`Served` per model; empty: it serves nothing yet), or ``down``:
no live serve process; ``starting``: a live one that does not answer ``/models`` yet."""


@dataclass(frozen=True)
class Decision:
    """The reconcile step's verdict for one model: ``none`` (in sync or nothing to serve), ``wait``,
    or ``deploy`` ``model``."""

    action: Literal["none", "wait", "deploy"]
    model: str | None
    reason: str


def decide(
    champions: Mapping[str, str],
    serving: ServingState,
    active_deploys: AbstractSet[str],
    awaiting_event: AbstractSet[str] = frozenset(),
) -> list[Decision]:
    """Make what is served equal to each champion: one decision per model with a champion, by name. Pure.

    ``champions``: registered model -> champion version. A model is deployed unless it is served at
    its champion version already, the service is still starting, a deploy run for it is active, or
    its champion changed recently by an event (its own deploy run is on the way). Models never
    affect each other's decision, except while serving is down: then only the first model by name
    is deployed (its deploy starts the service with every champion), the others wait for it.
    """
    if not champions:
        return [Decision("none", None, "no champion")]
    if serving == "starting":
        return [Decision("wait", name, "serving is starting") for name in sorted(champions)]
    served = {} if serving == "down" else {s.name: s.version for s in serving}
    diverged = to_deploy(champions, served)
    on_its_way = set(active_deploys) | set(awaiting_event)
    # While serving is down, one deploy (already on its way, or the first by name) starts it for all.
    starter = (
        next((n for n in sorted(champions) if n in on_its_way), min(champions))
        if serving == "down"
        else None
    )
    out: list[Decision] = []
    for name in sorted(champions):
        if name not in diverged:
            out.append(
                Decision("none", name, f"serving {name} version {champions[name]} (the champion)")
            )
        elif name in active_deploys:
            out.append(Decision("wait", name, f"a deploy run of {name} is already active"))
        elif name in awaiting_event:
            out.append(
                Decision(
                    "wait",
                    name,
                    f"the champion of {name} just changed: its event's deploy is on the way",
                )
            )
        elif starter is not None and name != starter:
            out.append(
                Decision(
                    "wait",
                    name,
                    f"serving is down: the deploy of {starter} starts it with every champion",
                )
            )
        elif serving == "down":
            out.append(
                Decision(
                    "deploy",
                    name,
                    f"serving is down, champion of {name} is version {champions[name]}",
                )
            )
        else:
            out.append(Decision("deploy", name, diverged[name]))
    return out


def summary(decisions: Sequence[Decision]) -> str:
    """One line for ``up``/the log: every decision's reason. Pure."""
    return "; ".join(d.reason for d in decisions)


def confirmed(previous: Decision | None, current: Decision) -> bool:
    """Act on ``current`` only when the previous check saw the same divergence. Pure.

    A promotion moves the alias a moment before it emits its event: one check alone may fall in
    between.
    """
    return current.action == "deploy" and previous == current


def active_deploy_models(runs: Iterable[Mapping[str, Any]]) -> set[str]:
    """Models (parameter ``name``) of deploy flow runs still scheduled, pending or running. Pure."""
    return {
        str(r.get("parameters", {}).get("name"))
        for r in runs
        if r.get("state_type") in ACTIVE_STATES and r.get("parameters", {}).get("name")
    }


def awaiting_event_deploy(
    found: Iterable[Mapping[str, Any]],
    runs: Iterable[Mapping[str, Any]],
    now: datetime,
    grace: float = EVENT_GRACE_SECONDS,
) -> set[str]:
    """Models whose promotion/rollback event occurred less than ``grace`` s ago with no deploy run since. Pure.

    ``found``: events (``resource``, ``occurred``); ``runs``: deploy flow runs (``parameters.name``,
    ``created``). Such a model's deploy run is on its way (the event's trigger creates it in
    seconds); once a run was created after the event, the event no longer holds the reconcile back.
    """
    prefix = events.model_resource("")
    latest_run: dict[str, datetime] = {}
    for r in runs:
        name, created = (r.get("parameters") or {}).get("name"), parse_time(r.get("created"))
        if name and created is not None:
            latest_run[str(name)] = max(created, latest_run.get(str(name), created))
    out: set[str] = set()
    for e in found:
        resource = str((e.get("resource") or {}).get("prefect.resource.id", ""))
        occurred = parse_time(e.get("occurred"))
        if (
            not resource.startswith(prefix)
            or occurred is None
            or (now - occurred).total_seconds() >= grace
        ):
            continue
        model = resource[len(prefix) :]
        if model not in latest_run or latest_run[model] < occurred:
            out.add(model)
    return out


def served_state(
    models: Mapping[str, Mapping[str, Any]] | None, process_alive: bool
) -> ServingState:
    """The serving state from the service's models (:func:`serving.control.fleet.served_models`; None: no
    answer) and whether serve's process runs. Pure."""
    if models is not None:
        return frozenset(Served(name, version) for name, version in served_versions(models).items())
    return "starting" if process_alive else "down"


# ---------------------------------------------------------------- periodic jobs


@dataclass
class PeriodicJob:
    """A job the watchdog runs every ``every`` seconds (first at start); an exception is logged, not fatal."""

    name: str
    every: float
    run: Callable[[], object]
    due: float = 0.0
    """Monotonic time of the next run (0: at the first cycle)."""


def periodic_jobs(settings: Settings, reconcile: Callable[[], object]) -> list[PeriodicJob]:
    """The jobs of every watchdog cycle besides supervision (the hook list)."""
    jobs = [PeriodicJob("reconcile", settings.reconcile_seconds, reconcile)]
    # Events queued while the Prefect server was down (or lost between a write and its delivery).
    jobs.append(
        PeriodicJob(
            "outbox", settings.watchdog_seconds, lambda: deliver_pending(settings, deadline=2.0)
        )
    )
    # Runs whose process died while the events that would crash them were lost (mloop.platform.orphans).
    jobs.append(
        PeriodicJob(
            "orphans",
            settings.reconcile_seconds,
            lambda: crash_orphaned_runs(settings, datetime.now(UTC)),
        )
    )
    return jobs


# ---------------------------------------------------------------- the watchdog


@dataclass
class Watchdog:
    """The supervision and reconcile loop of one platform (state kept between cycles)."""

    settings: Settings
    misses: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    not_before: dict[str, float] = field(default_factory=dict)
    last_decisions: dict[str, Decision] = field(default_factory=dict)
    """Per model: the decision of the previous reconcile (a divergence acts when seen twice)."""
    serve_pid: int | None = None
    jobs: list[PeriodicJob] = field(default_factory=list)
    wanted: set[str] = field(default_factory=lambda: set(REQUIRED))
    """Services that must run: the required ones, and serve once it was seen running (a restart of it
    that fails drops its pid file, yet it stays wanted: retried with backoff, its orphans stopped)."""

    def __post_init__(self) -> None:
        self.run_dir = self.settings.state.run
        self.health = health_urls(self.settings)
        if not self.jobs:
            self.jobs = periodic_jobs(self.settings, self.reconcile)

    # -- one cycle

    def cycle(self) -> None:
        """Supervise every service, then run the periodic jobs that are due."""
        restarted_serve = False
        down: set[str] = set()
        for name in watched_services(wanted_workers(self.run_dir, self.settings.workers)):
            obs = self.observe(name)
            verdict = judge(obs, self.misses.get(name, 0))
            self.misses[name] = verdict.misses
            if waiting_for(name, down):
                continue  # its dependency is restarted first; this one at a later cycle
            if verdict.restart and time.monotonic() >= self.not_before.get(name, 0.0):
                restarted_serve |= self.restart(name, verdict.reason) and name == SERVE
                if name in self.failures:  # the restart failed: still down
                    down.add(name)
            elif verdict.restart or not obs.healthy:
                down.add(name)
        serve_pid = read_pid(self.run_dir, SERVE)
        if restarted_serve or (serve_pid is not None and self.serve_pid not in (None, serve_pid)):
            self.reconcile_soon()  # after any serving restart (ours, up's or the deploy flow's)
        self.serve_pid = serve_pid
        request = self.run_dir / RECONCILE_REQUEST
        if request.exists():
            request.unlink(missing_ok=True)
            self.reconcile_soon()
        self.run_due_jobs()

    def observe(self, name: str) -> Observation:
        """Pid file, process and health of one service (one GET at most)."""
        pid_file = self.run_dir / f"{name}.pid"
        pid = read_pid(self.run_dir, name)
        alive = pid is not None
        age = 0.0
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                age = time.time() - psutil.Process(pid).create_time()
        url = self.health.get(name)
        healthy = alive and (url is None or http_ok(url, timeout=3.0))
        if alive:
            self.wanted.add(name)
        required = (
            name in self.wanted or worker_index(name) is not None
        )  # only wanted workers are observed
        return Observation(name, pid_file.exists(), alive, healthy, age, required=required)

    def run_due_jobs(self) -> None:
        now = time.monotonic()
        for job in self.jobs:
            if now < job.due:
                continue
            job.due = now + job.every
            try:
                job.run()
            except Exception as exc:
                log.warning("%s failed: %s", job.name, exc)

    def reconcile_soon(self, delay: float = 0.0) -> None:
        """Make the reconcile job due in ``delay`` seconds (if it is not due earlier)."""
        for job in self.jobs:
            if job.name == "reconcile":
                job.due = min(job.due, time.monotonic() + delay)

    # -- supervision

    def restart(self, name: str, reason: str) -> bool:
        """Restart one dead service through :func:`ensure_services`; True when it was (re)started."""
        try:
            spec = self.spec(name)
            if spec is None and name != SERVE:
                log.info(
                    "%s is down (%s) but no longer wanted (the last `mloop up` asked for fewer workers)",
                    name,
                    reason,
                )
                return False
            if spec is None:
                log.info("serve is down (%s) and no model has a champion: not restarted", reason)
                (self.run_dir / f"{SERVE}.pid").unlink(
                    missing_ok=True
                )  # not meant to run: stop watching it
                self.wanted.discard(SERVE)
                return False
            self.stop_hung(name)
            state = ensure_services([spec], self.run_dir)[0]
        except Exception as exc:
            failures = self.failures.get(name, 0) + 1
            self.failures[name] = failures
            delay = retry_delay(failures, self.settings.watchdog_seconds)
            self.not_before[name] = time.monotonic() + delay
            log.error(
                "restart %s (%s) failed (attempt %d, next in %.0fs): %s",
                name,
                reason,
                failures,
                delay,
                exc,
            )
            return False
        self.failures.pop(name, None)
        self.not_before.pop(name, None)
        self.misses[name] = 0
        if state.started:
            note = f"; {state.note}" if state.note else ""
            log.info("restarted %s (pid %s): %s%s", name, state.pid, reason, note)
        else:
            log.info(
                "%s was %s but is running again (pid %s, started by someone else)",
                name,
                reason,
                state.pid,
            )
        return state.started

    def stop_hung(self, name: str) -> None:
        """Stop a live but unhealthy service and drop its pid file (under its lock, if it still names that pid)."""
        with service_lock(self.run_dir, name):
            pid = read_pid(self.run_dir, name)
            if pid is None:
                return
            stop_service_pid(name, pid)
            with contextlib.suppress(OSError, ValueError):
                if int((self.run_dir / f"{name}.pid").read_text().strip()) == pid:
                    (self.run_dir / f"{name}.pid").unlink()

    def spec(self, name: str) -> ServiceSpec | None:
        """How ``up`` starts ``name``; for serve, every champion's command (None: no champion); None for a
        worker the last ``up`` no longer wants."""
        if name != SERVE:
            workers = wanted_workers(self.run_dir, self.settings.workers)
            return {s.name: s for s in service_specs(self.settings, workers=workers)}.get(name)
        from mloop.platform.serve_command import (
            serve_command,  # heavy (MLflow, packaging): only for a dead serve
        )

        command = serve_command(self.settings)
        return None if command is None else serve_spec(self.settings, command)

    # -- reconcile

    def reconcile(self) -> list[Decision]:
        """Compare each champion with what is served and trigger ``deploy/local`` for each model that
        differs (seen twice, one cycle apart); every model on its own."""
        decisions = observe_and_decide(self.settings)
        previous, self.last_decisions = self.last_decisions, {}
        look_again = False
        for decision in decisions:
            key = decision.model or ""
            before = previous.get(key)
            if decision.action == "deploy":
                if confirmed(before, decision):
                    try:
                        trigger_deploy(self.settings, decision)
                    except Exception as exc:
                        log.warning(
                            "reconcile: triggering %s for %s failed: %s",
                            DEPLOYMENT,
                            decision.model,
                            exc,
                        )
                    continue  # not remembered: a divergence still there later needs two sightings again
                log.info(
                    "reconcile: %s; checking again in %.0fs before deploying",
                    decision.reason,
                    self.settings.watchdog_seconds,
                )
                look_again = True
            elif decision != before:
                log.info("reconcile: %s", decision.reason)
            self.last_decisions[key] = decision
        if look_again:
            self.reconcile_soon(self.settings.watchdog_seconds)
        return decisions

    def heartbeat(self) -> None:
        """Write this process's pid to the heartbeat file (its mtime is the watchdog's health, see ``up``)."""
        (self.run_dir / HEARTBEAT_FILE).write_text(str(os.getpid()))

    def run(self, stop: threading.Event) -> None:
        """Cycle every ``settings.watchdog_seconds`` until ``stop`` is set."""
        log.info(
            "watchdog started (every %.0fs; reconcile every %.0fs)",
            self.settings.watchdog_seconds,
            self.settings.reconcile_seconds,
        )
        self.heartbeat()
        while not stop.is_set():
            try:
                self.cycle()
            except Exception as exc:
                log.exception("cycle failed: %s", exc)
            self.heartbeat()
            stop.wait(self.settings.watchdog_seconds)
        log.info("watchdog stopped")


def observe_and_decide(settings: Settings) -> list[Decision]:
    """Read the champions, the service's models and the active deploy runs, then :func:`decide`."""
    found = champion_versions(settings)  # MLflow is imported here (reconcile only)
    if not found:
        return decide(found, "down", set())
    models = ServingClient(urls(settings)["serving"], token=settings.bearer_token()).served_models()
    serving = served_state(models, read_pid(settings.state.run, SERVE) is not None)
    api = PrefectApi.of(settings, deadline=5.0)
    runs = api.flow_runs(DEPLOY_FLOW, limit=50, newest_first=True)
    changes = api.events(names=[events.MODEL_PROMOTED, events.MODEL_ROLLED_BACK], limit=20)
    return decide(
        found,
        serving,
        active_deploy_models(runs),
        awaiting_event_deploy(changes, runs, datetime.now(UTC)),
    )


def trigger_deploy(settings: Settings, decision: Decision) -> str:
    """Run the ``deploy/local`` deployment for ``decision.model``; returns the flow-run id."""
    assert decision.model is not None
    run_id = PrefectApi.of(settings, deadline=15.0).run_deployment(
        DEPLOYMENT, {"name": decision.model}
    )
    log.info(
        "reconcile: %s -> triggered %s for %s (flow run %s)",
        decision.reason,
        DEPLOYMENT,
        decision.model,
        run_id,
    )
    return run_id


def reconcile_once(settings: Settings) -> list[Decision]:
    """One reconcile without a watchdog (``up`` with ``settings.watchdog`` off): acts at once, per model."""
    decisions = observe_and_decide(settings)
    for decision in decisions:
        if decision.action == "deploy":
            trigger_deploy(settings, decision)
    return decisions


def request_reconcile(run_dir: Path) -> None:
    """Ask a running watchdog to reconcile at its next cycle (``up`` does, after the services)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RECONCILE_REQUEST).touch()


@contextlib.contextmanager
def single_instance(run_dir: Path) -> Iterator[bool]:
    """Hold ``run/watchdog.instance`` for the watchdog's life; yields False when another watchdog holds it."""
    with try_lock(run_dir / INSTANCE_LOCK) as held:
        yield held


def main(argv: Sequence[str] | None = None) -> int:
    """Run the watchdog of the platform the environment describes (``MLOOP_*``) until SIGTERM/SIGINT."""
    del argv
    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    for noisy in ("httpx", "httpcore"):  # one line per health GET would bury the actions
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = Settings()
    settings.apply_env()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        log.info("signal %d: stopping after this step", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with single_instance(settings.state.run) as alone:
        if not alone:
            log.info("another watchdog runs for %s: exiting", settings.state.root)
            return 0
        Watchdog(settings).run(stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

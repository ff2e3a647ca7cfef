"""The local platform: start, stop and inspect every service ``mloop up`` runs.

Services (each with its own pid file and log under ``MLOOP_HOME/run``):

| name | what | health |
|---|---|---|
| prefect-server | Prefect server (``mloop.platform.prefect_server``: ``prefect server start`` plus a Host allowlist) on host:prefect_port, PREFECT_HOME under MLOOP_HOME, basic auth | ``/api/health`` |
| prefect-worker | process worker ``mloop-worker-<port>-<random>`` on the ``mloop-local`` pool, polling its default queue every 1 s; ``prefect-worker-2`` ... ``-N`` the same with ``MLOOP_WORKERS`` / ``--workers N`` | this start's name registered ONLINE in the pool |
| mlflow | ``mlflow server --app-name basic-auth`` on the SQLite DB, artifacts under MLOOP_HOME, ``--allowed-hosts`` | ``/health`` |
| webhook | alert/notification receiver (``monitoring.webhook``), bearer token | ``/healthz`` |
| serve | the prediction service on serving_host: ONE process holding every champion (``/models/<name>/...``), when a champion exists | ``/readyz`` |
| watchdog | ``mloop.platform.watchdog`` (when ``MLOOP_WATCHDOG``, the default): restarts dead services, reconciles what is served with each champion, per model | heartbeat file touched every cycle |

Auth is on by default (``MLOOP_AUTH``): ``up`` creates the platform secret (``<home>/secrets/
platform.json``, 0600) before it builds any environment; ``mloop token`` shows how to log in.

``up`` is idempotent: a service whose pid file names a live process is left alone. A dead one is
started again; processes of it still listening on its port whose environment names this MLOOP_HOME
(BentoML's worker outlives a SIGKILLed ``serve`` in a session of its own) are stopped first, and
the state's ``note`` says so. Each worker start gets a new name (``run/prefect-worker.name``), so a
dead worker's registration, ONLINE until its heartbeat times out, never blocks or passes for the new one. After the services, ``up`` deploys ``prefect.yaml`` (``prefect --no-prompt deploy
--all``) when the server was just started or ``prefect.yaml`` changed since the last deploy, and
sets up the notification block and automation. Then the reconcile step (:mod:`mloop.platform.watchdog`)
runs: ``up`` asks the watchdog for it (a new one does it at start) and starts the watchdog last;
with the watchdog off, ``up`` reconciles once itself. ``down`` stops the watchdog first, then every
pid file under the run folder by process tree (the worker gets SIGINT, then a second signal after
a grace period) and waits for each pid, then any process still marked as one of the services. Nothing here is cached beyond the pid files and the deploy fingerprint.

The parts: :mod:`mloop.platform.services` (specs, start, stop), :mod:`mloop.platform.deploy`
(work pool, prefect.yaml, notifications), :mod:`mloop.platform.status` (``mloop status``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel, Field

from mloop.core.outbox import deliver_pending
from mloop.core.processes import read_pid
from mloop.core.settings import Settings
from mloop.platform.deploy import (
    deploy,
    deploy_is_fresh,
    ensure_work_pool,
    list_deployments,
    setup_notifications,
)
from mloop.platform.progress import Progress, step
from mloop.platform.services import (
    ServeCommand,
    ServiceState,
    ensure_services,
    serve_spec,
    service_specs,
    stop_extra_workers,
    stop_services,
    watchdog_spec,
    worker_services,
    write_wanted_workers,
)
from mloop.platform.watchdog import reconcile_once, request_reconcile, summary


class UpResult(BaseModel):
    services: list[ServiceState]
    deployed: bool = Field(description="True when prefect.yaml was (re)deployed by this call.")
    deployments: list[str] = Field(default_factory=list)
    reconcile: str = Field(
        default="", description="What the reconcile step did (or that the watchdog was asked to)."
    )
    queued_events: int = Field(
        default=0, description="Events still in the outbox when up returned (delivered later)."
    )
    seconds: float = 0.0


class DownResult(BaseModel):
    stopped: dict[str, int] = Field(
        default_factory=dict, description="Service name -> pid that was stopped."
    )
    still_alive: list[int] = Field(default_factory=list)


def up(
    settings: Settings,
    *,
    do_deploy: bool | None = None,
    serve_command: Callable[[], ServeCommand | None] | None = None,
    progress: Progress | None = None,
) -> UpResult:
    """Start every service that is not running, deploy prefect.yaml when needed; idempotent.

    ``do_deploy``: None = deploy when the server was just started or prefect.yaml/settings changed
    since the last deploy; True/False force it on/off. ``serve_command`` returns how to start the
    prediction service with every champion (None: no champion yet, deploy starts it later).
    Then the reconcile step, and the watchdog last (``settings.watchdog``). ``progress`` hears each
    step as it starts and ends (:mod:`mloop.platform.progress`).

    ``settings.workers`` workers run afterwards: the count is recorded first (the watchdog follows it), workers
    beyond it are stopped, the missing ones started together.
    """
    t0 = time.monotonic()
    settings.state.ensure()
    settings.credentials()  # the secret exists before any service environment is built
    run_dir = settings.state.run
    specs = {s.name: s for s in service_specs(settings)}
    with step(progress, "starting Prefect server, MLflow, webhook") as note:
        states = ensure_services(
            [specs[n] for n in ("prefect-server", "mlflow", "webhook")], run_dir
        )
        note.detail = _started(states)
    with step(progress, "delivering queued events"):
        # events queued while the server was down: to it as soon as it answers
        deliver_pending(settings)
    with step(progress, f"starting {settings.workers} Prefect worker(s)") as note:
        ensure_work_pool(settings)
        write_wanted_workers(run_dir, settings.workers)
        stopped_workers = stop_extra_workers(run_dir, settings.state.root, settings.workers)
        started = ensure_services([specs[n] for n in worker_services(settings.workers)], run_dir)
        note.detail = _started(started)
        states += started + stopped_workers
    server_started = states[0].started
    must_deploy = (
        do_deploy if do_deploy is not None else (server_started or not deploy_is_fresh(settings))
    )
    with step(
        progress, "deploying prefect.yaml" if must_deploy else "reading the deployments"
    ) as note:
        if must_deploy:
            deployments = deploy(settings)
            setup_notifications(settings)
        else:
            deployments = list_deployments(settings)
        note.detail = f"{len(deployments)} deployment(s)"
    with step(progress, "starting the prediction service") as note:
        states.append(_ensure_serve(settings, serve_command))
        note.detail = _started(states[-1:])
    with step(progress, "starting the watchdog" if settings.watchdog else "reconciling") as note:
        reconciled = _watch_or_reconcile(settings, states)
        note.detail = reconciled
    # Once more at the end: the first delivery may have met a server still warming up (its answer
    # timed out after it took the event; the id makes a second delivery harmless), and runs started
    # meanwhile may have queued theirs. Without a watchdog nothing else would send them soon.
    with step(progress, "delivering queued events") as note:
        queued = deliver_pending(settings).pending
        note.detail = f"{queued} still queued" if queued else ""
    return UpResult(
        services=states,
        deployed=must_deploy,
        deployments=deployments,
        reconcile=reconciled,
        queued_events=queued,
        seconds=time.monotonic() - t0,
    )


def _watch_or_reconcile(settings: Settings, states: list[ServiceState]) -> str:
    """Start the watchdog (its state appended to ``states``), which reconciles what is served; without
    one, reconcile once here. Says what was done."""
    if not settings.watchdog:
        try:
            return summary(reconcile_once(settings))
        except Exception as exc:
            return f"reconcile failed: {exc}"
    # a watchdog already running reconciles at its next cycle; a new one at start
    request_reconcile(settings.state.run)
    states += ensure_services([watchdog_spec(settings)], settings.state.run)
    return "asked the watchdog"


def _started(states: list[ServiceState]) -> str:
    """``started x, y; running z`` for a step's line. Pure."""
    started = [s.name for s in states if s.started]
    running = [s.name for s in states if s.running and not s.started]
    parts = [f"started {', '.join(started)}"] if started else []
    parts += [f"already running {', '.join(running)}"] if running else []
    return "; ".join(parts) or "; ".join(s.note for s in states if s.note)


def _ensure_serve(
    settings: Settings, serve_command: Callable[[], ServeCommand | None] | None
) -> ServiceState:
    """The prediction service: left running, started with every champion, or noted as waiting for one."""
    run_dir = settings.state.run
    serving = read_pid(run_dir, "serve") is not None
    command = serve_command() if serve_command is not None and not serving else None
    if serving or command is not None:
        return ensure_services([serve_spec(settings, command or ServeCommand(argv=[]))], run_dir)[0]
    return ServiceState(name="serve", note="no champion yet: the deploy flow starts the service")


def down(settings: Settings, *, progress: Progress | None = None) -> DownResult:
    """Stop every service with a pid file under MLOOP_HOME/run (process trees): the watchdog first (it must
    not restart what is being stopped), the worker next, then reverse start order; then any process
    still marked as one of this MLOOP_HOME's services. ``progress`` hears each stop as it happens."""
    stopped, still_alive = stop_services(settings.state.run, settings.state.root, progress=progress)
    return DownResult(stopped=stopped, still_alive=still_alive)

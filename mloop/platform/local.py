"""The local platform: start, stop and inspect every service ``mloop up`` runs.

Services (each in its own process group, pid file and log under ``MLOOP_HOME/run``):

| name | what | health |
|---|---|---|
| prefect-server | ``prefect server start`` on host:prefect_port, PREFECT_HOME under MLOOP_HOME | ``/api/health`` |
| prefect-worker | process worker on the ``mloop-local`` pool, polling every 2 s | registered in the pool |
| mlflow | ``mlflow server`` on the SQLite DB, artifacts under MLOOP_HOME | ``/health`` |
| webhook | alert/notification receiver (``monitoring.webhook``) | ``/healthz`` |
| serve | the prediction service (current champion), when a champion exists | ``/readyz`` |

``up`` is idempotent: a service whose pid file names a live process that answers its health check
is left alone. After the services, ``up`` deploys ``prefect.yaml`` (``prefect --no-prompt deploy
--all``) when the server was just started or ``prefect.yaml`` changed since the last deploy, and
sets up the notification block and automation. ``down`` stops every pid file under the run folder
by process group (the worker gets SIGINT, then a second signal after a grace period) and waits for
each pid. Nothing here is cached beyond the pid files and the deploy fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field

from mloop.core.errors import MloopError
from mloop.core.paths import CODE_ROOT, with_code_root
from mloop.core.processes import pid_alive, read_pid, start_process, stop_pid
from mloop.core.settings import Settings

WORK_POOL = "mloop-local"
"""The checkout holding prefect.yaml and flows/ (the flow runs' working directory)."""

SERVICE_ORDER = ("prefect-server", "mlflow", "webhook", "prefect-worker", "serve")
DEPLOY_STAMP = "prefect-deploy.sha256"


class ServiceState(BaseModel):
    """One service as ``up``/``status`` see it."""

    name: str
    pid: int | None = None
    running: bool = False
    started: bool = Field(default=False, description="True when this `up` started it (False: already running).")
    url: str = ""
    log: str = ""
    note: str = ""


class UpResult(BaseModel):
    services: list[ServiceState]
    deployed: bool = Field(description="True when prefect.yaml was (re)deployed by this call.")
    deployments: list[str] = Field(default_factory=list)
    seconds: float = 0.0


class DownResult(BaseModel):
    stopped: dict[str, int] = Field(default_factory=dict, description="Service name -> pid that was stopped.")
    still_alive: list[int] = Field(default_factory=list)


class FlowRunInfo(BaseModel):
    name: str
    flow: str
    deployment: str | None = None
    state: str
    start_time: str | None = None
    end_time: str | None = None


class ModelStatus(BaseModel):
    name: str
    champion: str | None = None
    challenger: str | None = None
    deployed: str | None = None


class PlatformStatus(BaseModel):
    home: str
    urls: dict[str, str]
    services: list[ServiceState]
    models: list[ModelStatus] = Field(default_factory=list)
    last_drift: dict[str, Any] | None = None
    recent_flow_runs: list[FlowRunInfo] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


@dataclass
class ServiceSpec:
    """How to start and health-check one service."""

    name: str
    argv: list[str]
    env: dict[str, str]
    url: str
    health: Callable[[], bool]
    timeout: float = 90.0
    cwd: Path | None = None
    stop_grace: float = 8.0
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- environment


def prefect_api_url(settings: Settings) -> str:
    return f"http://{settings.host}:{settings.prefect_port}/api"


def urls(settings: Settings) -> dict[str, str]:
    """Where each service answers."""
    h = settings.host
    return {
        "prefect_ui": f"http://{h}:{settings.prefect_port}",
        "prefect_api": prefect_api_url(settings),
        "mlflow_ui": f"http://{h}:{settings.mlflow_port}",
        "serving": f"http://{h}:{settings.serve_port}",
        "webhook": f"http://{h}:{settings.webhook_port}",
    }


def settings_env(settings: Settings) -> dict[str, str]:
    """``MLOOP_*`` variables that rebuild ``settings`` in a child process (secrets included, never logged)."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(exclude_none=True).items():
        if name == "api_token":
            env["MLOOP_API_TOKEN"] = settings.api_token.get_secret_value() if settings.api_token else ""
            continue
        key = f"MLOOP_{name.upper()}"
        env[key] = json.dumps(value) if isinstance(value, dict | list) else str(value)
    env["MLOOP_HOME"] = str(settings.state.root)
    env["MLOOP_PROJECT_DIR"] = str(settings.project_dir.resolve())
    return env


def platform_env(settings: Settings) -> dict[str, str]:
    """Environment every service (and every flow run the worker starts) gets."""
    env = {
        **settings.service_env(),
        **settings_env(settings),
        "PREFECT_API_URL": prefect_api_url(settings),
        "MLOOP_CODE_DIR": str(CODE_ROOT),
        # The worker starts flow runs with this command (prefect.yaml job variable `command`): one
        # Python process per run. Without it Prefect 3.9 starts a workspace supervisor that execs
        # a second interpreter, importing prefect twice (about a second more per triggered run).
        "MLOOP_ENGINE_COMMAND": f"{shlex.quote(sys.executable)} -m prefect.engine",
    }
    return with_code_root({**env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})


# ---------------------------------------------------------------- health checks


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def _worker_registered(settings: Settings, worker_name: str) -> bool:
    api = prefect_api_url(settings)
    try:
        resp = httpx.post(f"{api}/work_pools/{WORK_POOL}/workers/filter", json={"limit": 50}, timeout=3.0)
    except httpx.HTTPError:
        return False
    if resp.status_code != 200:
        return False
    return any(w.get("name") == worker_name and w.get("status", "ONLINE") == "ONLINE" for w in resp.json())


def worker_name(settings: Settings) -> str:
    return f"mloop-worker-{settings.prefect_port}"


# ---------------------------------------------------------------- service specs


def service_specs(settings: Settings) -> list[ServiceSpec]:
    """The services ``up`` manages, in start order (serve last: it may need a champion)."""
    py = sys.executable
    env = platform_env(settings)
    h = settings.host
    u = urls(settings)
    s = settings.state
    specs = [
        ServiceSpec(
            name="prefect-server",
            argv=[py, "-m", "prefect", "server", "start", "--host", h, "--port", str(settings.prefect_port)],
            env={**env, "PREFECT_SERVER_API_HOST": h, "PREFECT_SERVER_API_PORT": str(settings.prefect_port)},
            url=u["prefect_ui"],
            health=lambda: _http_ok(f"{u['prefect_api']}/health"),
            timeout=120.0,
        ),
        ServiceSpec(
            name="mlflow",
            argv=[
                py, "-m", "mlflow", "server",
                "--backend-store-uri", settings.tracking_uri,
                "--default-artifact-root", str(s.mlflow_artifacts),
                "--no-serve-artifacts",
                "--host", h, "--port", str(settings.mlflow_port),
                "--workers", "1",
            ],
            env=env,
            url=u["mlflow_ui"],
            health=lambda: _http_ok(f"{u['mlflow_ui']}/health"),
        ),
        ServiceSpec(
            name="webhook",
            argv=[py, "-m", "monitoring.webhook"],
            env=env,
            url=u["webhook"],
            health=lambda: _http_ok(f"{u['webhook']}/healthz"),
            cwd=CODE_ROOT,
        ),
        ServiceSpec(
            name="prefect-worker",
            argv=[
                py, "-m", "prefect", "worker", "start",
                "--pool", WORK_POOL, "--type", "process",
                "--name", worker_name(settings),
            ],
            env={
                **env,
                "PREFECT_WORKER_QUERY_SECONDS": "1",  # pick-up latency of triggered runs (loopback: cheap)
                "PREFECT_WORKER_PREFETCH_SECONDS": "10",
                "PREFECT_RUNNER_POLL_FREQUENCY": "2",
            },
            url="",
            health=lambda: _worker_registered(settings, worker_name(settings)),
            cwd=CODE_ROOT,
            stop_grace=10.0,
        ),
    ]
    return specs


@dataclass(frozen=True)
class ServeCommand:
    """How to start the prediction service (given by the serving layer through the CLI)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    health_path: str = "/readyz"


def serve_spec(settings: Settings, env: dict[str, str], command: ServeCommand) -> ServiceSpec:
    """The prediction service as a managed service (core never imports serving: the CLI passes ``command``)."""
    url = f"http://{settings.host}:{settings.serve_port}"
    return ServiceSpec(
        name="serve",
        argv=list(command.argv),
        env={**env, **command.env},
        url=url,
        health=lambda: _http_ok(f"{url}{command.health_path}"),
        timeout=180.0,
        cwd=command.cwd or CODE_ROOT,
    )


# ---------------------------------------------------------------- up


def _ensure_service(spec: ServiceSpec, run_dir: Path) -> ServiceState:
    return _ensure_services([spec], run_dir)[0]


def _ensure_services(specs: list[ServiceSpec], run_dir: Path) -> list[ServiceState]:
    """Start the services of ``specs`` that are not running (all at once), then wait for each to be healthy.

    A live pid file means "already running": never started twice. A port that answers without a
    pid file belongs to someone else: refused with a fix, never adopted.
    """
    states: list[ServiceState] = []
    started: list[int] = []
    for spec in specs:
        pid = read_pid(run_dir, spec.name)
        log = run_dir / f"{spec.name}.log"
        if pid is not None:
            states.append(ServiceState(name=spec.name, pid=pid, running=True, url=spec.url, log=str(log)))
            continue
        if spec.health():
            raise MloopError(
                f"{spec.name} already answers at {spec.url or spec.name} but was not started by this MLOOP_HOME",
                where=str(run_dir),
                fix="stop that process, or choose other ports (MLOOP_PREFECT_PORT, MLOOP_MLFLOW_PORT, "
                "MLOOP_SERVE_PORT, MLOOP_WEBHOOK_PORT)",
            )
        proc = start_process(spec.name, spec.argv, run_dir=run_dir, env=spec.env, cwd=spec.cwd, url=spec.url)
        started.append(proc.pid)
        states.append(ServiceState(name=spec.name, pid=proc.pid, running=True, started=True, url=spec.url, log=str(log)))
    try:
        for spec, state in zip(specs, states, strict=True):
            assert state.pid is not None
            _wait(spec, state.pid, Path(state.log))
    except Exception:
        for spec, state in zip(specs, states, strict=True):
            if state.started and state.pid is not None:
                stop_pid(state.pid, grace=spec.stop_grace)
                (run_dir / f"{spec.name}.pid").unlink(missing_ok=True)
        raise
    return states


def _wait(spec: ServiceSpec, pid: int, log: Path) -> None:
    deadline = time.monotonic() + spec.timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise MloopError(
                f"{spec.name} (pid {pid}) exited while starting",
                where=str(log),
                fix=f"read the log; last lines:\n{tail}",
            )
        if spec.health():
            return
        time.sleep(0.3)
    raise MloopError(f"{spec.name} not healthy after {spec.timeout:.0f}s", where=str(log), fix="read the log")


def _ensure_work_pool(settings: Settings, env: dict[str, str]) -> None:
    api = prefect_api_url(settings)
    if httpx.get(f"{api}/work_pools/{WORK_POOL}", timeout=5.0).status_code == 200:
        return
    _run(
        [sys.executable, "-m", "prefect", "work-pool", "create", WORK_POOL, "--type", "process"],
        env=env,
        what="create the work pool",
    )


def _run(argv: list[str], *, env: dict[str, str], what: str, cwd: Path | None = None, timeout: float = 300) -> str:
    out = subprocess.run(
        argv,
        env={**os.environ, **env},
        cwd=str(cwd) if cwd else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        tail = (out.stdout + out.stderr)[-4000:]
        raise MloopError(f"could not {what} (exit {out.returncode})", where=" ".join(argv[:6]), fix=tail)
    return out.stdout


def prefect_yaml() -> Path:
    return CODE_ROOT / "prefect.yaml"


def deploy(settings: Settings) -> list[str]:
    """``prefect --no-prompt deploy --all`` from the code dir with the platform env; returns deployment names."""
    env = platform_env(settings)
    log_path = settings.state.run / "prefect-deploy.log"
    out = _run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"],
        env={**env, "COLUMNS": "200"},
        cwd=CODE_ROOT,
        what="deploy prefect.yaml",
    )
    log_path.write_text(out)
    _deploy_stamp(settings).write_text(_yaml_fingerprint(settings))
    return list_deployments(settings)


def _deploy_stamp(settings: Settings) -> Path:
    return settings.state.run / DEPLOY_STAMP


def _yaml_fingerprint(settings: Settings) -> str:
    digest = hashlib.sha256(prefect_yaml().read_bytes())
    digest.update(json.dumps(settings_env(settings), sort_keys=True).encode())
    return digest.hexdigest()


def list_deployments(settings: Settings) -> list[str]:
    api = prefect_api_url(settings)
    flows = {f["id"]: f["name"] for f in httpx.post(f"{api}/flows/filter", json={}, timeout=10).json()}
    deps = httpx.post(f"{api}/deployments/filter", json={}, timeout=10).json()
    return sorted(f"{flows.get(d['flow_id'], '?')}/{d['name']}" for d in deps)


def setup_notifications(settings: Settings) -> None:
    """Create/refresh the notification block and automation (``python -m flows.notify``)."""
    _run([sys.executable, "-m", "flows.notify"], env=platform_env(settings), cwd=CODE_ROOT, what="set up notifications")


def up(
    settings: Settings,
    *,
    do_deploy: bool | None = None,
    serve_command: Callable[[], ServeCommand | None] | None = None,
) -> UpResult:
    """Start every service that is not running, deploy prefect.yaml when needed; idempotent.

    ``do_deploy``: None = deploy when the server was just started or prefect.yaml/settings changed
    since the last deploy; True/False force it on/off. ``serve_command`` returns how to start the
    prediction service for the current champion (None: no champion yet, deploy starts it later).
    """
    t0 = time.monotonic()
    settings.state.ensure()
    run_dir = settings.state.run
    states: list[ServiceState] = []
    env = platform_env(settings)
    specs = {s.name: s for s in service_specs(settings)}
    states.extend(_ensure_services([specs[n] for n in ("prefect-server", "mlflow", "webhook")], run_dir))
    _ensure_work_pool(settings, env)
    states.append(_ensure_service(specs["prefect-worker"], run_dir))
    server_started = states[0].started
    stamp = _deploy_stamp(settings)
    fresh = stamp.exists() and stamp.read_text() == _yaml_fingerprint(settings)
    must_deploy = do_deploy if do_deploy is not None else (server_started or not fresh)
    deployments: list[str] = []
    if must_deploy:
        deployments = deploy(settings)
        setup_notifications(settings)
    else:
        deployments = list_deployments(settings)
    command = serve_command() if serve_command is not None and read_pid(run_dir, "serve") is None else None
    if read_pid(run_dir, "serve") is not None or command is not None:
        spec = serve_spec(settings, env, command or ServeCommand(argv=[]))
        states.append(_ensure_service(spec, run_dir))
    else:
        states.append(ServiceState(name="serve", note="no champion yet: the deploy flow starts the service"))
    return UpResult(services=states, deployed=must_deploy, deployments=deployments, seconds=time.monotonic() - t0)


# ---------------------------------------------------------------- down


def _pid_files(run_dir: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(run_dir.glob("*.pid"))} if run_dir.exists() else {}


def down(settings: Settings) -> DownResult:
    """Stop every service with a pid file under MLOOP_HOME/run (process groups), reverse start order."""
    run_dir = settings.state.run
    files = _pid_files(run_dir)
    order = [n for n in reversed(SERVICE_ORDER) if n in files] + sorted(n for n in files if n not in SERVICE_ORDER)
    # The worker first: it must not pick up new runs while the rest goes down; serve before it is fine too.
    order.sort(key=lambda n: 0 if n == "prefect-worker" else 1)
    result = DownResult()
    for name in order:
        pid = read_pid(run_dir, name)
        files[name].unlink(missing_ok=True)
        if pid is None:
            continue
        if name == "prefect-worker":
            _stop_worker(pid)
        else:
            stop_pid(pid, grace=8.0, first=signal.SIGTERM)
        result.stopped[name] = pid
        if pid_alive(pid):
            result.still_alive.append(pid)
    return result


def _stop_worker(pid: int) -> None:
    """SIGINT, a second SIGINT after a short grace (the worker then kills its flow runs), then the group."""
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    if pid_alive(pid):
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    # Whatever is left in its process group (flow-run subprocesses) goes with the group.
    stop_pid(pid, grace=10.0, first=signal.SIGINT)


# ---------------------------------------------------------------- status


def _service_states(settings: Settings) -> list[ServiceState]:
    run_dir = settings.state.run
    out = []
    u = urls(settings)
    names = list(SERVICE_ORDER) + [n for n in _pid_files(run_dir) if n not in SERVICE_ORDER]
    where = {"prefect-server": u["prefect_ui"], "mlflow": u["mlflow_ui"], "webhook": u["webhook"], "serve": u["serving"]}
    for name in names:
        pid = read_pid(run_dir, name)
        out.append(
            ServiceState(
                name=name,
                pid=pid,
                running=pid is not None,
                url=where.get(name, ""),
                log=str(run_dir / f"{name}.log"),
            )
        )
    return out


def recent_flow_runs(settings: Settings, limit: int = 10) -> list[FlowRunInfo]:
    """The newest flow runs on the platform's Prefect server (empty when it is down)."""
    api = prefect_api_url(settings)
    try:
        runs = httpx.post(
            f"{api}/flow_runs/filter", json={"limit": limit, "sort": "EXPECTED_START_TIME_DESC"}, timeout=5
        ).json()
        flows = {f["id"]: f["name"] for f in httpx.post(f"{api}/flows/filter", json={}, timeout=5).json()}
        deps = {d["id"]: d["name"] for d in httpx.post(f"{api}/deployments/filter", json={}, timeout=5).json()}
    except (httpx.HTTPError, ValueError):
        return []
    return [
        FlowRunInfo(
            name=r["name"],
            flow=flows.get(r["flow_id"], "?"),
            deployment=deps.get(r.get("deployment_id") or ""),
            state=(r.get("state") or {}).get("name") or r.get("state_type") or "?",
            start_time=r.get("start_time"),
            end_time=r.get("end_time"),
        )
        for r in runs
    ]


def last_drift_event(settings: Settings) -> dict[str, Any] | None:
    """The newest mloop.drift.* / quality event the Prefect server has seen (None if none or down)."""
    api = prefect_api_url(settings)
    body = {
        "filter": {"event": {"prefix": ["mloop.drift.", "mloop.quality."]}, "order": "DESC"},
        "limit": 1,
    }
    try:
        resp = httpx.post(f"{api}/events/filter", json=body, timeout=5)
        events = resp.json().get("events", []) if resp.status_code == 200 else []
    except (httpx.HTTPError, ValueError):
        return None
    if not events:
        return None
    e = events[0]
    return {"event": e["event"], "occurred": e["occurred"], "resource": e["resource"].get("prefect.resource.id"), "payload": e.get("payload", {})}


def last_drift_verdict(settings: Settings) -> dict[str, Any] | None:
    """The newest drift check's verdict (``<reports>/<model>/<stamp>/result.json``), drift or not.

    Falls back to the newest drift/quality event on the Prefect server when no report exists.
    """
    reports = sorted(settings.state.reports.glob("*/*/result.json"), key=lambda p: p.stat().st_mtime)
    if not reports:
        return last_drift_event(settings)
    try:
        r = json.loads(reports[-1].read_text())
    except (OSError, ValueError):
        return last_drift_event(settings)
    quality = r.get("quality") or {}
    return {
        "model": r.get("model_name"),
        "version": r.get("model_version"),
        "verdict": "drift" if r.get("dataset_drift") else "no drift",
        "drift_share": round(float(r.get("drift_share") or 0.0), 4),
        "threshold": r.get("drift_share_threshold"),
        "drifted_columns": r.get("drifted_columns", []),
        "quality_degraded": quality.get("degraded") if isinstance(quality, dict) else None,
        "report": r.get("report_path") or str(reports[-1].with_name("drift.html")),
        "checked_at": datetime.fromtimestamp(reports[-1].stat().st_mtime, UTC).isoformat(),
    }


def model_statuses(settings: Settings) -> list[ModelStatus]:
    """Champion/challenger per registered model and the version the service is serving.

    Asks the running MLflow server's REST API (fast); falls back to the tracking store itself.
    """
    deployed = served_version(settings)
    rows: list[tuple[str, dict[str, str]]] = []
    try:
        resp = httpx.get(
            f"http://{settings.host}:{settings.mlflow_port}/api/2.0/mlflow/registered-models/search",
            params={"max_results": 100},
            timeout=5,
        )
        resp.raise_for_status()
        for rm in resp.json().get("registered_models", []):
            rows.append((rm["name"], {a["alias"]: a["version"] for a in rm.get("aliases", [])}))
        # Most recently changed model first (the one `up` serves when several have a champion).
        order = {rm["name"]: -int(rm.get("last_updated_timestamp", 0)) for rm in resp.json().get("registered_models", [])}
        rows.sort(key=lambda row: order.get(row[0], 0))
    except (httpx.HTTPError, ValueError, KeyError):
        if not settings.state.mlflow_db.exists() and settings.mlflow_tracking_uri is None:
            return []
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=settings.tracking_uri)
        rows = [(rm.name, dict(getattr(rm, "aliases", {}) or {})) for rm in client.search_registered_models()]
    return [
        ModelStatus(
            name=name,
            champion=aliases.get("champion"),
            challenger=aliases.get("challenger"),
            deployed=deployed.get(name),
        )
        for name, aliases in rows
    ]


def served_version(settings: Settings) -> dict[str, str]:
    """Model name -> version the prediction service reports (GET /model); empty when it is down."""
    try:
        resp = httpx.get(f"http://{settings.host}:{settings.serve_port}/model", timeout=3)
        info = resp.json() if resp.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return {}
    name = info.get("model_name") or info.get("name")
    version = info.get("model_version") or info.get("version")
    return {str(name): str(version)} if name and version is not None else {}


def status(settings: Settings, *, runs: int = 10) -> PlatformStatus:
    """URLs, services, champion/deployed versions, last drift verdict, recent flow runs."""
    notes: list[str] = []
    try:
        models = model_statuses(settings)
    except Exception as exc:  # the registry may be mid-migration or locked: status still answers
        models = []
        notes.append(f"model registry unavailable: {exc}")
    return PlatformStatus(
        home=str(settings.state.root),
        urls=urls(settings),
        services=_service_states(settings),
        models=models,
        last_drift=last_drift_verdict(settings),
        recent_flow_runs=recent_flow_runs(settings, runs),
        notes=notes,
    )

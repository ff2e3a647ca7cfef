"""The services ``mloop up`` runs: how each is started and health-checked, started together, stopped.

Each service runs in its own session (process group) with ``run/<name>.pid`` and ``run/<name>.log``
under MLOOP_HOME, and ``MLOOP_SERVICE=<name>`` in its environment (inherited by its children). A
live pid file means "already running"; a service is started under ``run/<name>.lock`` with a
re-check of the pid file, so ``up``, the watchdog and the deploy flow never start two copies.
Stopping is by process tree (:func:`mloop.core.processes.stop_pid`); the processes of a dead
service are found by its environment marker (:func:`clear_orphans`).

The watchdog (:mod:`mloop.platform.watchdog`) is a service too: started last by ``up`` (when
``settings.watchdog``), stopped first by ``down`` so it never restarts what ``down`` stops.

With ``settings.auth`` (the default) every service requires the platform secret
(:meth:`mloop.core.settings.Settings.credentials`, created by ``up`` before any environment is
built): the Prefect server basic auth (``PREFECT_SERVER_API_AUTH_STRING``; every client gets
``PREFECT_API_AUTH_STRING``), MLflow its basic-auth app (admin password from the secret, never
MLflow's default), the webhook and the prediction service the bearer token (they read it from
the secret file themselves). Secrets go to children by environment only, never by argv.
Every service also checks the Host header against :meth:`Settings.host_allowlist`.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field

from mloop.core.entrypoints import MLFLOW, PREFECT, WATCHDOG, WEBHOOK, python_m
from mloop.core.errors import MloopError, NotReadyError
from mloop.core.http import retry_env
from mloop.core.paths import CODE_ROOT, with_code_root
from mloop.core.processes import (
    http_ok,
    listening_pids,
    pid_alive,
    prefect_server_argv,
    prefect_server_env,
    process_home,
    process_tree,
    read_pid,
    service_lock,
    service_members,
    spawn_process,
    split_listeners,
    stop_pid,
    wait_ready,
)
from mloop.core.service_urls import http_url
from mloop.core.settings import Settings
from mloop.core.team import TeamConfig, TeamDatabases, redact_url, team_config
from mloop.platform.client import PrefectApi
from mloop.platform.progress import Progress, step

WORK_POOL = "mloop-local"
"""The process work pool every deployment in prefect.yaml runs on."""

SERVICE_ORDER = ("prefect-server", "mlflow", "webhook", "prefect-worker", "serve", "watchdog")
"""Start order of the services ``up`` manages (the watchdog last: it watches the others)."""

WATCHDOG_SERVICE = "watchdog"
HEARTBEAT_FILE = "watchdog.heartbeat"
"""Under MLOOP_HOME/run: the watchdog writes its pid there at start and after every cycle (its health)."""


class ServiceState(BaseModel):
    """One service as ``up``/``status`` see it."""

    name: str
    pid: int | None = None
    running: bool = False
    started: bool = Field(
        default=False, description="True when this `up` started it (False: already running)."
    )
    url: str = ""
    log: str = ""
    note: str = ""


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
    unset: tuple[str, ...] = ()
    """Names removed from the environment the child inherits (see :func:`unset_env`)."""
    prepare: Callable[[], None] | None = None
    """Run just before the service is started (e.g. write its config file); not when it already runs."""
    port: int | None = None
    """The TCP port it listens on: a dead service's orphans still holding it are found by it."""
    exclusive: bool = True
    """True: a healthy answer without a live pid file means someone else runs it (refused). False for
    the worker: its health is a pool registration, which outlives a dead worker by a minute or more."""


@dataclass(frozen=True)
class ServeCommand:
    """How to start the prediction service (given by the serving layer through the CLI)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    health_path: str = "/readyz"


# ---------------------------------------------------------------- environment


def urls(settings: Settings) -> dict[str, str]:
    """Where each service answers (a wildcard bind address is reached on loopback). Pure.

    The prediction service binds ``settings.serving_host`` (it may be exposed while the others are not).
    """
    h = settings.host
    return {
        "prefect_ui": http_url(h, settings.prefect_port),
        "prefect_api": settings.prefect_api_url,
        "mlflow_ui": http_url(h, settings.mlflow_port),
        "serving": http_url(settings.serving_host, settings.serve_port),
        "webhook": http_url(h, settings.webhook_port),
    }


def health_urls(settings: Settings) -> dict[str, str]:
    """Service name -> the URL whose 200 answer means healthy (the worker and the watchdog have none). Pure."""
    u = urls(settings)
    return {
        "prefect-server": f"{u['prefect_api']}/health",
        "mlflow": f"{u['mlflow_ui']}/health",
        "webhook": f"{u['webhook']}/healthz",
        "serve": f"{u['serving']}{ServeCommand.health_path}",
    }


def settings_env(settings: Settings) -> dict[str, str]:
    """``MLOOP_*`` variables that rebuild ``settings`` in a child process (:meth:`Settings.child_env`)."""
    return settings.child_env()


def interpreter_path(path: str) -> str:
    """``path`` with the running interpreter's folder first (a virtualenv's ``bin``). Pure."""
    first = str(Path(sys.executable).parent)
    return os.pathsep.join([first, *[p for p in path.split(os.pathsep) if p and p != first]])


def platform_env(settings: Settings) -> dict[str, str]:
    """Environment every service (and every flow run the worker starts) gets."""
    env = {
        **retry_env(),  # Prefect's and MLflow's own clients ride out a restarting server
        **settings.service_env(),
        **settings_env(settings),
        "PREFECT_API_URL": settings.prefect_api_url,
        "MLOOP_CODE_DIR": str(CODE_ROOT),
        # The worker starts each flow run as `python -m prefect.engine` (prefect.yaml job variable
        # `command`), found on this PATH: this host's interpreter, whatever host deployed the flows.
        "PATH": interpreter_path(os.environ.get("PATH", "")),
    }
    return with_code_root({**env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})


def unset_env(settings: Settings) -> tuple[str, ...]:
    """Names a child must not inherit. Pure.

    With auth on: ``PREFECT_API_KEY`` (a Prefect Cloud key in the person's shell). Prefect sends
    it instead of the basic-auth string, and the local server answers 401.
    """
    return ("PREFECT_API_KEY",) if settings.auth else ()


def prefect_server_auth_env(settings: Settings) -> dict[str, str]:
    """``PREFECT_SERVER_API_AUTH_STRING`` for the server process (empty with auth off). Never logged.

    Call :meth:`Settings.credentials` first (``up`` does): it creates the secret.
    """
    found = settings.credentials()
    return (
        {"PREFECT_SERVER_API_AUTH_STRING": found.prefect_auth_string.get_secret_value()}
        if found
        else {}
    )


def mlflow_auth_config_path(settings: Settings) -> Path:
    """The basic-auth app's config file (``MLFLOW_AUTH_CONFIG_PATH``), under MLOOP_HOME/mlflow."""
    return settings.state.mlflow_dir / "basic_auth.ini"


def mlflow_auth_ini(settings: Settings, admin_username: str) -> str:
    """The basic-auth app's config (MLflow's ``basic_auth.ini`` template, filled in). Pure; no secret in it.

    Users live in ``<home>/mlflow/auth.db``; in team mode in the ``NAME_mlflow_auth`` database (its
    URI without the password: the server gets ``PGPASSWORD``, see :func:`mlflow_team_parts`). A user someone adds later sees nothing until granted
    (``NO_PERMISSIONS``). The admin password comes from ``MLFLOW_AUTH_ADMIN_PASSWORD`` in the
    server's environment, so MLflow never creates a default one. Checked credentials are cached
    for 5 minutes (``auth_cache_ttl_seconds``): each check is a scrypt hash (about 1 s of CPU here,
    10-30 s per request on a loaded 2-core machine without the cache). The server runs one worker,
    so a password changed through MLflow's API takes effect at once; only a change made directly
    in auth.db waits for the cache.
    """
    config = configparser.ConfigParser()
    config["mlflow"] = {
        "default_permission": "NO_PERMISSIONS",
        # configparser's interpolation reads % specially: a percent-encoded URL needs %% in the file.
        "database_uri": mlflow_auth_db_uri(settings).replace("%", "%%"),
        "admin_username": admin_username,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access": "false",
        "auth_cache_ttl_seconds": "300",
    }
    out = io.StringIO()
    config.write(out)
    return out.getvalue()


def mlflow_auth_db_uri(settings: Settings) -> str:
    """Where the basic-auth app keeps its users: ``<home>/mlflow/auth.db``, or in team mode the
    ``NAME_mlflow_auth`` database (no password in the URI). Pure."""
    team = team_config(settings)
    if team is not None:
        return team.databases.mlflow_auth_uri
    return f"sqlite:///{settings.state.mlflow_dir / 'auth.db'}"


def mlflow_allowed_hosts(settings: Settings) -> str:
    """``--allowed-hosts`` of the MLflow server: every allowlisted name, bare and with its port. Pure.

    MLflow compares the whole Host header (``name:port``) with each entry.
    """
    port = settings.mlflow_port
    entries: list[str] = []
    for name in settings.host_allowlist():
        bare = f"[{name}]" if ":" in name else name
        entries += [bare, f"{bare}:{port}"]
    return ",".join(entries)


def mlflow_spec_parts(
    settings: Settings,
) -> tuple[list[str], dict[str, str], Callable[[], None] | None]:
    """Extra argv, env and a config writer of the MLflow server: basic auth when ``settings.auth``.

    Note: on a single machine the flows write the tracking store directly (``MLFLOW_TRACKING_URI=
    sqlite:///...``, a file under the 0700 MLOOP_HOME), not through this server: the auth guards the
    HTTP door (UI, REST API) that anyone who can reach the port would otherwise use to move aliases.
    In team mode every client goes through this server, with the same credentials.
    """
    found = settings.credentials()
    if found is None:
        return [], {}, None
    path = mlflow_auth_config_path(settings)
    text = mlflow_auth_ini(settings, found.mlflow_username)

    def write_config() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.chmod(path, 0o600)

    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(path),
        "MLFLOW_AUTH_ADMIN_PASSWORD": found.mlflow_password.get_secret_value(),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": found.mlflow_flask_secret.get_secret_value(),
    }
    return ["--app-name", "basic-auth"], env, write_config


def mlflow_store_argv(settings: Settings) -> list[str]:
    """Where the MLflow server keeps runs, registry and artifacts. Pure.

    Single machine: the SQLite tracking URI and a local artifact folder the clients write themselves
    (``--no-serve-artifacts``). Team mode: the ``NAME_mlflow`` PostgreSQL database (URI without the
    password) and artifacts in ``s3://bucket/prefix/mlflow`` through the server (``--serve-artifacts``:
    clients get ``mlflow-artifacts:/`` locations and need no S3 credentials of their own).
    """
    team = team_config(settings)
    if team is None:
        return [
            "--backend-store-uri",
            settings.tracking_uri,
            "--default-artifact-root",
            str(settings.state.mlflow_artifacts),
            "--no-serve-artifacts",
        ]
    return [
        "--backend-store-uri",
        team.databases.mlflow_store_uri,
        "--artifacts-destination",
        team.artifacts.mlflow_artifacts,
        "--serve-artifacts",
    ]


def mlflow_team_env(team: TeamConfig | None) -> dict[str, str]:
    """The MLflow server's environment in team mode: ``PGPASSWORD`` (for the password-less store and
    auth URIs) and ``MLFLOW_S3_ENDPOINT_URL``. The AWS keys come from the environment ``up`` inherits.
    Empty on a single machine. Never logged. Pure."""
    if team is None:
        return {}
    endpoint = team.artifacts.endpoint_url
    return {
        **team.databases.password_env(),
        **({"MLFLOW_S3_ENDPOINT_URL": endpoint} if endpoint else {}),
    }


def prefect_database_env(team: TeamConfig | None) -> dict[str, str]:
    """The Prefect server's database in team mode (``postgresql+asyncpg://.../NAME_prefect``, password
    included: the server's environment only, never argv or logs); empty on a single machine (SQLite
    under PREFECT_HOME). Both names Prefect 3 reads are set, so neither can come from elsewhere. Pure."""
    if team is None:
        return {}
    url = team.databases.prefect_url.get_secret_value()
    return {
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": url,
        "PREFECT_API_DATABASE_CONNECTION_URL": url,
    }


def ensure_databases(databases: TeamDatabases, names: tuple[str, ...]) -> list[str]:
    """Create the databases ``names`` on the team's PostgreSQL server when missing; returns those created.

    Connects to mloop's own database (``NAME`` of MLOOP_DATABASE_URL) with psycopg. A role that may
    not create databases gets an MloopError with the commands an administrator runs instead. No error
    or log line carries the password.
    """
    import psycopg
    from psycopg import errors, sql

    where = f"MLOOP_DATABASE_URL ({redact_url(databases.mloop_uri)})"
    secret = databases.password.get_secret_value()

    def clean(exc: Exception) -> str:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return text.replace(secret, "***") if secret else text

    try:
        conn = psycopg.connect(
            databases.mloop_uri,
            password=secret or None,
            connect_timeout=10,
            autocommit=True,  # CREATE DATABASE cannot run inside a transaction
        )
    except psycopg.Error as exc:
        raise MloopError(
            f"cannot connect to PostgreSQL database {databases.name!r}: {clean(exc)}",
            where=where,
            fix="check the server runs (`mloop infra status`), the user and password, and that the database "
            f"{databases.name} exists (createdb {databases.name})",
        ) from None
    created: list[str] = []
    try:
        with conn.cursor() as cur:
            for name in names:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is not None:
                    continue
                try:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                    created.append(name)
                except errors.DuplicateDatabase:
                    continue  # created meanwhile by another host's `up`
                except errors.InsufficientPrivilege:
                    raise MloopError(
                        f"the PostgreSQL role may not create database {name!r}",
                        where=where,
                        fix="let it (ALTER ROLE <user> CREATEDB), or have an administrator run: "
                        + "; ".join(f"CREATE DATABASE {n} OWNER <user>" for n in names),
                    ) from None
                except psycopg.Error as exc:
                    raise MloopError(
                        f"cannot create database {name!r}: {clean(exc)}", where=where
                    ) from None
    finally:
        conn.close()
    return created


FIRST_START_TEAM_TIMEOUT = 240.0
"""Seconds the Prefect and MLflow servers get to answer in team mode: a first start migrates fresh
databases on a server that may be across the network (Prefect's alone: about 40 s on a loaded 2-core
machine)."""

WORKER_SERVICE = "prefect-worker"
"""The first of the platform's own workers (``mloop up --workers N`` adds ``prefect-worker-2`` ... ``-N``)."""
WORKERS_FILE = "prefect-workers.wanted"
"""Under MLOOP_HOME/run: how many workers the last ``up`` asked for. The watchdog reads it every cycle, so a
later ``up`` with another count is followed without restarting the watchdog."""
_EXTRA_WORKER = re.compile(rf"{WORKER_SERVICE}-([1-9][0-9]*)")


def worker_service(index: int) -> str:
    """The service name of the platform's worker ``index`` (1-based): ``prefect-worker``, ``prefect-worker-2``... Pure."""
    if index < 1:
        raise ValueError(f"worker index must be >= 1, got {index}")
    return WORKER_SERVICE if index == 1 else f"{WORKER_SERVICE}-{index}"


def worker_index(name: str) -> int | None:
    """The index of the platform's worker service ``name`` (None: not one of them). Pure."""
    if name == WORKER_SERVICE:
        return 1
    found = _EXTRA_WORKER.fullmatch(name)
    return int(found.group(1)) if found and int(found.group(1)) > 1 else None


def worker_services(count: int) -> tuple[str, ...]:
    """The service names of ``count`` platform workers, in start order. Pure."""
    return tuple(worker_service(i) for i in range(1, count + 1))


def service_order(workers: int = 1) -> tuple[str, ...]:
    """:data:`SERVICE_ORDER` with ``workers`` worker services in place of the one. Pure."""
    out: list[str] = []
    for name in SERVICE_ORDER:
        out += worker_services(workers) if name == WORKER_SERVICE else [name]
    return tuple(out)


def write_wanted_workers(run_dir: Path, count: int) -> None:
    """Record that ``count`` workers are wanted (``up`` does, before it starts or stops any)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / WORKERS_FILE).write_text(f"{count}\n")


def wanted_workers(run_dir: Path, default: int) -> int:
    """How many workers the last ``up`` asked for (``default`` when it never said, or the file is unreadable)."""
    try:
        count = int((run_dir / WORKERS_FILE).read_text().strip())
    except (OSError, ValueError):
        return default
    return count if count >= 1 else default


def new_worker_name(port: int, token: str) -> str:
    """``mloop-worker-<port>-<token>``: unique per start, so a dead worker's registration (ONLINE in
    the pool until its heartbeat times out) is never mistaken for the new one. Pure."""
    return f"mloop-worker-{port}-{token}"


JOINED_WORKER = "worker"
"""The ``MLOOP_SERVICE`` marker of a worker ``mloop worker`` started (no pid file; ``down`` finds it by marker)."""
WORKER_SERVICES = (WORKER_SERVICE, JOINED_WORKER)
"""Services that are Prefect workers (besides ``prefect-worker-k``, see :func:`is_worker_service`)."""


def is_worker_service(name: str) -> bool:
    """True for a Prefect worker's service: stopped right after the watchdog, its own way (:func:`stop_worker`). Pure."""
    return name == JOINED_WORKER or worker_index(name) is not None


WORKER_ENV: dict[str, str] = {
    "PREFECT_WORKER_QUERY_SECONDS": "1",  # pick-up latency of triggered runs (a cheap query)
    "PREFECT_WORKER_PREFETCH_SECONDS": "10",
    "PREFECT_RUNNER_POLL_FREQUENCY": "2",
}
"""What every mloop worker (``up``'s and ``mloop worker``) adds to the platform environment."""


DEFAULT_QUEUE = "default"
"""The work queue of every deployment in prefect.yaml: the one the platform's own worker polls."""


def worker_argv(name: str, queues: Sequence[str] = ()) -> list[str]:
    """The command of a process worker named ``name`` on the platform's pool, polling ``queues`` (none:
    every queue of the pool). Pure."""
    by_queue = [arg for queue in queues for arg in ("--work-queue", queue)]
    return python_m(
        PREFECT,
        "worker",
        "start",
        "--pool",
        WORK_POOL,
        "--type",
        "process",
        "--name",
        name,
        *by_queue,
    )


def worker_name_path(run_dir: Path, service: str) -> Path:
    """``run/<service>.name``: the Prefect name of the worker ``service`` last started (each start gets a new one)."""
    return run_dir / f"{service}.name"


def worker_name(settings: Settings, service: str = WORKER_SERVICE) -> str | None:
    """The Prefect name of the worker ``service`` this MLOOP_HOME started last (None: never started)."""
    try:
        return worker_name_path(settings.state.run, service).read_text().strip() or None
    except OSError:
        return None


def _worker_online(settings: Settings, service: str = WORKER_SERVICE) -> bool:
    """The worker ``service`` this MLOOP_HOME started last is registered and ONLINE in the pool (False while the
    server is down)."""
    name = worker_name(settings, service)
    if name is None:
        return False
    try:
        return name in PrefectApi.of(settings, deadline=0).online_workers(WORK_POOL)
    except Exception:
        return False


# ---------------------------------------------------------------- service specs


def service_specs(settings: Settings, workers: int | None = None) -> list[ServiceSpec]:
    """The services ``up`` manages, in start order (serve comes later: it may need a champion), with
    ``workers`` worker services (default ``settings.workers``).

    With auth on, the platform secret is created here if missing (before any environment is built).
    """
    settings.credentials()
    env = platform_env(settings)
    unset = unset_env(settings)
    h = settings.host
    u = urls(settings)
    health = health_urls(settings)
    mlflow_argv, mlflow_env, write_auth_config = mlflow_spec_parts(settings)
    team = team_config(settings)

    def prepare_prefect() -> None:
        if team is not None:
            ensure_databases(team.databases, (team.databases.prefect_db,))

    def prepare_mlflow() -> None:
        if team is not None:
            auth_db = (team.databases.mlflow_auth_db,) if write_auth_config is not None else ()
            ensure_databases(team.databases, (team.databases.mlflow_db, *auth_db))
        if write_auth_config is not None:
            write_auth_config()

    return [
        ServiceSpec(
            name="prefect-server",
            argv=prefect_server_argv(h, settings.prefect_port),
            env={
                **env,
                **prefect_server_env(h, settings.prefect_port),
                **prefect_server_auth_env(settings),
                **prefect_database_env(team),
            },
            url=u["prefect_ui"],
            health=lambda: http_ok(health["prefect-server"]),
            timeout=120.0 if team is None else FIRST_START_TEAM_TIMEOUT,
            unset=unset,
            prepare=prepare_prefect,
            port=settings.prefect_port,
        ),
        ServiceSpec(
            name="mlflow",
            argv=mlflow_server_argv(settings, mlflow_argv),
            env={**env, **mlflow_env, **mlflow_team_env(team)},
            url=u["mlflow_ui"],
            health=lambda: http_ok(health["mlflow"]),
            timeout=90.0 if team is None else FIRST_START_TEAM_TIMEOUT,
            unset=unset,
            prepare=prepare_mlflow,
            port=settings.mlflow_port,
        ),
        ServiceSpec(
            name="webhook",
            argv=python_m(WEBHOOK),
            env=env,
            url=u["webhook"],
            health=lambda: http_ok(health["webhook"]),
            cwd=CODE_ROOT,
            unset=unset,
            port=settings.webhook_port,
        ),
        *(
            worker_spec(settings, i, env, unset)
            for i in range(1, (workers or settings.workers) + 1)
        ),
    ]


def mlflow_server_argv(settings: Settings, auth_argv: list[str]) -> list[str]:
    """``mlflow server`` on host:mlflow_port, one worker, with its stores, allowed hosts and ``auth_argv``."""
    return python_m(
        MLFLOW,
        "server",
        *auth_argv,
        *mlflow_store_argv(settings),
        "--host",
        settings.host,
        "--port",
        str(settings.mlflow_port),
        "--workers",
        "1",
        "--allowed-hosts",
        mlflow_allowed_hosts(settings),
    )


def worker_spec(
    settings: Settings, index: int, env: dict[str, str], unset: tuple[str, ...]
) -> ServiceSpec:
    """The platform's worker ``index`` (service :func:`worker_service`), with the platform environment ``env``.

    Each start gets a new Prefect name (written to ``run/<service>.name`` just before the start). The
    start is refused (under the service's lock) when the last ``up`` wants fewer workers
    (:func:`wanted_workers`): a watchdog that saw the old count never restarts a worker ``up`` stopped.
    """
    service = worker_service(index)
    worker = new_worker_name(settings.prefect_port, secrets.token_hex(3))
    run_dir = settings.state.run

    def check_wanted_and_write_name() -> None:
        wanted = wanted_workers(run_dir, settings.workers)
        if index > wanted:
            raise MloopError(
                f"{service} is not wanted: the last `mloop up` asked for {wanted} worker(s)",
                where=str(run_dir / WORKERS_FILE),
                fix=f"run `mloop up --workers {index}` (or more) to run it",
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        worker_name_path(run_dir, service).write_text(worker)

    return ServiceSpec(
        name=service,
        # The default queue only: a named queue is for workers that joined (`mloop worker --work-queue`).
        argv=worker_argv(worker, (DEFAULT_QUEUE,)),
        env={**env, **WORKER_ENV},
        url="",
        health=lambda: _worker_online(settings, service),
        cwd=CODE_ROOT,
        stop_grace=10.0,
        unset=unset,
        prepare=check_wanted_and_write_name,
        exclusive=False,
    )


def serve_spec(settings: Settings, command: ServeCommand) -> ServiceSpec:
    """The prediction service as a managed service (the platform never imports serving: the CLI passes ``command``)."""
    url = urls(settings)["serving"]
    return ServiceSpec(
        name="serve",
        argv=list(command.argv),
        env={**platform_env(settings), **command.env},
        url=url,
        health=lambda: http_ok(f"{url}{command.health_path}"),
        timeout=180.0,
        cwd=command.cwd or CODE_ROOT,
        unset=unset_env(settings),
        port=settings.serve_port,
    )


def heartbeat_fresh(run_dir: Path, max_age: float) -> bool:
    """True when the watchdog named by ``watchdog.pid`` touched its heartbeat less than ``max_age`` s ago.

    The heartbeat file holds the pid of the watchdog that wrote it: a dead watchdog's recent
    heartbeat does not pass for its successor's.
    """
    path = run_dir / HEARTBEAT_FILE
    try:
        fresh = time.time() - path.stat().st_mtime < max_age
        return (
            fresh
            and path.read_text().strip()
            == (run_dir / f"{WATCHDOG_SERVICE}.pid").read_text().strip()
        )
    except OSError:
        return False


def watchdog_spec(settings: Settings) -> ServiceSpec:
    """The watchdog (``python -m mloop.platform.watchdog``) as a managed service; healthy while its heartbeat is fresh."""
    run_dir = settings.state.run
    max_age = max(3 * settings.watchdog_seconds, 30.0)
    return ServiceSpec(
        name=WATCHDOG_SERVICE,
        argv=python_m(WATCHDOG),
        env=platform_env(settings),
        url="",
        health=lambda: heartbeat_fresh(run_dir, max_age),
        timeout=60.0,
        cwd=CODE_ROOT,
        unset=unset_env(settings),
        exclusive=False,
    )


# ---------------------------------------------------------------- start


def ensure_services(specs: list[ServiceSpec], run_dir: Path) -> list[ServiceState]:
    """Start the services of ``specs`` that are not running (all at once), then wait for each to be healthy.

    A live pid file means "already running": never started twice. The check and the start happen
    under the service's lock (:func:`mloop.core.processes.service_lock`), which every starter
    takes. Without a live pid file (the service died), its leftover processes are stopped with
    their trees before the start (see :func:`clear_orphans`). A port held or answered by anything
    else is refused with a fix, never adopted. When one fails, the services this call started are
    stopped again.
    """
    states: list[ServiceState] = []
    for spec in specs:
        with service_lock(run_dir, spec.name):
            states.append(_ensure_one(spec, run_dir))
    try:
        for spec, state in zip(specs, states, strict=True):
            assert state.pid is not None
            wait_ready(
                spec.health,
                what=spec.name,
                timeout=spec.timeout,
                pid=state.pid,
                log=Path(state.log),
            )
    except Exception:
        for spec, state in zip(specs, states, strict=True):
            if state.started and state.pid is not None:
                stop_pid(state.pid, grace=spec.stop_grace)
                (run_dir / f"{spec.name}.pid").unlink(missing_ok=True)
        raise
    return states


def _ensure_one(spec: ServiceSpec, run_dir: Path) -> ServiceState:
    """Start one service unless its pid file names a live process (the caller holds its lock)."""
    pid = read_pid(run_dir, spec.name)
    log = run_dir / f"{spec.name}.log"
    if pid is not None:
        return ServiceState(name=spec.name, pid=pid, running=True, url=spec.url, log=str(log))
    note = clear_orphans(spec, run_dir)
    if spec.exclusive and spec.health():
        raise NotReadyError(
            f"{spec.name} already answers at {spec.url or spec.name} but was not started by this MLOOP_HOME",
            where=str(run_dir),
            fix="stop that process, or choose other ports (MLOOP_PREFECT_PORT, MLOOP_MLFLOW_PORT, "
            "MLOOP_SERVE_PORT, MLOOP_WEBHOOK_PORT)",
        )
    if spec.prepare is not None:
        spec.prepare()
    proc = spawn_process(
        spec.name,
        spec.argv,
        run_dir=run_dir,
        env=spec.env,
        cwd=spec.cwd,
        url=spec.url,
        unset=spec.unset,
    )
    return ServiceState(
        name=spec.name,
        pid=proc.pid,
        running=True,
        started=True,
        url=spec.url,
        log=str(log),
        note=note,
    )


def orphan_note(name: str, pids: list[int]) -> str:
    """What ``up`` says after stopping the orphans of a dead service. Pure."""
    if not pids:
        return ""
    which = ", ".join(str(p) for p in pids)
    return f"stopped orphan pid{'s' if len(pids) > 1 else ''} {which} left by a dead {name}"


def clear_orphans(spec: ServiceSpec, run_dir: Path, *, timeout: float = 30.0) -> str:
    """Stop what a dead ``spec`` left running; returns a note ("" when nothing was left).

    Two kinds, both only of this platform (the MLOOP_HOME in ``spec.env``), each stopped with its
    whole tree: every process marked as this service (``MLOOP_SERVICE``, see
    :func:`mloop.core.processes.service_members`: e.g. BentoML's worker, in a session of its own,
    listening or not; flow runs of a dead worker), and every process listening on its port whose
    environment names this MLOOP_HOME (services started before the marker existed). If any
    listener is not ours (or unreadable), no listener is stopped and :func:`ensure_services`
    refuses the port as before. Waits until the port is free. Call it only while the service has
    no live pid file, under its lock.
    """
    home = spec.env.get("MLOOP_HOME")
    if not home:
        return ""
    doomed = set(service_members(home, spec.name))
    wait_free = False
    if spec.port is not None:
        listeners = listening_pids(spec.port)
        ours, foreign = split_listeners({pid: process_home(pid) for pid in listeners}, home)
        if ours and not foreign:
            doomed |= set(ours)
            wait_free = True
    for pid in sorted(doomed):
        stop_pid(pid, grace=spec.stop_grace, first=signal.SIGTERM)
    if wait_free and spec.port is not None:
        port = spec.port
        wait_ready(
            lambda: not listening_pids(port),
            what=f"port {port} of {spec.name} to be free",
            timeout=timeout,
        )
    return orphan_note(spec.name, sorted(doomed))


# ---------------------------------------------------------------- stop


def pid_files(run_dir: Path) -> dict[str, Path]:
    """Service name -> its pid file under ``run_dir``."""
    return {p.stem: p for p in sorted(run_dir.glob("*.pid"))} if run_dir.exists() else {}


def stop_order(names: list[str]) -> list[str]:
    """The watchdog first (it must not restart what is being stopped), then the workers (they must not pick up
    new runs while the rest goes down), then reverse start order. Pure."""
    order = [n for n in reversed(SERVICE_ORDER) if n in names] + sorted(
        n for n in names if n not in SERVICE_ORDER
    )
    order.sort(key=lambda n: 0 if n == WATCHDOG_SERVICE else 1 if is_worker_service(n) else 2)
    return order


def extra_workers(names: Iterable[str], wanted: int) -> list[str]:
    """The platform worker services among ``names`` beyond the first ``wanted``, highest index first. Pure."""
    extra = [(index, n) for n in names if (index := worker_index(n)) is not None and index > wanted]
    return [n for _, n in sorted(extra, reverse=True)]


def stop_extra_workers(run_dir: Path, home: Path, wanted: int) -> list[ServiceState]:
    """Stop the platform's workers beyond the first ``wanted`` (each under its lock, by pid, then anything still
    carrying its marker; ``up`` with a smaller count). Call :func:`write_wanted_workers` first, so no watchdog
    starts one again. Their flow runs stop with them (as on ``down``); the watchdog's orphans job marks such
    runs Crashed."""
    states: list[ServiceState] = []
    for name in extra_workers(pid_files(run_dir), wanted):
        stopped: dict[str, int] = {}
        with service_lock(run_dir, name):
            _stop_named(run_dir, name, stopped, [])
            for member in service_members(str(home), name):  # e.g. flow runs of a dead worker
                stop_pid(member, first=signal.SIGTERM)
            worker_name_path(run_dir, name).unlink(missing_ok=True)
        pid = stopped.get(name)
        note = f"stopped: {wanted} worker(s) wanted" if pid is not None else ""
        states.append(
            ServiceState(
                name=name,
                pid=pid,
                running=pid is not None and pid_alive(pid),
                log=str(run_dir / f"{name}.log"),
                note=note,
            )
        )
    return states


def stop_services(
    run_dir: Path, home: Path | None = None, *, progress: Progress | None = None
) -> tuple[dict[str, int], list[int]]:
    """Stop every service with a pid file under ``run_dir``; returns (name -> pid stopped, pids still alive).

    The watchdog goes first; the pid files are listed after it is gone (a service it restarted
    meanwhile is stopped too). With ``home`` (the MLOOP_HOME), processes still marked as one of
    its services afterwards (e.g. the worker of a serve whose pid file names a dead process) are
    stopped too; a service name that only had such leftovers is reported with the first of them.
    """
    stopped: dict[str, int] = {}
    still_alive: list[int] = []
    _stop_named(run_dir, WATCHDOG_SERVICE, stopped, still_alive, progress)
    names = stop_order(list(pid_files(run_dir)))
    for name in names:
        _stop_named(run_dir, name, stopped, still_alive, progress)
    if home is not None:
        workers = worker_services(
            max([wanted_workers(run_dir, 1), *(worker_index(n) or 1 for n in names)])
        )
        for name in stop_order(
            sorted(set(names) | set(SERVICE_ORDER) | set(workers) | {JOINED_WORKER})
        ):
            for pid in service_members(str(home), name):
                with step(progress, f"stopping {name} (pid {pid}, left over)"):
                    stop_service_pid(name, pid)
                stopped.setdefault(name, pid)
                if pid_alive(pid):
                    still_alive.append(pid)
    return stopped, still_alive


def _stop_named(
    run_dir: Path,
    name: str,
    stopped: dict[str, int],
    still_alive: list[int],
    progress: Progress | None = None,
) -> bool:
    """Stop the service whose pid file is ``run_dir/<name>.pid`` (recorded in ``stopped``/``still_alive``)."""
    pid = read_pid(run_dir, name)
    (run_dir / f"{name}.pid").unlink(missing_ok=True)
    if pid is None:
        return False
    with step(progress, f"stopping {name} (pid {pid})"):
        stop_service_pid(name, pid)
    stopped[name] = pid
    if pid_alive(pid):
        still_alive.append(pid)
    return True


def stop_service_pid(name: str, pid: int, *, grace: float = 8.0) -> None:
    """Stop service ``name`` running as ``pid`` with its tree (the worker its own way, see :func:`stop_worker`)."""
    if is_worker_service(name):
        stop_worker(pid)
    else:
        stop_pid(pid, grace=grace, first=signal.SIGTERM)


def stop_worker(pid: int) -> None:
    """SIGINT, a second SIGINT after a short grace (the worker then kills its flow runs), then the tree.

    The tree is taken before the first signal: flow-run processes the worker leaves behind when it
    exits are stopped too.
    """
    tree = process_tree(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        if pid_alive(pid):
            os.kill(pid, signal.SIGINT)
    stop_pid(pid, grace=10.0, first=signal.SIGINT, also=tree)

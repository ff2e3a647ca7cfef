"""Start, check and stop local service processes (Prefect server, worker, MLflow UI, bentoml serve).

Each service is started in its own process group with its log and pid file under
``MLOOP_HOME/run``; stopping is by process tree (psutil: descendants, also those in sessions of
their own, and the process group), with further signals after a grace period (the Prefect process
worker ignores the first SIGINT while it has flow runs: see STACK_NOTES).

Every service process gets ``MLOOP_SERVICE=<name>`` in its environment, which its children
inherit: the processes whose environment names this MLOOP_HOME and that service are the service
(:func:`service_members`), whatever session they moved to (BentoML's worker) and whether they
still listen or not. Starting a service happens under ``run/<name>.lock`` (:func:`service_lock`)
with a re-check of the pid file, so two starters (``mloop up``, the watchdog, the deploy flow)
never run two copies.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx
import psutil
from filelock import FileLock, Timeout

from mloop.core.entrypoints import PREFECT_SERVER, python_m
from mloop.core.errors import MloopError, NotReadyError
from mloop.core.service_urls import connect_host, prefect_api_url

T = TypeVar("T")


@dataclass(frozen=True)
class ServiceProcess:
    """A running service started by mloop."""

    name: str
    pid: int
    url: str
    log: Path
    started: bool = True
    """False when a live pid file showed the service already running (nothing was started)."""


SERVICE_ENV = "MLOOP_SERVICE"
"""Environment variable naming the service a process belongs to (set by :func:`spawn_process`, inherited)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on ``host`` (for tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        return _running(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def process_started(pid: int) -> datetime | None:
    """When the process ``pid`` started (UTC); None when none runs (a zombie counts as gone). Telling
    when lets a caller see that a recorded pid now names another, younger process."""
    try:
        proc = psutil.Process(pid)
        return datetime.fromtimestamp(proc.create_time(), UTC) if _running(proc) else None
    except psutil.NoSuchProcess:
        return None


def start_process(
    name: str,
    argv: Sequence[str],
    *,
    run_dir: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    url: str = "",
    ready_url: str | None = None,
    timeout: float = 90.0,
    unset: Iterable[str] = (),
) -> ServiceProcess:
    """Start ``argv`` detached in a new session unless ``<run_dir>/<name>.pid`` names a live process.

    Under the service's lock (:func:`service_lock`) the pid file is read again: when another
    starter got there first, nothing is started and its process is returned (``started=False``).
    Otherwise see :func:`spawn_process`. With ``ready_url``, wait (outside the lock) until it
    answers; a process this call started that dies or never answers is stopped (by pid) and the
    error raised, so a failed start leaves nothing running.
    """
    with service_lock(run_dir, name):
        running = read_pid(run_dir, name)
        if running is not None:
            proc = ServiceProcess(
                name=name, pid=running, url=url, log=run_dir / f"{name}.log", started=False
            )
        else:
            proc = spawn_process(
                name, argv, run_dir=run_dir, env=env, cwd=cwd, url=url, unset=unset
            )
    if ready_url is not None:
        try:
            wait_ready(
                lambda: http_ok(ready_url),
                what=ready_url,
                timeout=timeout,
                pid=proc.pid,
                log=proc.log,
            )
        except Exception:
            if proc.started:
                stop_pid(proc.pid)
            raise
    return proc


def spawn_process(
    name: str,
    argv: Sequence[str],
    *,
    run_dir: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    url: str = "",
    unset: Iterable[str] = (),
) -> ServiceProcess:
    """Start ``argv`` detached in a new session; write ``<run_dir>/<name>.pid`` and append to ``.log``.

    No check, no lock: callers hold :func:`service_lock` and have checked the pid file
    (:func:`start_process`, the platform's ``ensure_services``). The child gets this process's
    environment, updated with ``env``, without the ``unset`` names, and with ``MLOOP_SERVICE=name``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / f"{name}.log"
    full_env = {**child_env(env or {}, unset), SERVICE_ENV: name}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
        )
    (run_dir / f"{name}.pid").write_text(str(proc.pid))
    return ServiceProcess(name=name, pid=proc.pid, url=url, log=log)


@contextlib.contextmanager
def service_lock(run_dir: Path, name: str, *, timeout: float = 300.0) -> Iterator[None]:
    """Hold ``<run_dir>/<name>.lock`` (an exclusive filelock, ``flock`` underneath) while checking and starting a service.

    Every starter of a service takes it: the check of the pid file and the start are one step for
    the others. The lock goes with the process (a killed holder releases it). Not reentrant: a
    holder must not take it again. MloopError after ``timeout`` seconds of waiting.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"{name}.lock"
    lock = FileLock(path, timeout=timeout, poll_interval=0.1)
    try:
        lock.acquire()
    except Timeout:
        raise NotReadyError(
            f"{name} is being started by another process (lock held for {timeout:.0f}s)",
            where=str(path),
            fix="wait for the other start to finish, or stop the process that holds the lock",
        ) from None
    try:
        yield
    finally:
        lock.release()


def child_env(env: dict[str, str], unset: Iterable[str] = ()) -> dict[str, str]:
    """This process's environment updated with ``env``, without the names in ``unset``."""
    drop = set(unset)
    return {k: v for k, v in {**os.environ, **env}.items() if k not in drop}


def read_pid(run_dir: Path, name: str) -> int | None:
    """The pid in ``<run_dir>/<name>.pid`` if that process is alive, else None."""
    pid_file = run_dir / f"{name}.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when a GET of ``url`` answers 200 (a health check: errors are False)."""
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def poll(check: Callable[[], T], timeout: float, every: float = 0.1) -> T:
    """Call ``check`` every ``every`` s until it returns something truthy, for at most ``timeout`` s (the
    last call is at or after the deadline); returns that last value. Never raises by itself: a caller
    that must fail on a timeout raises its own error (e.g. :func:`mloop.platform.client.wait_for`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(every)


def wait_ready(
    check: Callable[[], bool],
    *,
    what: str,
    timeout: float = 60.0,
    pid: int | None = None,
    log: Path | None = None,
) -> None:
    """Poll ``check`` until it is True; MloopError (with the log tail) when ``pid`` exits first or on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid is not None and not pid_alive(pid):
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise MloopError(
                f"{what} (pid {pid}) exited while starting",
                where=str(log or ""),
                fix=f"read the log; last lines:\n{tail}",
            )
        if check():
            return
        time.sleep(0.3)
    raise MloopError(
        f"{what} not ready after {timeout:.0f}s", where=str(log or ""), fix="read the log"
    )


def stop_pid(
    pid: int, *, grace: float = 8.0, first: int = signal.SIGINT, also: Iterable[psutil.Process] = ()
) -> None:
    """Stop the process tree of ``pid``: ``first`` signal, then SIGTERM, then SIGKILL; wait until gone.

    The tree is ``pid``, its descendants (also those in sessions of their own, such as BentoML's
    workers), its process group (children orphaned earlier) and ``also`` (members captured
    before, see :func:`process_tree`). Each stage signals every member still running and waits
    up to ``grace`` (SIGKILL: 5 s); our own children are reaped.
    """
    tree = list(also)
    for sig, wait in ((first, grace), (signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        tree = process_tree(pid, tree)  # children started since the last stage too
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                proc.send_signal(sig)
        tree = _wait_gone(tree, wait)
        if not tree:
            return


def process_tree(pid: int, known: Iterable[psutil.Process] = ()) -> list[psutil.Process]:
    """Running members of ``pid``'s tree: ``pid``, ``known``, their descendants, and ``pid``'s process group."""
    roots: list[psutil.Process] = list(known)
    with contextlib.suppress(psutil.NoSuchProcess):
        roots.append(psutil.Process(pid))
    members: dict[int, psutil.Process] = {}
    for proc in roots:
        if not _running(proc):
            continue
        members.setdefault(proc.pid, proc)
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            for child in proc.children(recursive=True):
                members.setdefault(child.pid, child)
    for proc in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if proc.pid not in members and os.getpgid(proc.pid) == pid:
                members[proc.pid] = proc
    return [p for p in members.values() if _running(p)]


def _running(proc: psutil.Process) -> bool:
    """True while ``proc`` runs and is no zombie (the handle also guards against a reused pid)."""
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` for ``procs`` to end (reaping our children); returns those still running."""
    deadline = time.monotonic() + timeout
    alive = procs
    while alive:
        _, alive = psutil.wait_procs(alive, timeout=0.1)
        alive = [p for p in alive if _running(p)]  # a zombie someone else must reap counts as gone
        if time.monotonic() >= deadline:
            break
    return alive


def stop_service(run_dir: Path, name: str, *, grace: float = 8.0) -> bool:
    """Stop the service whose pid file is ``<run_dir>/<name>.pid``; True if one was running."""
    pid = read_pid(run_dir, name)
    (run_dir / f"{name}.pid").unlink(missing_ok=True)
    if pid is None:
        return False
    stop_pid(pid, grace=grace)
    return True


def listening_pids(port: int) -> list[int]:
    """Pids of the processes LISTENING on TCP ``port`` (any address). Sockets of other users'
    processes may show without a pid (psutil needs root for those): they are left out."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return []
    return sorted(
        {
            c.pid
            for c in conns
            if c.pid is not None
            and c.status == psutil.CONN_LISTEN
            and c.laddr
            and c.laddr.port == port
        }
    )


def process_home(pid: int) -> str | None:
    """The ``MLOOP_HOME`` in the environment of ``pid`` (None: not set, gone, or not ours to read)."""
    try:
        return psutil.Process(pid).environ().get("MLOOP_HOME")
    except (psutil.Error, OSError):
        return None


def same_home(a: str | None, b: str | None) -> bool:
    """True when both name the same MLOOP_HOME folder (resolved paths). Pure apart from path resolution."""
    if not a or not b:
        return False
    return Path(a).resolve() == Path(b).resolve()


def split_listeners(homes: Mapping[int, str | None], home: str) -> tuple[list[int], list[int]]:
    """(ours, foreign): listener pids whose ``MLOOP_HOME`` is ``home``, and all others. Pure.

    Ownership is by environment (the MLOOP_HOME every service of this platform is started with),
    never by process name: a process whose environment is unreadable or lacks it is foreign.
    """
    ours = sorted(pid for pid, h in homes.items() if same_home(h, home))
    foreign = sorted(pid for pid in homes if pid not in ours)
    return ours, foreign


def is_member(environ: Mapping[str, str], home: str, name: str) -> bool:
    """True when an environment marks a process of service ``name`` of MLOOP_HOME ``home``. Pure apart
    from path resolution (see :func:`same_home`)."""
    return environ.get(SERVICE_ENV) == name and same_home(environ.get("MLOOP_HOME"), home)


def service_members(home: str, name: str, *, exclude: Iterable[int] = ()) -> list[int]:
    """Pids of the running processes of service ``name`` of MLOOP_HOME ``home`` (by environment marker).

    Found by :data:`SERVICE_ENV` and ``MLOOP_HOME`` in each process's environment, never by process
    name; processes whose environment is unreadable (other users') are left out. This process and
    its ancestors, and ``exclude``, never count.
    """
    skip = set(exclude) | {os.getpid()}
    with contextlib.suppress(psutil.Error):
        skip |= {p.pid for p in psutil.Process().parents()}
    found: list[int] = []
    for proc in psutil.process_iter():
        if proc.pid in skip:
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if is_member(proc.environ(), home, name) and _running(proc):
                found.append(proc.pid)
    return sorted(found)


ALLOWED_HOSTS_ENV = "MLOOP_ALLOWED_HOSTS"
"""Where the Prefect server starter reads extra Host names (JSON list, as the Settings field)."""


def prefect_server_argv(host: str, port: int) -> list[str]:
    """The Prefect server behind mloop's Host allowlist (:data:`~mloop.core.entrypoints.PREFECT_SERVER`)
    on ``host:port`` with this interpreter: what ``prefect server start`` runs in the foreground."""
    return python_m(PREFECT_SERVER, "--host", host, "--port", str(port))


def prefect_server_env(host: str, port: int, allowed_hosts: Sequence[str] = ()) -> dict[str, str]:
    """What the server process needs on top of the service env to bind ``host:port``.

    ``allowed_hosts``: Host header names it accepts besides loopback and its bind address (empty:
    only those, or what ``MLOOP_ALLOWED_HOSTS`` of the env already says).
    """
    env = {
        "PREFECT_API_URL": prefect_api_url(connect_host(host), port),
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        # Deployment concurrency slots are leases; in memory (Prefect's default) they vanish when the
        # server is killed while the slot's count stays taken, so a limit-1 deployment (deploy) would
        # queue forever. On disk (PREFECT_HOME/concurrency_leases) they outlive a restart and expire.
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect.server.concurrency.lease_storage.filesystem",
    }
    if allowed_hosts:
        env[ALLOWED_HOSTS_ENV] = json.dumps(list(allowed_hosts))
    return env


def start_prefect_server(
    run_dir: Path,
    env: dict[str, str],
    host: str,
    port: int,
    timeout: float = 90.0,
    *,
    allowed_hosts: Sequence[str] = (),
) -> ServiceProcess:
    """Start the Prefect server on host:port (Host allowlist on) and wait until its health endpoint answers."""
    api = prefect_api_url(connect_host(host), port)
    return start_process(
        "prefect-server",
        prefect_server_argv(host, port),
        run_dir=run_dir,
        env={**env, **prefect_server_env(host, port, allowed_hosts)},
        url=api,
        ready_url=f"{api}/health",
        timeout=timeout,
    )

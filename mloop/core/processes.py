"""Start, check and stop local service processes (Prefect server, worker, MLflow UI, bentoml serve).

Each service is started in its own process group with its log and pid file under
``MLOOP_HOME/run``; stopping is by pid, with a second signal after a grace period (the Prefect
process worker ignores the first SIGINT while it has flow runs: see STACK_NOTES).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class ServiceProcess:
    """A running service started by mloop."""

    name: str
    pid: int
    url: str
    log: Path


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on ``host`` (for tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


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
) -> ServiceProcess:
    """Start ``argv`` detached in a new session; write ``<run_dir>/<name>.pid`` and ``.log``.

    With ``ready_url``, wait until it answers; a process that dies or never answers is stopped
    (by pid) and the error raised, so a failed start leaves nothing running.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / f"{name}.log"
    full_env = {**os.environ, **(env or {})}
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
    if ready_url is not None:
        try:
            wait_http(ready_url, timeout=timeout, pid=proc.pid, log=log)
        except Exception:
            stop_pid(proc.pid)
            raise
    return ServiceProcess(name=name, pid=proc.pid, url=url, log=log)


def read_pid(run_dir: Path, name: str) -> int | None:
    """The pid in ``<run_dir>/<name>.pid`` if that process is alive, else None."""
    pid_file = run_dir / f"{name}.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def wait_http(url: str, *, timeout: float = 60.0, pid: int | None = None, log: Path | None = None) -> None:
    """Wait until ``url`` answers 200; fail early with the log tail if ``pid`` died."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        if pid is not None and not pid_alive(pid):
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"process {pid} exited before {url} was ready. Log tail:\n{tail}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last_error = str(exc)
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s ({last_error})")


def stop_pid(pid: int, *, grace: float = 8.0, first: int = signal.SIGINT) -> None:
    """Stop a process group by pid: ``first`` signal, then SIGTERM, then SIGKILL; wait until gone."""
    for sig, wait in ((first, grace), (signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not pid_alive(pid):
                return
            time.sleep(0.1)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_service(run_dir: Path, name: str, *, grace: float = 8.0) -> bool:
    """Stop the service whose pid file is ``<run_dir>/<name>.pid``; True if one was running."""
    pid = read_pid(run_dir, name)
    (run_dir / f"{name}.pid").unlink(missing_ok=True)
    if pid is None:
        return False
    stop_pid(pid, grace=grace)
    return True


def prefect_server_argv(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]


def start_prefect_server(run_dir: Path, env: dict[str, str], host: str, port: int, timeout: float = 90.0) -> ServiceProcess:
    """Start ``prefect server start`` on host:port and wait until its health endpoint answers."""
    api = f"http://{host}:{port}/api"
    return start_process(
        "prefect-server",
        prefect_server_argv(host, port),
        run_dir=run_dir,
        env={**env, "PREFECT_API_URL": api, "PREFECT_SERVER_API_HOST": host, "PREFECT_SERVER_API_PORT": str(port)},
        url=api,
        ready_url=f"{api}/health",
        timeout=timeout,
    )

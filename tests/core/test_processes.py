"""Process helpers on real processes: liveness, stopping a whole tree, reaping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from mloop.core.processes import (
    ServiceProcess,
    listening_pids,
    pid_alive,
    process_home,
    same_home,
    split_listeners,
    start_process,
    stop_pid,
)
from mloop.core.service_urls import connect_host, http_url

# A parent that starts a child in a session of its own (as BentoML starts its workers), prints
# the child's pid and sleeps; both ignore SIGINT, so stopping them needs the escalation.
PARENT = """
import signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
child = subprocess.Popen(
    [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(120)"],
    start_new_session=True,
)
print(child.pid, flush=True)
time.sleep(120)
"""


def _child_pid(log: Path, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text().strip() if log.exists() else ""
        if text:
            return int(text.splitlines()[0])
        time.sleep(0.05)
    raise TimeoutError(f"no child pid in {log}")


def test_stop_pid_stops_the_tree_including_a_child_in_its_own_session(tmp_path: Path) -> None:
    parent = start_process("tree", [sys.executable, "-c", PARENT], run_dir=tmp_path)
    child = _child_pid(tmp_path / "tree.log")
    assert psutil.Process(child).ppid() == parent.pid
    assert os.getsid(child) != os.getsid(
        parent.pid
    )  # a session of its own: not in the parent's group
    t0 = time.monotonic()
    stop_pid(parent.pid, grace=1.0)
    assert not pid_alive(parent.pid)
    assert not pid_alive(child)
    assert time.monotonic() - t0 < 10


def test_stop_pid_first_signal_suffices_for_a_polite_tree(tmp_path: Path) -> None:
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); time.sleep(120)"
    parent = start_process("polite", [sys.executable, "-c", code], run_dir=tmp_path)
    deadline = time.monotonic() + 20
    while not psutil.Process(parent.pid).children() and time.monotonic() < deadline:
        time.sleep(0.05)
    (child,) = psutil.Process(parent.pid).children()
    t0 = time.monotonic()
    stop_pid(parent.pid, grace=30.0, first=signal.SIGTERM)
    assert time.monotonic() - t0 < 10  # no wait for the grace period: SIGTERM ended both
    assert not pid_alive(parent.pid) and not pid_alive(child.pid)


def test_pid_alive_is_false_for_a_zombie_and_for_a_reaped_pid() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 20
    while psutil.Process(proc.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE  # exited, not reaped yet
    assert not pid_alive(proc.pid)
    proc.wait()
    assert not pid_alive(proc.pid)


def test_stop_pid_of_a_gone_pid_is_a_no_op() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    stop_pid(proc.pid, grace=0.1)  # must not raise


@pytest.mark.parametrize("first", [signal.SIGINT, signal.SIGTERM])
def test_stop_pid_reaps_its_own_child(first: int) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    stop_pid(proc.pid, grace=5.0, first=first)
    assert not pid_alive(proc.pid)
    with pytest.raises(psutil.NoSuchProcess):
        psutil.Process(proc.pid)  # reaped, not left a zombie


def test_the_session_prefect_server_checks_the_host_header(prefect_server: ServiceProcess) -> None:
    """The Prefect server starts through mloop's starter: a foreign Host gets 400 (DNS rebinding)."""
    health = f"{prefect_server.url}/health"
    assert httpx.get(health, timeout=10).status_code == 200
    assert httpx.get(health, headers={"Host": "localhost"}, timeout=10).status_code == 200
    assert httpx.get(health, headers={"Host": "evil.example"}, timeout=10).status_code == 400


def test_a_wildcard_bind_is_reached_on_loopback() -> None:
    assert connect_host("0.0.0.0") == "127.0.0.1"
    assert connect_host("::") == "::1"
    assert connect_host("10.0.0.5") == "10.0.0.5"
    assert http_url("0.0.0.0", 3000) == "http://127.0.0.1:3000"
    assert http_url("::1", 3000) == "http://[::1]:3000"


def test_start_process_drops_the_unset_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_KEY", "cloud-key")
    code = "import os; print(os.environ.get('PREFECT_API_KEY', 'none'), os.environ['X'])"
    proc = start_process(
        "env",
        [sys.executable, "-c", code],
        run_dir=tmp_path,
        env={"X": "1"},
        unset=("PREFECT_API_KEY",),
    )
    deadline = time.monotonic() + 20
    while pid_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "env.log").read_text().split() == ["none", "1"]


# -- orphans: who listens on a port, and whose MLOOP_HOME it is

LISTENER = """
import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(120)
"""


def test_split_listeners_by_home_not_name(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    homes = {10: str(home), 11: str(home / ".." / "home"), 12: str(tmp_path / "other"), 13: None}
    assert split_listeners(homes, str(home)) == ([10, 11], [12, 13])
    assert split_listeners({}, str(home)) == ([], [])
    assert not same_home(None, str(home)) and not same_home("", "")


def test_listening_pids_and_process_home(tmp_path: Path) -> None:
    env = {**os.environ, "MLOOP_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", LISTENER], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        assert listening_pids(port) == [proc.pid]
        assert same_home(process_home(proc.pid), str(tmp_path))
    finally:
        stop_pid(proc.pid)
    assert listening_pids(port) == []
    assert process_home(proc.pid) is None

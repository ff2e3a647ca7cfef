"""Starting a service: one copy however many starters race, and its processes found by their marker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mloop.core.errors import MloopError
from mloop.core.processes import (
    SERVICE_ENV,
    is_member,
    pid_alive,
    service_lock,
    service_members,
    start_process,
    stop_pid,
)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]

# Started as a separate process: waits until GO exists, then starts the service "svc" (a sleeper).
RACER = """
import os, sys, time
from pathlib import Path
from mloop.core.processes import start_process
run_dir, go = Path(sys.argv[1]), Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
proc = start_process("svc", [sys.executable, "-c", "import time; time.sleep(120)"], run_dir=run_dir,
                     env={"MLOOP_HOME": sys.argv[3]})
print(proc.pid, proc.started, flush=True)
"""

# A parent (the service) starting a child in a session of its own, as BentoML starts its worker.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
print(child.pid, flush=True)
time.sleep(120)
"""


def test_is_member_needs_both_the_home_and_the_service(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    assert is_member({SERVICE_ENV: "serve", "MLOOP_HOME": home}, home, "serve")
    assert is_member({SERVICE_ENV: "serve", "MLOOP_HOME": home + "/"}, home, "serve")  # same folder
    assert not is_member(
        {SERVICE_ENV: "serve", "MLOOP_HOME": str(tmp_path / "other")}, home, "serve"
    )
    assert not is_member({SERVICE_ENV: "webhook", "MLOOP_HOME": home}, home, "serve")
    assert not is_member({"MLOOP_HOME": home}, home, "serve")
    assert not is_member({SERVICE_ENV: "serve"}, home, "serve")


def test_a_second_start_of_a_running_service_returns_it(tmp_path: Path) -> None:
    first = start_process("svc", SLEEPER, run_dir=tmp_path)
    try:
        second = start_process("svc", SLEEPER, run_dir=tmp_path)
        assert first.started and not second.started and second.pid == first.pid
    finally:
        stop_pid(first.pid)


def test_racing_starters_run_one_copy(tmp_path: Path) -> None:
    home, run_dir, go = tmp_path / "home", tmp_path / "run", tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(run_dir), str(go), str(home)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        time.sleep(1.0)  # let every racer import and wait
        go.touch()
        answers = [r.communicate(timeout=60)[0].split() for r in racers]
        pids = {int(a[0]) for a in answers}
        assert len(pids) == 1, answers
        assert sorted(a[1] for a in answers) == ["False", "False", "False", "True"]
        assert service_members(str(home), "svc") == sorted(pids)
    finally:
        for pid in service_members(str(home), "svc"):
            stop_pid(pid)


def test_service_members_find_a_child_in_its_own_session_by_marker(tmp_path: Path) -> None:
    home = tmp_path / "home"
    parent = start_process(
        "tree", [sys.executable, "-c", PARENT], run_dir=tmp_path, env={"MLOOP_HOME": str(home)}
    )
    other = start_process(
        "tree", SLEEPER, run_dir=tmp_path / "other", env={"MLOOP_HOME": str(tmp_path / "elsewhere")}
    )
    try:
        deadline = time.monotonic() + 20
        log = tmp_path / "tree.log"
        while not log.read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(log.read_text().split()[0])
        assert os.getsid(child) != os.getsid(parent.pid)
        os.kill(parent.pid, 9)  # the service dies; its child lives on in its own session
        deadline = time.monotonic() + 10
        while pid_alive(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service_members(str(home), "tree") == [child]  # not the other home's, not by name
        assert service_members(str(home), "webhook") == []
    finally:
        for pid in (parent.pid, other.pid, *service_members(str(home), "tree")):
            if pid_alive(pid):
                stop_pid(pid)


def test_service_lock_is_exclusive_and_times_out(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from mloop.core.processes import service_lock\n"
            "with service_lock(Path(sys.argv[1]), 'svc'):\n    print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(MloopError, match="being started by another process"),
            service_lock(tmp_path, "svc", timeout=0.5),
        ):
            pass
        holder.kill()
        holder.wait()
        with service_lock(tmp_path, "svc", timeout=5):  # a killed holder released it
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()

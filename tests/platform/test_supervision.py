"""Supervision: `mloop up` after a service was SIGKILLed brings it back, with no orphan left.

The pure parts and :func:`clear_orphans` on plain processes first; then one real platform:
1. SIGKILL of the serving process group leaves BentoML's worker (a session of its own) on the port;
   `mloop up` stops that orphan (its environment names this MLOOP_HOME) and serves the champion again.
2. SIGKILL of the Prefect worker: its registration stays ONLINE for a while, yet `mloop up` starts a
   new worker at once (a new name) and waits for THAT one to be ONLINE.

This module's platform runs without the watchdog (``MLOOP_WATCHDOG=false``): it would restart the
killed services before `mloop up` does, and what is tested here is `up`'s own supervision (the
watchdog's is in tests/platform/test_watchdog.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mloop.core.generate import generate, write_frame
from mloop.core.processes import listening_pids, pid_alive, process_tree, stop_pid
from mloop.platform.services import ServiceSpec, clear_orphans, new_worker_name, orphan_note
from tests.platform.helpers import Platform, wait_for

MODEL = "loans"
ROWS = 2000
PLATFORM_SETTINGS = {"watchdog": False}  # see the module docstring

LISTENER = """
import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
time.sleep(120)
"""


def test_worker_names_are_unique_and_notes_say_what_happened() -> None:
    assert new_worker_name(4200, "a1b2c3") == "mloop-worker-4200-a1b2c3"
    assert orphan_note("serve", []) == ""
    assert orphan_note("serve", [12]) == "stopped orphan pid 12 left by a dead serve"
    assert orphan_note("serve", [12, 13]) == "stopped orphan pids 12, 13 left by a dead serve"


@pytest.mark.parametrize("ours", [True, False])
def test_clear_orphans_stops_only_our_listeners(tmp_path: Path, ours: bool) -> None:
    home = tmp_path / "home"
    child_home = home if ours else tmp_path / "someone-else"
    proc = subprocess.Popen(
        [sys.executable, "-c", LISTENER],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "MLOOP_HOME": str(child_home)},
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        spec = ServiceSpec(
            name="serve",
            argv=[],
            env={"MLOOP_HOME": str(home)},
            url="",
            health=lambda: False,
            port=port,
        )
        note = clear_orphans(spec, tmp_path / "run")
        if ours:
            assert note == f"stopped orphan pid {proc.pid} left by a dead serve"
            assert listening_pids(port) == [] and not pid_alive(proc.pid)
        else:
            assert note == "" and listening_pids(port) == [proc.pid]  # someone else's: left alone
    finally:
        if pid_alive(proc.pid):
            stop_pid(proc.pid)


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_sigkill_of_serving_group_then_up_serves_again_without_orphans(
    platform: Platform, tmp_path: Path
) -> None:
    p = platform
    source = write_frame(generate("baseline", ROWS, 1), tmp_path / "loans-v1.parquet")
    p.cli_json(
        "ingest",
        str(source),
        "--dataset",
        MODEL,
        "--target",
        "target",
        "--time-column",
        "event_time",
    )
    served = wait_for(
        lambda: p.serving.served_model(),
        420,
        "v1 to be trained, promoted and deployed by the triggers",
    )
    serve_pid = int((p.settings.state.run / "serve.pid").read_text())
    old_tree = process_tree(serve_pid)
    assert len(old_tree) > 1, "bentoml serve without workers?"

    os.killpg(os.getpgid(serve_pid), signal.SIGKILL)
    wait_for(lambda: not pid_alive(serve_pid), 10, "the serve process to die")
    # The bug being fixed: the worker, in a session of its own, outlives its group and keeps the port.
    orphans = set(listening_pids(p.settings.serve_port)) & {q.pid for q in old_tree}
    assert orphans, "no orphan worker kept the port (nothing to supervise?)"
    assert p.serving.served_model() is not None

    t0 = time.monotonic()
    out = p.cli("up", "--json")
    up_seconds = time.monotonic() - t0
    assert out.returncode == 0, f"mloop up failed:\n{out.stdout}\n{out.stderr}\n{p.logs_tail()}"
    t1 = time.monotonic()
    again = wait_for(
        lambda: p.serving.served_model(), 30, "serving to answer again after `mloop up`"
    )
    after_up = time.monotonic() - t1
    print(f"\nmloop up took {up_seconds:.1f}s; serving answered {after_up:.1f}s after it returned")
    assert str(again["model_version"]) == str(served["model_version"])

    state = {s["name"]: s for s in json.loads(out.stdout)["services"]}["serve"]
    assert state["started"] and state["pid"] != serve_pid
    assert "stopped orphan pid" in state["note"] and "dead serve" in state["note"]
    left = [q.pid for q in old_tree if q.is_running() and q.status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"processes of the killed serve tree still alive: {left}"
    assert set(listening_pids(p.settings.serve_port)).isdisjoint({q.pid for q in old_tree})


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_sigkill_of_worker_then_up_starts_a_new_one_at_once(platform: Platform) -> None:
    p = platform
    run = p.settings.state.run
    old_pid = int((run / "prefect-worker.pid").read_text())
    old_name = (run / "prefect-worker.name").read_text().strip()
    assert old_name in p.prefect.online_workers("mloop-local")

    os.killpg(os.getpgid(old_pid), signal.SIGKILL)
    wait_for(lambda: not pid_alive(old_pid), 10, "the worker to die")
    stale = old_name in p.prefect.online_workers(
        "mloop-local"
    )  # usually still ONLINE (heartbeat timeout)

    t0 = time.monotonic()
    out = p.cli("up", "--json")
    seconds = time.monotonic() - t0
    assert out.returncode == 0, (
        f"mloop up failed (stale registration: {stale}):\n{out.stdout}\n{out.stderr}"
    )
    assert "already answers" not in out.stdout + out.stderr

    state = {s["name"]: s for s in json.loads(out.stdout)["services"]}["prefect-worker"]
    new_name = (run / "prefect-worker.name").read_text().strip()
    print(
        f"\nmloop up took {seconds:.1f}s with the dead worker's registration {'ONLINE' if stale else 'gone'}"
    )
    assert state["started"] and state["pid"] != old_pid and pid_alive(state["pid"])
    assert new_name != old_name and new_name in p.prefect.online_workers("mloop-local")

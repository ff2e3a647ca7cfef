"""Chaos: the loop runs while random services are SIGKILLed; at the end it has converged.

On one real `mloop up` (with its watchdog): v1 is ingested, trained, promoted and served by the
triggers; then drifted traffic with labels flows and the monitor runs every half minute while
:mod:`tests.platform.chaos` SIGKILLs random services (prediction service, its worker, Prefect
worker, Prefect server, MLflow, webhook) at random moments. After the last kill the platform must
converge: every service up, the champion served, no flow run left Running or Pending, every
prediction id a client was answered in the prediction log; `mloop down` then leaves no process.

`make test` runs a short schedule (CHAOS_KILLS, default 10 kills); `make chaos` a longer one.
The seed is printed (CHAOS_SEED replays a schedule).
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest

from mloop.core.generate import generate, write_frame
from tests.platform.chaos import ChaosLog, Traffic, kill_plan, platform_processes, run_chaos
from tests.platform.helpers import drifted_traffic, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

MODEL = "loans"
KILLS = int(os.environ.get("CHAOS_KILLS", "10"))
SEED = int(os.environ.get("CHAOS_SEED", str(random.SystemRandom().randrange(1_000_000))))
CONVERGE_SECONDS = 600
ACTIVE = ("RUNNING", "PENDING")


def test_kill_plan_is_seeded_and_spread() -> None:
    a = kill_plan(7, 12, min_gap=2, max_gap=5)
    assert a == kill_plan(7, 12, min_gap=2, max_gap=5) and len(a) == 12
    gaps = [b.at - c.at for b, c in zip(a[1:], a[:-1], strict=True)]
    assert all(2 <= g <= 5.01 for g in gaps)
    assert (
        len({k.target for k in kill_plan(1, 60, min_gap=1, max_gap=2)}) == 6
    )  # every target comes up


def _describe(run: dict) -> str:
    """What a failure message needs to tell a stuck run's cause: its state and age, its process, its parent."""
    from mloop.core.processes import pid_alive
    from mloop.platform.orphans import run_pid

    pid = run_pid(run.get("infrastructure_pid"))
    process = "no pid" if pid is None else f"pid {pid} {'alive' if pid_alive(pid) else 'gone'}"
    parent = (
        f", subflow of task run {run['parent_task_run_id']}"
        if run.get("parent_task_run_id")
        else ""
    )
    since = (run.get("state") or {}).get("timestamp")
    return f"{run['name']} {run['state_type']} since {since} ({process}, deployment {run.get('deployment_id')}{parent})"


def _converged(platform) -> str | None:
    """None when the loop has converged, else what is still missing."""
    from models.registry import champion_version

    st = platform.settings
    for name in ("prefect-server", "mlflow", "webhook", "prefect-worker", "serve"):
        if not (st.state.run / f"{name}.pid").exists():
            return f"{name} not running"
    if not platform.prefect.healthy(deadline=2):
        return "prefect server not answering"
    active = [r for r in platform.prefect.flow_runs(limit=200) if r["state_type"] in ACTIVE]
    if active:
        return f"{len(active)} flow run(s) still active: {[_describe(r) for r in active][:5]}"
    champion = champion_version(st.tracking_uri, MODEL)
    served = platform.serving.served_model()
    if served is None or str(served.get("model_version")) != str(champion):
        return f"champion {champion} not served (serving {served and served.get('model_version')})"
    return None


def test_loop_converges_after_random_kills(platform, tmp_path: Path) -> None:
    print(f"chaos: {KILLS} kills, seed {SEED} (CHAOS_SEED={SEED} replays it)")
    # v1 through the triggers, before any fault.
    source = tmp_path / "loans-v1.parquet"
    write_frame(generate("baseline", 3000, 1), source)
    run = platform.prefect.run_deployment(
        "ingest/local",
        {"path": str(source), "dataset": MODEL, "target": "target", "time_column": "event_time"},
    )
    assert platform.prefect.wait_run(run, 300)["state_type"] == "COMPLETED", platform.logs_tail()
    wait_for(lambda: platform.serving.served_model(), 420, "v1 to be served")

    stop = threading.Event()
    traffic = Traffic(platform, drifted_traffic(4000, 7))
    log = ChaosLog()
    plan = kill_plan(SEED, KILLS, min_gap=3, max_gap=9)
    threads = [threading.Thread(target=traffic.run, args=(stop,), daemon=True)]
    chaos = threading.Thread(
        target=run_chaos, args=(plan, platform.settings.state.run, stop, log), daemon=True
    )
    for t in [*threads, chaos]:
        t.start()
    # The monitor runs every half minute through the kills (a run may itself be killed).
    while chaos.is_alive():
        try:
            platform.prefect.run_deployment(
                "monitor/local", {"model_name": MODEL, "window_size": 1000}
            )
        except Exception as exc:
            print(f"monitor not started: {exc!r}")
        chaos.join(30)
    stop.set()
    for t in threads:
        t.join(30)
    print(f"chaos: kills {log.kills}")
    print(
        f"traffic: {len(traffic.answered)} answered, {traffic.labelled} labelled, {traffic.errors} errors"
    )
    assert len(log.kills) >= KILLS, f"only {len(log.kills)} kills happened: {log.kills}"
    assert traffic.answered, "no prediction was answered during the chaos"

    # Converged: services up, champion served, nothing left Running/Pending.
    deadline = time.monotonic() + CONVERGE_SECONDS
    missing = _converged(platform)
    while missing is not None and time.monotonic() < deadline:
        time.sleep(5)
        missing = _converged(platform)
    assert missing is None, (
        f"not converged after {CONVERGE_SECONDS}s: {missing}\n{platform.logs_tail()}"
    )

    # Every answered prediction id is in the log.
    from serving.log.predictions import read_predictions

    logged = set(read_predictions(platform.settings.state.predictions, MODEL)["prediction_id"])
    lost = traffic.answered - logged
    assert not lost, (
        f"{len(lost)} of {len(traffic.answered)} answered predictions are not in the log"
    )

    # `mloop down` leaves nothing of this platform running.
    result = platform.cli_json("down")
    assert result["still_alive"] == []
    home = platform.settings.state.root
    deadline = time.monotonic() + 30
    while platform_processes(home) and time.monotonic() < deadline:
        time.sleep(1)
    assert not platform_processes(home), (
        f"left running after mloop down: {platform_processes(home)}"
    )

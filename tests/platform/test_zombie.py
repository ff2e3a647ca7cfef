"""Zombie runs on a real `mloop up`: SIGKILL of the Prefect worker during training.

v1 is ingested and becomes the served champion (the triggers train, promote and deploy it). Then a
train run is started by hand (force, and a gate with many bootstrap resamples, so it stays inside
its MLflow run for a while); once its MLflow run exists and the flow run is Running, the worker's
whole process group (worker + flow-run process) is SIGKILLed and `mloop up` starts a new worker.
The issue's bounds: the run is Crashed within 3 minutes of the kill (heartbeats every 30 s, the
zombie automation after 90 s without one), its MLflow run FAILED (the recover flow), the champion
unchanged, a new worker ONLINE, and the training redone exactly once (the retry reaches COMPLETED).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from mloop.core.generate import generate, write_frame
from mloop.core.processes import pid_alive
from mloop.core.tags import TAG_FLOW_RUN_ID
from tests.platform.helpers import Platform, wait_for

MODEL = "loans"
ROWS = 2000
CRASHED_WITHIN = 180  # the bound, seconds after the kill
SLOW_GATE = {
    "resamples": 300_000
}  # ~5 s per paired bootstrap on a 400-row holdout: a window to kill in

pytestmark = pytest.mark.integration
# `mloop up` is the one that starts the new worker here: the watchdog (every 5 s) would race it.
PLATFORM_SETTINGS = {"watchdog": False}


def _mlflow_runs(uri: str, flow_run_id: str) -> list[Any]:
    """The MLflow runs a Prefect flow run started (any experiment)."""
    from mlflow.entities import ViewType

    from models.registry import mlflow_client

    client = mlflow_client(uri)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return (
        list(
            client.search_runs(
                experiments,
                filter_string=f"tags.`{TAG_FLOW_RUN_ID}` = '{flow_run_id}'",
                run_view_type=ViewType.ALL,
            )
        )
        if experiments
        else []
    )


def _retries(p: Platform, run_id: str) -> list[dict[str, Any]]:
    from models.recovery import retry_tag

    return [r for r in p.prefect.flow_runs("train") if retry_tag(run_id) in (r.get("tags") or [])]


@pytest.mark.timeout(1500)
def test_sigkill_of_worker_during_training_crashes_the_run_and_trains_again_once(
    platform: Platform, tmp_path: Path
) -> None:
    from models.registry import champion_version

    p, uri = platform, platform.settings.tracking_uri
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
    wait_for(
        lambda: p.serving.served_model(),
        420,
        "v1 to be trained, promoted and deployed by the triggers",
    )
    champion = champion_version(uri, MODEL)
    assert champion is not None

    run_id = p.prefect.run_deployment(
        "train/local",
        {"dataset": MODEL, "force": True, "trigger": "zombie-test", "gate_params": SLOW_GATE},
    )
    wait_for(
        lambda: (
            p.prefect.flow_run(run_id)["state_type"] == "RUNNING"
            and any(r.info.status == "RUNNING" for r in _mlflow_runs(uri, run_id))
        ),
        300,
        "the train run to be Running with an open MLflow run",
        every=0.3,
    )
    worker_pid = int((p.settings.state.run / "prefect-worker.pid").read_text())
    os.killpg(os.getpgid(worker_pid), signal.SIGKILL)
    killed = time.monotonic()
    assert p.prefect.flow_run(run_id)["state_type"] == "RUNNING", (
        "the run ended before the kill: train slower"
    )
    wait_for(lambda: not pid_alive(worker_pid), 10, "the worker to die")

    out = p.cli("up", "--json")
    assert out.returncode == 0, f"mloop up failed:\n{out.stdout}\n{out.stderr}\n{p.logs_tail()}"
    worker = {s["name"]: s for s in json.loads(out.stdout)["services"]}["prefect-worker"]
    new_name = (p.settings.state.run / "prefect-worker.name").read_text().strip()
    assert worker["started"] and worker["pid"] != worker_pid and pid_alive(worker["pid"])
    assert new_name in p.prefect.online_workers("mloop-local")

    remaining = CRASHED_WITHIN - (time.monotonic() - killed)
    crashed = wait_for(
        lambda: (r := p.prefect.flow_run(run_id))["state_type"] == "CRASHED" and r,
        remaining,
        f"the killed run to be Crashed within {CRASHED_WITHIN} s of the kill",
    )
    print(
        f"\nrun Crashed {time.monotonic() - killed:.0f} s after the kill: {crashed['state']['message']}"
    )
    assert "no heartbeat" in crashed["state"]["message"]

    wait_for(
        lambda: all(r.info.status == "FAILED" for r in _mlflow_runs(uri, run_id)),
        120,
        "the crashed run's MLflow runs to be FAILED",
    )
    assert _mlflow_runs(uri, run_id), "the crashed run's MLflow run is gone"
    assert champion_version(uri, MODEL) == champion, "a crash moved the champion"

    retry = wait_for(lambda: _retries(p, run_id), 120, "the recover flow to start a retry")
    assert len(retry) == 1
    done = p.prefect.wait_run(retry[0]["id"], timeout=420)
    assert done["state_type"] == "COMPLETED", done["state"]
    assert done["parameters"]["trigger"] == "zombie-test" and done["parameters"]["force"] is True
    assert len(_retries(p, run_id)) == 1
    assert [
        r["id"]
        for r in p.prefect.flow_runs("train")
        if (r["parameters"] or {}).get("trigger") == "zombie-test"
    ] == [run_id, retry[0]["id"]], "the training was not redone exactly once"
    recover = [r for r in p.prefect.flow_runs("recover") if run_id in json.dumps(r["parameters"])]
    assert (
        len(recover) == 1
        and p.prefect.wait_run(recover[0]["id"], timeout=60)["state_type"] == "COMPLETED"
    )

"""SIGKILL of the serving WORKER (the arbiter's child that answers /predict) in a real ``bentoml serve``:
BentoML respawns it; the respawned worker serves the model rolled out before the kill, and every
prediction id a client received before, during and after the kill is in the prediction log."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import httpx
import psutil
import pytest

from mloop.core.processes import ServiceProcess, stop_pid
from serving.api.rollout_record import read_rolled_out, rolled_out_path
from serving.log.predictions import read_predictions
from tests.serving.helpers import AUTH, TOKEN, Packaged, PredictLoad, records, start

T = TypeVar("T")


def _worker_pid(arbiter: int) -> int | None:
    """The live BentoML worker process under ``arbiter`` (None while there is none)."""
    try:
        children = psutil.Process(arbiter).children(recursive=True)
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            if (
                any("_bentoml_impl.worker" in part for part in child.cmdline())
                and child.status() != psutil.STATUS_ZOMBIE
            ):
                return child.pid
        except psutil.NoSuchProcess:
            continue
    return None


def _wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """The first truthy value ``check`` returns within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _model(url: str) -> dict | None:
    try:
        resp = httpx.get(f"{url}/model", timeout=5)
    except httpx.HTTPError:
        return None
    return resp.json() if resp.status_code == 200 else None


def _kill_worker(proc: ServiceProcess) -> int:
    """SIGKILL the worker; wait until a NEW worker answers /model. Returns the new worker's pid."""
    old = _worker_pid(proc.pid)
    assert old is not None, "no worker process found under the arbiter"
    os.kill(old, signal.SIGKILL)

    def respawned() -> int | None:
        new = _worker_pid(proc.pid)
        return new if new not in (None, old) and _model(proc.url) else None

    new = _wait_for(respawned, 90, "the respawned worker")
    assert psutil.pid_exists(proc.pid), "the arbiter died with its worker"
    return new


@pytest.fixture(scope="module")
def service(packaged: Packaged) -> Iterator[ServiceProcess]:
    """``loans:v1`` served with a 60 s flush interval: before a kill, the answered rows are only in
    memory and in the journal (a clean start: no rollout record from an earlier test module)."""
    rolled_out_path(packaged.settings.state.root, "loans").unlink(missing_ok=True)
    proc = start(packaged, MLOOP_PREDLOG_FLUSH_SECONDS="60")
    try:
        yield proc
    finally:
        stop_pid(proc.pid, first=15)


def test_a_respawned_worker_serves_the_model_rolled_out_before_the_kill(
    service: ServiceProcess, packaged: Packaged
) -> None:
    from serving.control.rollout_client import rollout

    before = _model(service.url)
    assert before is not None and before["model_version"] == "1"
    rollout(service.url, packaged.v2.model_tag, token=TOKEN)
    record = read_rolled_out(packaged.settings.state.root, "loans")
    assert (
        record is not None
        and record.model_tag == packaged.v2.model_tag
        and record.initial_tag == "loans:v1"
    )
    _kill_worker(service)
    now = _model(service.url)
    assert (
        now is not None
        and now["model_version"] == "2"
        and now["bentoml_tag"] == packaged.v2.model_tag
    )
    resp = httpx.post(
        f"{service.url}/predict",
        json={"records": records(packaged.holdout, 1)},
        headers=AUTH,
        timeout=10,
    )
    assert resp.status_code == 200 and resp.json()[0]["model_version"] == "2"


def test_sigkill_of_the_worker_under_load_loses_no_answered_prediction(
    service: ServiceProcess, packaged: Packaged
) -> None:
    with PredictLoad(service.url, records(packaged.holdout, 20)) as load:
        _wait_for(lambda: len(load.answered) >= 600, 60, "600 answered predictions")
        before_kill = len(load.answered)
        _kill_worker(service)
        _wait_for(
            lambda: len(load.answered) >= before_kill + 200, 60, "answers from the respawned worker"
        )
    answered = load.answered
    # the new worker's rows are still in its buffer (60 s flush) and journal; the dead worker's only in
    # its journal: the reader compacts the dead writer's segments
    logged = read_predictions(packaged.settings.state.predictions, "loans")
    ids = set(logged["prediction_id"])
    killed_batch = set(answered[:before_kill])
    missing = killed_batch - ids
    assert not missing, (
        f"{len(missing)} of {len(killed_batch)} predictions answered before the kill are not in the log"
    )
    stop_pid(service.pid, first=15)  # SIGTERM: the respawned worker flushes its buffer
    logged = read_predictions(packaged.settings.state.predictions, "loans")
    missing = set(answered) - set(logged["prediction_id"])
    assert not missing, f"{len(missing)} of {len(answered)} answered predictions are not in the log"
    assert logged["prediction_id"].is_unique

"""SIGTERM under load: every request answered 200 is in the prediction log afterwards."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx

from mloop.core.processes import pid_alive, stop_pid
from serving.predlog import read_predictions
from tests.serving.helpers import Packaged, records, start


def test_sigterm_under_load_loses_no_answered_prediction(packaged: Packaged) -> None:
    # a long flush interval: without the shutdown flush, the answered predictions would be lost
    proc = start(packaged, MLOOP_PREDLOG_FLUSH_SECONDS="60")
    answered: list[str] = []
    stop = threading.Event()
    recs = records(packaged.holdout, 20)

    def client_loop() -> None:
        with httpx.Client(base_url=proc.url, timeout=10) as client:
            i = 0
            while not stop.is_set():
                try:
                    resp = client.post("/predict", json={"records": [recs[i % 20], recs[(i + 1) % 20]]})
                except httpx.HTTPError:
                    time.sleep(0.01)
                    continue
                finally:
                    i += 1
                if resp.status_code == 200:
                    answered.extend(a["prediction_id"] for a in resp.json())

    threads = [threading.Thread(target=client_loop) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        while len(answered) < 200:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while pid_alive(proc.pid) and time.monotonic() < deadline:
            try:
                os.waitpid(proc.pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.1)
        assert not pid_alive(proc.pid), "service did not exit after SIGTERM"
    finally:
        stop.set()
        for t in threads:
            t.join()
        stop_pid(proc.pid, first=signal.SIGTERM)
    logged = read_predictions(packaged.settings.state.predictions, "loans")
    missing = set(answered) - set(logged["prediction_id"])
    assert len(answered) >= 200
    assert not missing, f"{len(missing)} of {len(answered)} answered predictions are not in the log"

"""SIGTERM under load: every request answered 200 is in the prediction log afterwards."""

from __future__ import annotations

import os
import signal
import time

import httpx

from mloop.core.processes import pid_alive, stop_pid
from serving.log.predictions import read_predictions
from tests.serving.helpers import AUTH, Packaged, PredictLoad, records, start


def test_sigterm_under_load_loses_no_answered_prediction(packaged: Packaged) -> None:
    # a long flush interval: without the shutdown flush, the answered predictions would be lost
    proc = start(packaged, MLOOP_PREDLOG_FLUSH_SECONDS="60")
    try:
        with PredictLoad(proc.url, records(packaged.holdout, 20)) as load:
            while len(load.answered) < 200:
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGTERM)
            _wait_exit(proc.pid)
            assert not pid_alive(proc.pid), "service did not exit after SIGTERM"
    finally:
        stop_pid(proc.pid, first=signal.SIGTERM)
    answered = load.answered
    logged = read_predictions(packaged.settings.state.predictions, "loans")
    missing = set(answered) - set(logged["prediction_id"])
    assert len(answered) >= 200
    assert not missing, f"{len(missing)} of {len(answered)} answered predictions are not in the log"


def _wait_exit(pid: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while pid_alive(pid) and time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)


def test_an_out_of_range_request_then_100_good_ones_all_reach_the_log_at_sigterm(
    packaged: Packaged,
) -> None:
    """Issue 9 (b): one request a parquet column cannot hold must not stop the log. It is refused
    4xx naming the field (or, if it got through, set aside as dead letter); the next 100 answered
    requests are all in the log after SIGTERM (flush interval 60 s: only the shutdown flush writes)."""
    proc = start(packaged, MLOOP_PREDLOG_FLUSH_SECONDS="60")
    recs = records(packaged.holdout, 100)
    accepted_bad: list[str] = []
    good: list[str] = []
    try:
        with httpx.Client(base_url=proc.url, timeout=10, headers=AUTH) as client:
            for field, value in (("n_accounts", 2**63), ("age", 1e308), ("n_accounts", 1e308)):
                resp = client.post("/predict", json={"records": [{**recs[0], field: value}]})
                if resp.status_code == 200:
                    accepted_bad.extend(a["prediction_id"] for a in resp.json())
                else:
                    assert 400 <= resp.status_code < 500 and field in resp.text, resp.text
            for rec in recs:
                resp = client.post("/predict", json={"records": [rec]})
                assert resp.status_code == 200, resp.text
                good.append(resp.json()[0]["prediction_id"])
        os.kill(proc.pid, signal.SIGTERM)
        _wait_exit(proc.pid)
        assert not pid_alive(proc.pid), "service did not exit after SIGTERM"
    finally:
        stop_pid(proc.pid, first=signal.SIGTERM)
    logged = read_predictions(packaged.settings.state.predictions, "loans")
    assert len(good) == 100 and set(good) <= set(logged["prediction_id"])
    dead = packaged.settings.state.predictions / "loans" / "dead-letter"
    dead_text = "".join(p.read_text() for p in dead.glob("part-*.jsonl")) if dead.is_dir() else ""
    assert all(i in dead_text for i in accepted_bad)
    assert not any(i in dead_text for i in good)
    assert "flush failed" not in proc.log.read_text()

"""The closed loop on a real platform (`mloop up`: Prefect server + process worker, MLflow, webhook).

One platform for the whole module (the slowest tests of the suite). In file order:
1. `mloop up` a second time starts nothing twice.
2. Setup (ingest v1 -> train -> promote -> deploy, all by triggers), then drifted traffic with
   feedback labels and one monitor run: the drift event alone leads to a retrain run, a new
   champion and the new version answering requests.
3. An Alertmanager payload posted to /alerts rolls the champion back, with an audit record.
4. Five drift events inside the cooldown lead to exactly one retrain.
5. A torn line in every JSONL file and a 10-byte parquet part in each log: the loop still works.
6. `mloop down` leaves none of the pids alive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from mloop.core.generate import generate, write_frame
from mloop.core.processes import pid_alive
from tests.platform.helpers import (
    drifted_traffic,
    records,
    send_traffic_with_feedback,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

MODEL = "loans"
ROWS = 3000
TRAFFIC = 2000


def retrain_runs(platform, model: str) -> list[dict[str, Any]]:
    return [
        r
        for r in platform.prefect.flow_runs("retrain")
        if str(r["parameters"].get("model_name", "")).endswith(model)
    ]


def ledger(platform, model: str) -> list[dict[str, Any]]:
    from monitoring.policy import RetrainLedger, ledger_path

    return [
        r.model_dump()
        for r in RetrainLedger(ledger_path(platform.settings.state.root)).read()
        if r.model_name == model
    ]


def test_up_twice_starts_nothing_twice(platform) -> None:
    first = {s["name"]: s for s in platform.first_up["services"]}
    assert all(
        first[n]["started"] for n in ("prefect-server", "mlflow", "webhook", "prefect-worker")
    )
    assert platform.first_up["deployed"] is True
    assert {
        "retrain/local",
        "remediate/local",
        "train/local",
        "deploy/local",
        "monitor/local",
        "ingest/local",
    } <= set(platform.first_up["deployments"])

    second = platform.cli_json("up")
    again = {s["name"]: s for s in second["services"]}
    for name in ("prefect-server", "mlflow", "webhook", "prefect-worker"):
        assert again[name]["started"] is False, f"{name} was started a second time"
        assert again[name]["pid"] == first[name]["pid"]
    assert second["deployed"] is False  # same prefect.yaml and settings: no redeploy

    # Exactly one process listens on each service port.
    s = platform.settings
    for port in (s.prefect_port, s.mlflow_port, s.webhook_port):
        listeners = {
            c.pid
            for c in psutil.net_connections(kind="tcp")
            if c.laddr and c.laddr.port == port and c.status == "LISTEN"
        }
        assert len(listeners) == 1, f"port {port} has listeners {listeners}"
    workers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.info["cmdline"]
        and "worker" in p.info["cmdline"]
        and any(a.startswith(f"mloop-worker-{s.prefect_port}-") for a in p.info["cmdline"])
    ]
    assert len(workers) == 1


def test_drift_event_retrains_and_deploys_new_champion(platform, tmp_path: Path) -> None:
    # Setup: v1 goes in through the ingest deployment; the triggers train, promote and deploy it.
    source = tmp_path / "loans-v1.parquet"
    write_frame(generate("baseline", ROWS, 1), source)
    ingest = platform.prefect.run_deployment(
        "ingest/local",
        {"path": str(source), "dataset": MODEL, "target": "target", "time_column": "event_time"},
    )
    assert platform.prefect.wait_run(ingest, 300)["state_type"] == "COMPLETED", platform.logs_tail()
    served = wait_for(
        lambda: platform.serving.served_model(), 420, "v1 to be deployed by the triggers"
    )
    assert served["model_name"] == MODEL
    v1 = str(served["model_version"])
    retrains_before = len(retrain_runs(platform, MODEL))

    # The only actions: drifted traffic (with its labels) and one monitor run.
    assert send_traffic_with_feedback(platform, drifted_traffic(TRAFFIC, 7)) == TRAFFIC
    monitor = platform.prefect.run_deployment(
        "monitor/local", {"model_name": MODEL, "window_size": TRAFFIC}
    )
    assert platform.prefect.wait_run(monitor, 300)["state_type"] == "COMPLETED", (
        platform.logs_tail()
    )

    # The drift event starts a retrain, which trains, passes the gate and promotes...
    run = wait_for(
        lambda: (
            len(retrain_runs(platform, MODEL)) > retrains_before
            and retrain_runs(platform, MODEL)[-1]
        ),
        120,
        "a retrain run triggered by the drift event",
    )
    assert platform.prefect.wait_run(run["id"], 420)["state_type"] == "COMPLETED", (
        platform.logs_tail()
    )
    records_ = ledger(platform, MODEL)
    assert len(records_) == 1 and records_[0]["trigger"] == "drift" and records_[0]["event_id"]
    from models.registry import champion_version

    champion = champion_version(platform.settings.tracking_uri, MODEL)
    assert champion is not None and champion != v1, f"no new champion (still {champion})"

    # ... and the promotion deploys it: the service answers with the new version.
    wait_for(
        lambda: (m := platform.serving.served_model()) and str(m["model_version"]) == champion,
        300,
        f"the service to answer with version {champion}",
    )
    r = httpx.post(
        f"{platform.serving.url}/predict",
        json={"records": records(drifted_traffic(3, 99))},
        timeout=30,
        headers=platform.auth_headers("api"),
    )
    assert r.status_code == 200 and {str(a["model_version"]) for a in r.json()} == {champion}

    # `mloop status` shows it all: champion and deployed version, the drift verdict, the runs.
    st = platform.cli_json("status")
    assert {"name": MODEL, "champion": champion, "deployed": champion}.items() <= next(
        m for m in st["models"] if m["name"] == MODEL
    ).items()
    assert st["last_drift"]["verdict"] == "drift" and st["last_drift"]["model"] == MODEL
    assert {"retrain", "train", "deploy", "monitor"} <= {
        fr["flow"] for fr in st["recent_flow_runs"]
    }
    assert st["urls"]["prefect_ui"].startswith("http://127.0.0.1:")

    # `mloop up` now also sees the prediction service the deploy flow started: it is not started twice.
    serve_pid = int((platform.settings.state.run / "serve.pid").read_text())
    again = {s["name"]: s for s in platform.cli_json("up")["services"]}
    assert (
        again["serve"]["running"]
        and not again["serve"]["started"]
        and again["serve"]["pid"] == serve_pid
    )


def test_alert_rolls_back_with_audit_record(platform) -> None:
    from models.audit import read_audit
    from models.registry import champion_version

    uri = platform.settings.tracking_uri
    before = champion_version(uri, MODEL)
    audit_before = len(read_audit(platform.settings.state.audit, MODEL))
    body = {
        "version": "4",
        "status": "firing",
        "receiver": "mloop",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"alertname": "HighErrorRate", "model": MODEL, "severity": "page"},
        "commonAnnotations": {"summary": "5xx rate above 5% for 5 minutes"},
        "externalURL": "http://alertmanager.local:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "HighErrorRate", "model": MODEL, "severity": "page"},
                "annotations": {"summary": "5xx rate above 5% for 5 minutes"},
                "startsAt": "2026-01-01T12:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local/graph",
                "fingerprint": "f00d",
            }
        ],
    }
    r = httpx.post(
        f"{platform.webhook_url}/alerts",
        json=body,
        timeout=30,
        headers=platform.auth_headers("api"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["emitted"][0]["event"] == "mloop.alert.HighErrorRate"

    run = wait_for(
        lambda: (
            platform.prefect.flow_runs("remediate") and platform.prefect.flow_runs("remediate")[-1]
        ),
        120,
        "a remediate run triggered by the alert",
    )
    assert platform.prefect.wait_run(run["id"], 300)["state_type"] == "COMPLETED", (
        platform.logs_tail()
    )
    audit = read_audit(platform.settings.state.audit, MODEL)
    assert len(audit) == audit_before + 1
    last = audit[-1]
    assert last.action == "rollback" and last.outcome == "applied"
    assert last.from_version == before and "HighErrorRate" in last.reason
    after = champion_version(uri, MODEL)
    assert after == last.to_version and after != before
    # The rollback event redeploys the old champion.
    wait_for(
        lambda: (m := platform.serving.served_model()) and str(m["model_version"]) == after,
        300,
        f"the service to answer with rolled-back version {after}",
    )
    # And a notification went out through the notification block to the local receiver.
    from monitoring.webhook import read_notifications

    subjects = [n["subject"] for n in read_notifications(platform.settings.state.root)]
    assert any("rolled-back" in s for s in subjects), subjects


def test_five_drift_events_in_cooldown_start_one_retrain(platform) -> None:
    model = "burst"  # its own ledger entries: the earlier retrain of `loans` does not interfere
    assert ledger(platform, model) == []
    for i in range(5):
        platform.prefect.post_event(
            "mloop.drift.detected", f"mloop.model.{model}", {"share": 0.5, "burst": i}
        )

    runs = wait_for(
        lambda: len(retrain_runs(platform, model)) >= 5 and retrain_runs(platform, model),
        120,
        "five retrain runs (one per event)",
    )
    finals = [platform.prefect.wait_run(r["id"], 300) for r in runs]
    states = sorted(f["state_type"] for f in finals)
    assert all(s in ("COMPLETED", "CANCELLED") for s in states), states
    # Exactly one run passed the policy; the others were cancelled (concurrency) or skipped (cooldown).
    entries = ledger(platform, model)
    assert len(entries) == 1, entries
    assert entries[0]["flow_run_id"] in {f["id"] for f in finals}


def test_torn_files_leave_the_loop_working(platform, tmp_path: Path) -> None:
    """A torn last line in each JSONL file and a 10-byte parquet part in each log: listing, ingest,
    retrain claims and monitoring still work on the running platform; the damaged pieces are set aside."""
    from mloop.core.datasets import index_path
    from mloop.core.jsonl import count_set_aside
    from models.audit import audit_path
    from monitoring.policy import ledger_path
    from monitoring.webhook import notifications_path
    from serving.log.parts import CORRUPT_DIR

    state = platform.settings.state
    torn = {
        "dataset index": index_path(platform.settings, MODEL),
        "audit": audit_path(state.audit, MODEL),
        "retrain ledger": ledger_path(state.root),
        "notifications": notifications_path(state.root),
    }
    for what, path in torn.items():
        assert path.exists(), f"the loop wrote no {what} yet ({path})"
        with open(path, "a") as fh:
            fh.write('{"torn": ')  # a write cut short by a crash: no newline
    day = max((state.predictions / MODEL).glob("date=*"))
    ten_bytes = [
        day / "part-00000000T000000000000-1-000000-abcdef.parquet",
        state.feedback / MODEL / "part-00000000T000000000000-1-000000-abcdef.parquet",
    ]
    for part in ten_bytes:
        part.write_bytes(b"PAR1\x00\x00\x00\x00PA")

    # listing and ingest
    listed = platform.cli_json("data", "list", MODEL)
    assert len(listed) >= 1
    source = tmp_path / "loans-torn.parquet"
    write_frame(generate("baseline", 500, 42), source)
    out = platform.cli("ingest", str(source), "--dataset", MODEL, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert len(platform.cli_json("data", "list", MODEL)) == len(listed) + 1

    # a retrain claim reads the torn ledger (the drift event's run completes: retrained or skipped by policy)
    before = len(retrain_runs(platform, MODEL))
    platform.prefect.post_event(
        "mloop.drift.detected", f"mloop.model.{MODEL}", {"share": 0.5, "torn": True}
    )
    run = wait_for(
        lambda: len(retrain_runs(platform, MODEL)) > before and retrain_runs(platform, MODEL)[-1],
        120,
        "a retrain run after the torn ledger",
    )
    assert platform.prefect.wait_run(run["id"], 420)["state_type"] in ("COMPLETED", "CANCELLED"), (
        platform.logs_tail()
    )

    # monitoring reads the prediction log and the feedback past the 10-byte parts
    monitor = platform.prefect.run_deployment(
        "monitor/local", {"model_name": MODEL, "window_size": 500}
    )
    assert platform.prefect.wait_run(monitor, 300)["state_type"] == "COMPLETED", (
        platform.logs_tail()
    )

    # audit and notifications still read; every damaged piece is set aside, none deleted
    from models.audit import read_audit
    from monitoring.webhook import read_notifications

    assert read_audit(state.audit, MODEL) and read_notifications(state.root)
    for what, path in torn.items():
        assert count_set_aside(path) >= 1, f"the torn line of the {what} was not set aside"
    for part in ten_bytes:
        assert not part.exists() and (part.parent / CORRUPT_DIR / part.name).exists()


def test_down_leaves_no_process(platform) -> None:
    pids = {int(p.read_text()) for p in platform.settings.state.run.glob("*.pid")}
    assert len(pids) >= 4  # server, worker, mlflow, webhook (+ serve once a model is deployed)
    children: set[int] = set()
    for pid in pids:
        try:
            children |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass
    result = platform.cli_json("down")
    assert set(result["stopped"].values()) == pids
    assert result["still_alive"] == []
    alive = [pid for pid in pids | children if pid_alive(pid)]
    assert alive == [], f"still alive after mloop down: {alive}"
    assert list(platform.settings.state.run.glob("*.pid")) == []

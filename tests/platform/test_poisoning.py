"""The poisoning scenario on a real `mloop up`: forged feedback cannot move the champion.

A careless or hostile insider holds the token. They request 2,500 predictions from the served
champion, send the FLIPPED labels for every one of them to /feedback, then post a DataDrift alert to
the webhook. Remediation retrains on the newest rows (their labels), and the gate's own holdout is
exactly those rows, so on them the poisoned challenger wins by far. The gate also scores it on the
trusted holdout (the ingested version's), where it loses: it is rejected there, and the champion
alias does not move.

The platform (tests/platform/conftest.py, one per module) runs with the default
``gate_trusted_tolerance``, so the test shows what the default protects. Every serving and webhook
call carries the bearer token. The served champion also lets this module check the prediction
service's own doors on a real platform: 401 without the token, 4xx for a foreign Host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from mloop.core.generate import generate, write_frame
from mloop.core.tags import (
    TAG_DECISION,
    TAG_GATE_METRICS,
    TAG_GATE_TRUSTED,
    TAG_LABEL_SOURCE,
    TAG_REASON,
)
from mloop.core.web import bearer_header
from tests.platform.helpers import Platform, records, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

MODEL = "loans"
ROWS, TRAFFIC, BATCH = 3000, 2500, 500


def _predict(p: Platform, rows: list[dict[str, Any]], token: str | None) -> list[dict[str, Any]]:
    """POST /predict with the bearer token (the service may require it: MLOOP_PREDICT_REQUIRES_TOKEN)."""
    r = httpx.post(
        f"{p.serving.url}/predict", json={"records": rows}, headers=bearer_header(token), timeout=60
    )
    assert r.status_code == 200, r.text
    return list(r.json())


def _logged_ids(p: Platform) -> set[str]:
    from serving.log.predictions import read_predictions

    logged = read_predictions(p.settings.state.predictions, MODEL)
    return set() if logged is None or logged.empty else set(logged["prediction_id"])


def _drift_alert() -> dict[str, Any]:
    labels = {"alertname": "DataDrift", "model": MODEL, "severity": "warning"}
    return {
        "version": "4",
        "status": "firing",
        "receiver": "mloop",
        "groupLabels": {"alertname": "DataDrift"},
        "commonLabels": labels,
        "commonAnnotations": {"summary": "input drift on loans"},
        "externalURL": "http://alertmanager.local:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "input drift on loans"},
                "startsAt": "2026-01-01T12:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local/graph",
                "fingerprint": "p01s0n",
            }
        ],
    }


def test_flipped_feedback_and_a_drift_alert_do_not_move_the_champion(
    platform: Platform, tmp_path: Path
) -> None:
    from mloop.core.datasets import list_versions
    from models.registry import champion_version, get_version_info
    from models.registry import list_versions as model_versions

    p, uri = platform, platform.settings.tracking_uri
    token = p.settings.bearer_token()

    # Setup with the CLI: ingest v1; the triggers train, gate, promote and deploy the champion.
    source = write_frame(generate("baseline", ROWS, 1), tmp_path / "loans-v1.parquet")
    ingested = p.cli_json(
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
    v1 = str(served["model_version"])
    models = p.cli_json("models", MODEL)
    assert [m["version"] for m in models if "champion" in m["aliases"]] == [v1]
    assert models[0]["data_md5"] == ingested["md5"]

    # The insider: 2,500 served predictions, then the flipped label for every one of them.
    traffic = generate("baseline", TRAFFIC, 7)
    answers: list[dict[str, Any]] = []
    for start in range(0, TRAFFIC, BATCH):
        answers += _predict(p, records(traffic.iloc[start : start + BATCH]), token)
    ids = [str(a["prediction_id"]) for a in answers]
    wait_for(lambda: set(ids) <= _logged_ids(p), 60, "the served predictions in the prediction log")
    flipped = [
        {"prediction_id": i, "label": int(1 - y)}
        for i, y in zip(ids, traffic["target"], strict=True)
    ]
    recorded = sum(
        p.serving.feedback(flipped[s : s + BATCH], token=token)["recorded"]
        for s in range(0, TRAFFIC, BATCH)
    )
    assert recorded == TRAFFIC

    # ... then a drift alert: remediation retrains on the newest rows (theirs).
    remediations_before = len(p.prefect.flow_runs("remediate"))
    r = httpx.post(
        f"{p.webhook_url}/alerts", json=_drift_alert(), headers=bearer_header(token), timeout=30
    )
    assert r.status_code == 200, r.text
    run = wait_for(
        lambda: len(runs := p.prefect.flow_runs("remediate")) > remediations_before and runs[-1],
        120,
        "a remediate run triggered by the DataDrift alert",
    )
    assert p.prefect.wait_run(run["id"], 600)["state_type"] == "COMPLETED", p.logs_tail()
    assert any(fr["state_type"] == "COMPLETED" for fr in p.prefect.flow_runs("retrain")), (
        "no retrain run"
    )

    # The retrain built a feedback version and trained a challenger on it ...
    newest = list_versions(p.settings, MODEL)[0]
    assert newest.label_source == "feedback" and newest.md5 != ingested["md5"]
    challenger = next(v for v in model_versions(uri, MODEL) if v.data_md5 == newest.md5)
    tags = get_version_info(uri, MODEL, challenger.version).tags
    assert (
        tags[TAG_LABEL_SOURCE] == "feedback" and tags["mloop.trigger"] == "retrain:alert:DataDrift"
    )
    # ... which the newest rows alone would have promoted ...
    metrics = json.loads(tags[TAG_GATE_METRICS])
    assert metrics["gain"] > 0 and metrics["ci_low"] > 0, metrics
    # ... rejected on the trusted holdout (the ingested version's), whatever the newest rows say.
    trusted = json.loads(tags[TAG_GATE_TRUSTED])
    assert tags[TAG_DECISION] == "reject" and trusted["passed"] is False, tags[TAG_REASON]
    assert (
        trusted["dataset_md5"] == ingested["md5"]
        and trusted["loss"] > p.settings.gate_trusted_tolerance
    )
    assert "REJECTED on the trusted holdout" in tags[TAG_REASON]
    print(f"\npoisoning run: {tags[TAG_REASON]}\ngate metrics: {metrics}")

    # The champion alias did not move, and the service still answers with it.
    assert champion_version(uri, MODEL) == v1
    assert str((p.serving.served_model() or {}).get("model_version")) == v1


# ------------------------------------------------- the prediction service's doors, on the served champion

EVIL = "evil.example"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/feedback", {"labels": [{"prediction_id": "f" * 32, "label": 1}]}),
        ("/admin/rollout", {"model_tag": "loans:latest"}),
        ("/predict", {"records": []}),
    ],
)
def test_serving_write_endpoints_answer_401_without_the_token(
    platform: Platform, path: str, body: dict
) -> None:
    assert platform.serving.served_model() is not None, "needs the champion the test above deployed"
    url = f"{platform.serving.url}{path}"
    assert platform.call("POST", url, json=body).status_code == 401
    assert (
        platform.call("POST", url, json=body, headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )


def test_serving_refuses_a_foreign_host(platform: Platform) -> None:
    url = f"{platform.serving.url}/predict"
    row = records(generate("baseline", 1, 3))
    own = platform.call("POST", url, auth="api", json={"records": row})
    assert own.status_code == 200, own.text
    evil = platform.call("POST", url, auth="api", json={"records": row}, host=EVIL)
    assert 400 <= evil.status_code < 500, f"serving answered {evil.status_code} to Host: {EVIL}"
    assert (
        400 <= platform.call("GET", f"{platform.serving.url}/readyz", host=EVIL).status_code < 500
    )

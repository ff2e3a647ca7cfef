"""The prediction service as a real ``bentoml serve`` process on a free loopback port."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from serving.log.feedback import read_feedback
from serving.log.predictions import read_predictions
from tests.serving.helpers import AUTH, TOKEN, Packaged, records

GOOD = {
    "income": 50000.0,
    "loan_amount": 12000.0,
    "age": 40.0,
    "debt_ratio": 0.3,
    "n_accounts": 3,
    "purpose": "car",
    "region": "north",
}
JSON = {"content-type": "application/json", **AUTH}


def body(**changes: object) -> bytes:
    rec = {**GOOD, **changes}
    for key, value in list(rec.items()):
        if value is ...:
            del rec[key]
    return json.dumps({"records": [rec]}).encode()


BAD_REQUESTS = [
    # (kind, body bytes, headers, expected status, text the message must contain)
    ("wrong type", body(age="old"), JSON, 400, "age"),
    ("missing field", body(loan_amount=...), JSON, 400, "loan_amount"),
    ("unknown field", body(colour="red"), JSON, 400, "colour"),
    ("null in non-nullable field", body(purpose=None), JSON, 400, "purpose"),
    ("number for a categorical", body(purpose=3), JSON, 400, "purpose"),
    ("fractional integer", body(n_accounts=2.5), JSON, 400, "n_accounts"),
    ("boolean for a number", body(debt_ratio=True), JSON, 400, "debt_ratio"),
    ("NaN literal", body(age=float("nan")), JSON, 400, "finite"),
    ("empty list", b'{"records": []}', JSON, 400, "at least 1"),
    (
        "too many records",
        json.dumps({"records": [GOOD] * 1001}).encode(),
        JSON,
        400,
        "at most 1000",
    ),
    ("malformed JSON", b'{"records": [{', JSON, 400, "Invalid JSON"),
    ("wrong content type", body(), {"content-type": "text/plain", **AUTH}, 415, "content type"),
    ("no content type", body(), AUTH, 415, "content type"),
    ("top level is a list", json.dumps([GOOD]).encode(), JSON, 400, "object"),
    ("records key missing", json.dumps({"rows": [GOOD]}).encode(), JSON, 400, "records"),
    ("record is not an object", b'{"records": [1]}', JSON, 400, "object"),
    ("empty body", b"", JSON, 400, "records"),
    ("string too long", body(purpose="x" * 1000), JSON, 400, "purpose"),
]


@pytest.mark.parametrize(
    ("kind", "payload", "headers", "status", "needle"),
    BAD_REQUESTS,
    ids=[b[0] for b in BAD_REQUESTS],
)
def test_bad_request_is_4xx_with_a_message_naming_the_problem(
    server, kind, payload, headers, status, needle
) -> None:
    resp = httpx.post(f"{server.url}/predict", content=payload, headers=headers, timeout=10)
    assert resp.status_code == status, (kind, resp.status_code, resp.text)
    assert needle.lower() in resp.text.lower(), (kind, resp.text)


def test_service_is_healthy_after_bad_requests(server) -> None:
    for _kind, payload, headers, _, _ in BAD_REQUESTS:
        httpx.post(f"{server.url}/predict", content=payload, headers=headers, timeout=10)
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert httpx.get(f"{server.url}/readyz").status_code == 200
    resp = httpx.post(f"{server.url}/predict", content=body(), headers=JSON)
    assert resp.status_code == 200, resp.text


def test_unknown_category_and_null_in_nullable_field_are_valid_input(server) -> None:
    resp = httpx.post(
        f"{server.url}/predict",
        content=body(purpose="yacht", region=None, income=...),
        headers=JSON,
    )
    assert resp.status_code == 200, resp.text
    assert 0.0 <= resp.json()[0]["probability"] <= 1.0


def test_answer_carries_prediction_probability_version_and_id(server) -> None:
    resp = httpx.post(f"{server.url}/predict", json={"records": [GOOD, GOOD]}, headers=AUTH)
    assert resp.status_code == 200
    answers = resp.json()
    assert len(answers) == 2
    for answer in answers:
        assert set(answer) == {
            "prediction",
            "probability",
            "model_name",
            "model_version",
            "prediction_id",
        }
        assert answer["model_name"] == "loans" and answer["model_version"] == "1"
        assert answer["prediction"] in (0, 1)
    assert answers[0]["prediction_id"] != answers[1]["prediction_id"]


def test_model_endpoint_and_metrics_report_the_version(server) -> None:
    model = httpx.get(f"{server.url}/model").json()
    assert model["model_version"] == "1" and model["backend"] == "onnx"
    httpx.post(f"{server.url}/predict", content=body(), headers=JSON)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'mloop_predictions_total{model_name="loans",model_version="1"}' in metrics
    assert 'mloop_model_info{backend="onnx",model_name="loans",model_version="1"} 1.0' in metrics


def test_n_requests_give_exactly_n_log_records_with_the_serving_version(
    server, packaged: Packaged
) -> None:
    pred_dir = packaged.settings.state.predictions
    ids: list[str] = []
    recs = records(packaged.holdout, 30)
    with httpx.Client(base_url=server.url, headers=AUTH) as client:
        for i in range(30):
            resp = client.post("/predict", json={"records": [recs[i]]})
            assert resp.status_code == 200
            ids.append(resp.json()[0]["prediction_id"])
    deadline = time.monotonic() + 15
    while True:  # read at least once, until every id is logged or the deadline passes
        logged = read_predictions(pred_dir, "loans")
        if set(ids) <= set(logged["prediction_id"]) or time.monotonic() >= deadline:
            break
        time.sleep(0.3)
    mine = logged[logged["prediction_id"].isin(ids)]
    assert len(mine) == 30
    assert mine["prediction_id"].is_unique
    assert set(mine["model_version"]) == {"1"}
    assert mine["input.purpose"].tolist() == [r["purpose"] for r in recs]
    assert mine["probability"].between(0, 1).all()


def test_feedback_requires_the_token_and_records_labels(server, packaged: Packaged) -> None:
    resp = httpx.post(f"{server.url}/predict", content=body(), headers=JSON)
    pid = resp.json()[0]["prediction_id"]
    payload = {"labels": [{"prediction_id": pid, "label": 1}]}
    assert httpx.post(f"{server.url}/feedback", json=payload).status_code == 401
    wrong = httpx.post(
        f"{server.url}/feedback", json=payload, headers={"authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401
    ok = httpx.post(f"{server.url}/feedback", json=payload, headers=AUTH)
    assert ok.status_code == 200, ok.text
    assert ok.json()["recorded"] == 1
    labels = read_feedback(packaged.settings.state.feedback, "loans")
    assert labels.set_index("prediction_id").loc[pid, "label"] == 1


def test_rollout_refuses_a_model_failing_its_smoke_test(server, packaged: Packaged) -> None:
    from serving.control.rollout_client import RolloutFailed, rollout

    before = httpx.get(f"{server.url}/model").json()["model_version"]
    with pytest.raises(RolloutFailed, match="smoke test"):
        rollout(server.url, packaged.broken.model_tag, token=TOKEN)
    assert httpx.get(f"{server.url}/model").json()["model_version"] == before
    resp = httpx.post(f"{server.url}/predict", content=body(), headers=JSON)
    assert resp.status_code == 200 and resp.json()[0]["model_version"] == before


def test_rollout_needs_the_token(server, packaged: Packaged) -> None:
    resp = httpx.post(f"{server.url}/admin/rollout", json={"model_tag": packaged.v2.model_tag})
    assert resp.status_code == 401
    assert httpx.get(f"{server.url}/model").json()["model_version"] == "1"


def test_rollout_under_load_has_zero_failures_and_switches_versions(
    server, packaged: Packaged
) -> None:
    """Runs last in this module: it leaves v2 serving."""
    from serving.control.rollout_client import rollout

    statuses: list[int] = []
    versions: list[str] = []
    errors: list[str] = []
    stop = threading.Event()
    recs = records(packaged.holdout, 50)

    def client_loop() -> None:
        with httpx.Client(base_url=server.url, timeout=30, headers=AUTH) as client:
            i = 0
            while not stop.is_set():
                try:
                    resp = client.post("/predict", json={"records": [recs[i % 50]]})
                    statuses.append(resp.status_code)
                    if resp.status_code == 200:
                        versions.append(resp.json()[0]["model_version"])
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                i += 1

    threads = [threading.Thread(target=client_loop) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        while len(versions) < 100:
            time.sleep(0.05)
        result = rollout(server.url, packaged.v2.model_tag, token=TOKEN)
        n_at_switch = len(versions)
        while len(versions) < n_at_switch + 100:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert result["current"]["model_version"] == "2"
    assert errors == []
    assert set(statuses) == {200}, {s for s in statuses if s != 200}
    assert versions[0] == "1" and versions[-1] == "2"
    assert set(versions[-50:]) == {"2"}

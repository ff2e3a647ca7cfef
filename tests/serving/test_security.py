"""Issue 10 on a real ``bentoml serve``: bearer token on writes (and /predict by default), Host
allowlist on every route, body limit, loopback-only rollout, and feedback you can trust. One
negative test per rule."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from mloop.core.processes import ServiceProcess, stop_pid
from serving.log.feedback import read_conflicts, read_feedback
from tests.serving.helpers import AUTH, Packaged, records, start

JSON = {"content-type": "application/json"}
EVIL = {"host": "evil.example"}


@pytest.fixture(scope="module")
def open_server(packaged: Packaged) -> Iterator[ServiceProcess]:
    """A service with /predict open (MLOOP_PREDICT_REQUIRES_TOKEN=false) and a 4 KiB body limit."""
    proc = start(packaged, MLOOP_PREDICT_REQUIRES_TOKEN="false", MLOOP_MAX_BODY_BYTES="4096")
    try:
        yield proc
    finally:
        stop_pid(proc.pid, first=15)


def _predict(url: str, packaged: Packaged, n: int = 1, start_at: int = 0) -> list[str]:
    resp = httpx.post(
        f"{url}/predict",
        json={"records": records(packaged.holdout, n, start_at)},
        headers=AUTH,
        timeout=20,
    )
    assert resp.status_code == 200, resp.text
    return [a["prediction_id"] for a in resp.json()]


# ----------------------------------------------------------------------------- bearer token


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/predict", {"records": [{"age": 1}]}),
        ("/predict/", {"records": [{"age": 1}]}),
        ("/feedback", {"labels": [{"prediction_id": "a", "label": 1}]}),
        ("/admin/rollout", {"model_tag": "loans:v2"}),
    ],
)
def test_without_the_token_every_write_and_predict_answer_401(
    server, path: str, payload: dict
) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic dXNlcjpwYXNz"}):
        resp = httpx.post(f"{server.url}{path}", json=payload, headers=headers, timeout=10)
        assert resp.status_code == 401, (path, headers, resp.text)
        assert resp.headers["www-authenticate"] == "Bearer"
        error = resp.json()["error"]
        assert "Authorization: Bearer" in error and "mloop token" in error
        assert AUTH["authorization"].split()[1] not in resp.text  # the token is never echoed
    assert httpx.get(f"{server.url}/model").json()["model_version"] == "1"


def test_health_metrics_docs_and_model_stay_open(server) -> None:
    for path in ("/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/model"):
        assert httpx.get(f"{server.url}{path}", timeout=10).status_code == 200, path


def test_with_predict_open_writes_still_need_the_token(open_server, packaged: Packaged) -> None:
    resp = httpx.post(
        f"{open_server.url}/predict", json={"records": records(packaged.holdout, 1)}, timeout=20
    )
    assert resp.status_code == 200, resp.text
    pid = resp.json()[0]["prediction_id"]
    labels = {"labels": [{"prediction_id": pid, "label": 1}]}
    assert httpx.post(f"{open_server.url}/feedback", json=labels).status_code == 401
    assert (
        httpx.post(f"{open_server.url}/admin/rollout", json={"model_tag": "loans:v2"}).status_code
        == 401
    )
    assert (
        httpx.post(f"{open_server.url}/feedback", json=labels, headers=AUTH).json()["recorded"] == 1
    )


# ----------------------------------------------------------------------------- Host allowlist, body limit


def test_a_forged_host_header_gets_4xx_on_every_route(server, packaged: Packaged) -> None:
    body = json.dumps({"records": records(packaged.holdout, 1)})
    own = httpx.post(f"{server.url}/predict", content=body, headers={**JSON, **AUTH}, timeout=10)
    assert own.status_code == 200, own.text
    assert (
        httpx.post(
            f"{server.url}/predict", content=body, headers={**JSON, **AUTH, **EVIL}
        ).status_code
        == 400
    )
    for path in ("/readyz", "/healthz", "/metrics", "/model", "/docs.json"):
        assert httpx.get(f"{server.url}{path}").status_code == 200, path
        assert httpx.get(f"{server.url}{path}", headers=EVIL).status_code == 400, path
    feedback = {"labels": [{"prediction_id": "a", "label": 1}]}
    assert (
        httpx.post(f"{server.url}/feedback", json=feedback, headers={**AUTH, **EVIL}).status_code
        == 400
    )
    port = server.url.rsplit(":", 1)[1]
    assert (
        httpx.get(f"{server.url}/readyz", headers={"host": f"localhost:{port}"}).status_code == 200
    )


def test_a_body_over_the_limit_gets_413(open_server, packaged: Packaged) -> None:
    big = json.dumps({"records": records(packaged.holdout, 40)})
    assert len(big) > 4096
    resp = httpx.post(f"{open_server.url}/predict", content=big, headers=JSON, timeout=10)
    assert resp.status_code == 413 and "MLOOP_MAX_BODY_BYTES" in resp.text
    small = json.dumps({"records": records(packaged.holdout, 2)})
    assert (
        httpx.post(
            f"{open_server.url}/predict", content=small, headers=JSON, timeout=10
        ).status_code
        == 200
    )


def test_too_many_labels_in_one_request_are_refused(server) -> None:
    labels = [{"prediction_id": f"id{i}", "label": 1} for i in range(1001)]
    resp = httpx.post(f"{server.url}/feedback", json={"labels": labels}, headers=AUTH, timeout=10)
    assert resp.status_code == 400 and "at most 1000" in resp.text


# ----------------------------------------------------------------------------- feedback you can trust


def test_feedback_for_unknown_ids_is_not_recorded(server, packaged: Packaged) -> None:
    payload = {
        "labels": [
            {"prediction_id": "f" * 32, "label": 1},
            {"prediction_id": "made-up", "label": 0},
        ]
    }
    resp = httpx.post(f"{server.url}/feedback", json=payload, headers=AUTH, timeout=10)
    assert resp.status_code == 404, resp.text
    answer = resp.json()
    assert (
        answer["unknown"] == 2
        and answer["recorded"] == 0
        and "none of the 2 prediction ids" in answer["error"]
    )
    assert {r["reason"] for r in answer["rejected"]} == {"unknown"}
    known = _predict(server.url, packaged)[0]
    mixed = {
        "labels": [{"prediction_id": known, "label": 1}, {"prediction_id": "f" * 32, "label": 1}]
    }
    resp = httpx.post(f"{server.url}/feedback", json=mixed, headers=AUTH, timeout=10)
    assert resp.status_code == 200 and (resp.json()["recorded"], resp.json()["unknown"]) == (1, 1)
    assert "f" * 32 not in set(
        read_feedback(packaged.settings.state.feedback, "loans")["prediction_id"]
    )


def test_a_second_different_label_is_a_conflict_and_the_first_is_kept(
    server, packaged: Packaged
) -> None:
    pid = _predict(server.url, packaged, start_at=5)[0]
    first = httpx.post(
        f"{server.url}/feedback",
        json={"labels": [{"prediction_id": pid, "label": 0}]},
        headers=AUTH,
    )
    assert first.status_code == 200 and first.json()["recorded"] == 1
    second = httpx.post(
        f"{server.url}/feedback",
        json={"labels": [{"prediction_id": pid, "label": 1}]},
        headers=AUTH,
    )
    assert second.status_code == 200, second.text
    assert second.json() == {
        "model_name": "loans", "recorded": 0, "duplicates": 0, "conflicts": 1, "unknown": 0, "set_aside": 0,
        "rejected": [{"prediction_id": pid, "reason": "conflict"}], "rejected_truncated": False,
    }  # fmt: skip
    assert (
        read_feedback(packaged.settings.state.feedback, "loans")
        .set_index("prediction_id")
        .loc[pid, "label"]
        == 0
    )
    (conflict,) = [
        c
        for c in read_conflicts(packaged.settings.state.feedback, "loans")
        if c["prediction_id"] == pid
    ]
    assert (conflict["first_label"], conflict["label"]) == (0, 1)
    assert (
        conflict["request"]["via"] == "POST /feedback"
        and conflict["request"]["client"] == "127.0.0.1"
    )


def test_the_same_label_twice_is_a_duplicate(server, packaged: Packaged) -> None:
    pid = _predict(server.url, packaged, start_at=7)[0]
    payload = {"labels": [{"prediction_id": pid, "label": 1}]}
    assert httpx.post(f"{server.url}/feedback", json=payload, headers=AUTH).json()["recorded"] == 1
    again = httpx.post(f"{server.url}/feedback", json=payload, headers=AUTH).json()
    assert (again["recorded"], again["duplicates"], again["conflicts"]) == (0, 1, 0)
    assert not [
        c
        for c in read_conflicts(packaged.settings.state.feedback, "loans")
        if c["prediction_id"] == pid
    ]

"""Many models in ONE real ``bentoml serve`` (issue 12): a classification (``loans``) and a
regression of another shape (``rates``: ``generate(task="regression", features=5)``), each on its
own routes with its own schema; the legacy routes refuse to guess; a rollout of one under load on
both leaves the other alone; a rollout adds a model; a tiny memory budget unloads cold models that
still answer; a respawned worker serves them all again; the served OpenAPI document holds against schemathesis' full check set."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from mloop.core.processes import ServiceProcess, stop_pid
from serving.api.rollout_record import SERVING_DIR
from tests.helpers import assert_openapi_holds
from tests.serving.helpers import (
    AUTH,
    TOKEN,
    Generated,
    LoadThreads,
    Packaged,
    package_generated,
    records,
    start,
)
from tests.serving.test_service import BAD_REQUESTS
from tests.serving.test_worker_kill import _wait_for, _worker_pid


@dataclass
class Shapes:
    rates_v1: Generated
    rates_v2: Generated
    fraud: Generated  # a third shape (3 features), added at runtime by a rollout


@pytest.fixture(scope="module")
def shapes(packaged: Packaged) -> Shapes:
    s = packaged.settings
    return Shapes(
        rates_v1=package_generated(s, "rates", task="regression", features=5, seed=1),
        rates_v2=package_generated(s, "rates", task="regression", features=5, seed=2, version="2"),
        fraud=package_generated(s, "fraud", features=3, seed=3),
    )


def _forget_rollouts(packaged: Packaged) -> None:
    """No rollout record of an earlier test module or service: each service here starts clean."""
    import shutil

    shutil.rmtree(packaged.settings.state.root / SERVING_DIR, ignore_errors=True)


@pytest.fixture(scope="module")
def two(packaged: Packaged, shapes: Shapes) -> Iterator[ServiceProcess]:
    """``loans:v1`` and ``rates:v1`` in one service (no memory budget worth the name)."""
    _forget_rollouts(packaged)
    proc = start(packaged, ["loans:v1", "rates:v1"])
    try:
        yield proc
    finally:
        stop_pid(proc.pid, first=15)


def _post(url: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, headers=AUTH, timeout=30)


def _models(url: str) -> dict[str, dict] | None:
    try:
        resp = httpx.get(f"{url}/models", timeout=5)
    except httpx.HTTPError:
        return None
    return resp.json()["models"] if resp.status_code == 200 else None


# ----------------------------------------------------------------------------- routes


def test_each_model_answers_on_its_own_route(
    two: ServiceProcess, packaged: Packaged, shapes: Shapes
) -> None:
    loans = _post(two.url, "/models/loans/predict", {"records": records(packaged.holdout, 3)})
    assert loans.status_code == 200, loans.text
    assert [(a["model_name"], a["model_version"]) for a in loans.json()] == [("loans", "1")] * 3
    assert all(0 <= a["probability"] <= 1 and a["prediction"] in (0, 1) for a in loans.json())
    rates = _post(two.url, "/models/rates/predict", {"records": shapes.rates_v1.records[:4]})
    assert rates.status_code == 200, rates.text
    answers = rates.json()
    assert [(a["model_name"], a["model_version"]) for a in answers] == [("rates", "1")] * 4
    assert all(
        set(a) == {"prediction", "score", "model_name", "model_version", "prediction_id"}
        for a in answers
    )
    assert all(a["prediction"] == a["score"] for a in answers)


def test_models_are_listed_and_described(two: ServiceProcess) -> None:
    models = _models(two.url)
    assert models is not None and set(models) == {"loans", "rates"}
    assert models["rates"]["bentoml_tag"] == "rates:v1" and models["rates"]["task"] == "regression"
    assert all(m["loaded"] is True for m in models.values())
    one = httpx.get(f"{two.url}/models/loans").json()
    assert one["model_version"] == "1" and one["loaded"] is True and one["backend"] == "onnx"
    unknown = httpx.get(f"{two.url}/models/nope")
    assert unknown.status_code == 404 and unknown.json()["models"] == ["loans", "rates"]
    bad = httpx.post(f"{two.url}/models/..%2f..%2fetc/predict", json={"records": []}, headers=AUTH)
    assert bad.status_code == 404


def test_the_legacy_routes_answer_409_with_several_models(
    two: ServiceProcess, packaged: Packaged
) -> None:
    for method, path, body in (
        ("POST", "/predict", {"records": records(packaged.holdout, 1)}),
        ("POST", "/feedback", {"labels": [{"prediction_id": "a", "label": 1}]}),
        ("GET", "/model", None),
    ):
        resp = httpx.request(method, f"{two.url}{path}", json=body, headers=AUTH, timeout=10)
        assert resp.status_code == 409, (path, resp.text)
        assert resp.json()["models"] == ["loans", "rates"] and "/models/" in resp.json()["error"]


@pytest.mark.parametrize(
    ("kind", "payload", "headers", "status", "needle"),
    BAD_REQUESTS,
    ids=[b[0] for b in BAD_REQUESTS],
)
def test_a_bad_body_gets_the_same_specific_4xx_as_predict(
    two: ServiceProcess, kind, payload, headers, status, needle
) -> None:
    resp = httpx.post(
        f"{two.url}/models/loans/predict", content=payload, headers=headers, timeout=10
    )
    assert resp.status_code == status, (kind, resp.status_code, resp.text)
    assert needle.lower() in resp.text.lower(), (kind, resp.text)


def test_a_body_for_the_other_model_is_400_naming_its_fields(
    two: ServiceProcess, packaged: Packaged, shapes: Shapes
) -> None:
    resp = _post(two.url, "/models/rates/predict", {"records": records(packaged.holdout, 1)})
    assert resp.status_code == 400
    detail = resp.json()["detail"]
    assert {"records", 0, "income"} <= {
        p for d in detail for p in d["loc"]
    }  # loans' field, refused by rates
    assert "records.0." in resp.json()["error"]


def test_predict_on_a_model_route_needs_the_token(two: ServiceProcess, shapes: Shapes) -> None:
    body = {"records": shapes.rates_v1.records[:1]}
    assert httpx.post(f"{two.url}/models/rates/predict", json=body).status_code == 401
    assert (
        httpx.post(
            f"{two.url}/models/rates/feedback",
            json={"labels": [{"prediction_id": "a", "label": 1.0}]},
        ).status_code
        == 401
    )
    assert httpx.get(f"{two.url}/models").status_code == 200  # reading stays open
    assert httpx.get(f"{two.url}/models", headers={"host": "evil.example"}).status_code == 400


def test_feedback_goes_to_its_own_model(
    two: ServiceProcess, packaged: Packaged, shapes: Shapes
) -> None:
    from serving.log.feedback import read_feedback

    rid = _post(two.url, "/models/rates/predict", {"records": shapes.rates_v1.records[:1]}).json()[
        0
    ]["prediction_id"]
    lid = _post(two.url, "/models/loans/predict", {"records": records(packaged.holdout, 1)}).json()[
        0
    ]["prediction_id"]
    ok = _post(
        two.url, "/models/rates/feedback", {"labels": [{"prediction_id": rid, "label": 12.5}]}
    )
    assert (
        ok.status_code == 200 and ok.json()["recorded"] == 1 and ok.json()["model_name"] == "rates"
    )
    wrong_model = _post(
        two.url, "/models/rates/feedback", {"labels": [{"prediction_id": lid, "label": 3.0}]}
    )
    assert wrong_model.status_code == 404 and wrong_model.json()["unknown"] == 1
    wrong_type = _post(
        two.url, "/models/rates/feedback", {"labels": [{"prediction_id": rid, "label": "high"}]}
    )
    assert wrong_type.status_code == 400 and "label" in wrong_type.text
    assert (
        read_feedback(packaged.settings.state.feedback, "rates")
        .set_index("prediction_id")
        .loc[rid, "label"]
        == 12.5
    )


def test_docs_json_documents_every_model_with_its_own_schema(
    two: ServiceProcess, shapes: Shapes
) -> None:
    doc = httpx.get(f"{two.url}/docs.json").json()
    schemas = doc["components"]["schemas"]
    for name, columns in (
        ("loans", {"income", "loan_amount", "purpose"}),
        ("rates", set(shapes.rates_v1.records[0])),
    ):
        ref = doc["paths"][f"/models/{name}/predict"]["post"]["requestBody"]["content"][
            "application/json"
        ]["schema"]["$ref"]
        request = schemas[ref.rsplit("/", 1)[1]]
        record_ref = request["properties"]["records"]["items"]["$ref"]
        assert columns <= set(schemas[record_ref.rsplit("/", 1)[1]]["properties"]), name
        assert f"/models/{name}/feedback" in doc["paths"]
    assert "/predict" in doc["paths"]  # BentoML's own routes are still there


def test_the_served_openapi_document_holds(two: ServiceProcess, tmp_path: Path) -> None:
    """Schemathesis' full check set on every operation of the served document (both models'
    routes, the legacy routes' 409), with and without the token."""
    assert_openapi_holds(f"{two.url}/docs.json", TOKEN, min_cases=800, cwd=tmp_path)


# ----------------------------------------------------------------------------- rollouts


class _Load(LoadThreads):
    """Clients POSTing to both models' routes in a loop; every answer and failure kept."""

    def __init__(self, url: str, bodies: dict[str, list[dict]], threads: int = 2) -> None:
        super().__init__()
        self.url, self.bodies = url, bodies
        self.answers: dict[str, list[tuple[int, dict]]] = {name: [] for name in bodies}
        self.failures: list[str] = []
        self._threads = [
            threading.Thread(target=self._loop, args=(name,))
            for name in bodies
            for _ in range(threads)
        ]

    def _loop(self, name: str) -> None:
        recs = self.bodies[name]
        with httpx.Client(base_url=self.url, timeout=30, headers=AUTH) as client:
            i = 0
            while not self._stop.is_set():
                k = i % len(recs)
                try:
                    resp = client.post(f"/models/{name}/predict", json={"records": [recs[k]]})
                except httpx.HTTPError as exc:
                    self.failures.append(f"{name}: {exc!r}")
                    continue
                finally:
                    i += 1
                if resp.status_code != 200:
                    self.failures.append(f"{name}: {resp.status_code} {resp.text[:200]}")
                else:
                    self.answers[name].append((k, resp.json()[0]))

    def count(self, name: str) -> int:
        return len(self.answers[name])


def test_a_rollout_of_one_model_under_load_leaves_the_other_unchanged(
    two: ServiceProcess, packaged: Packaged, shapes: Shapes
) -> None:
    from serving.control.rollout_client import rollout

    bodies = {"loans": records(packaged.holdout, 20), "rates": shapes.rates_v1.records[:20]}
    with _Load(two.url, bodies) as load:
        _wait_for(
            lambda: min(load.count("loans"), load.count("rates")) >= 100,
            60,
            "100 answers from each model",
        )
        result = rollout(two.url, shapes.rates_v2.model.model_tag, token=TOKEN)
        switched = load.count("rates")
        _wait_for(
            lambda: load.count("rates") >= switched + 100 and load.count("loans") >= 300,
            60,
            "answers after the rollout",
        )
    assert result["status"] == "switched" and result["current"]["model_version"] == "2"
    assert load.failures == []
    rates_versions = [a["model_version"] for _, a in load.answers["rates"]]
    assert rates_versions[0] == "1" and set(rates_versions[-50:]) == {"2"}
    loans = load.answers["loans"]
    assert {a["model_version"] for _, a in loans} == {"1"}
    first: dict[int, float] = {}
    for (
        k,
        a,
    ) in loans:  # the same record always gets the same answer (float32 batches round at 1e-7): loans never changed
        assert a["probability"] == pytest.approx(first.setdefault(k, a["probability"]), abs=1e-6)
    assert httpx.get(f"{two.url}/models/loans").json()["bentoml_tag"] == "loans:v1"


def test_a_rollout_of_a_new_name_adds_the_model(two: ServiceProcess, shapes: Shapes) -> None:
    from serving.control.rollout_client import current_model, rollout, served_models

    result = rollout(two.url, shapes.fraud.model.model_tag, token=TOKEN)
    assert result["status"] == "added" and result["previous"] is None
    assert set(served_models(two.url)) == {"loans", "rates", "fraud"}
    assert current_model(two.url, "fraud")["bentoml_tag"] == "fraud:v1"
    resp = _post(two.url, "/models/fraud/predict", {"records": shapes.fraud.records[:2]})
    assert resp.status_code == 200 and resp.json()[0]["model_name"] == "fraud"
    doc = httpx.get(f"{two.url}/docs.json").json()
    assert "/models/fraud/predict" in doc["paths"]


def test_the_client_never_takes_an_unreachable_service_for_an_empty_one() -> None:
    from serving.control.rollout_client import RolloutFailed, served_models

    with pytest.raises(RolloutFailed, match="not reachable"):
        served_models("http://127.0.0.1:9", deadline=1)


# ----------------------------------------------------------------------------- budget and respawn


@pytest.fixture(scope="module")
def tiny(packaged: Packaged, shapes: Shapes, two: ServiceProcess) -> Iterator[ServiceProcess]:
    """``rates:v1`` and ``loans:v1`` with a 10 kB budget (each model needs more): only the model
    last used stays loaded.
    (Started after ``two``'s tests: it forgets their rollout records.)"""
    _forget_rollouts(packaged)
    proc = start(packaged, ["rates:v1", "loans:v1"], MLOOP_SERVE_MEMORY_MB="0.01")
    try:
        yield proc
    finally:
        stop_pid(proc.pid, first=15)


def test_a_tiny_budget_unloads_the_cold_model_which_still_answers(
    tiny: ServiceProcess, packaged: Packaged, shapes: Shapes
) -> None:
    models = _models(tiny.url)
    assert (
        models is not None and models["loans"]["loaded"] and not models["rates"]["loaded"]
    )  # loaded last wins
    resp = _post(tiny.url, "/models/rates/predict", {"records": shapes.rates_v1.records[:2]})
    assert resp.status_code == 200, resp.text
    assert resp.json()[0]["model_version"] == "1"
    models = _models(tiny.url)
    assert models is not None and models["rates"]["loaded"] and not models["loans"]["loaded"]
    metrics = httpx.get(f"{tiny.url}/metrics").text
    assert 'mloop_model_evictions_total{model_name="loans"}' in metrics
    assert 'mloop_model_loads_total{model_name="rates"} 2.0' in metrics
    assert "mloop_models_loaded 1.0" in metrics
    for _ in range(3):  # back and forth: every request answered by its own model
        for name, body in (
            ("loans", records(packaged.holdout, 1)),
            ("rates", shapes.rates_v1.records[:1]),
        ):
            resp = _post(tiny.url, f"/models/{name}/predict", {"records": body})
            assert resp.status_code == 200 and resp.json()[0]["model_name"] == name


def test_a_respawned_worker_serves_every_model_again(
    tiny: ServiceProcess, packaged: Packaged, shapes: Shapes
) -> None:
    from serving.control.rollout_client import rollout

    rollout(tiny.url, shapes.rates_v2.model.model_tag, token=TOKEN)
    assert rollout(tiny.url, shapes.fraud.model.model_tag, token=TOKEN)["status"] == "added"
    old = _worker_pid(tiny.pid)
    assert old is not None
    os.kill(old, signal.SIGKILL)

    def respawned() -> dict | None:
        new = _worker_pid(tiny.pid)
        return _models(tiny.url) if new not in (None, old) else None

    models = _wait_for(respawned, 90, "the respawned worker")
    assert psutil.pid_exists(tiny.pid)
    assert {n: m["bentoml_tag"] for n, m in models.items()} == {
        "loans": "loans:v1",
        "rates": "rates:v2",
        "fraud": "fraud:v1",
    }
    for name, body in (
        ("loans", records(packaged.holdout, 1)),
        ("rates", shapes.rates_v2.records[:1]),
        ("fraud", shapes.fraud.records[:1]),
    ):
        resp = _post(tiny.url, f"/models/{name}/predict", {"records": body})
        assert resp.status_code == 200, (name, resp.text)
        assert resp.json()[0]["model_name"] == name
    assert (
        _post(tiny.url, "/models/rates/predict", {"records": shapes.rates_v2.records[:1]}).json()[
            0
        ]["model_version"]
        == "2"
    )

"""Any column name, any request: a model trained on a table whose column names need quoting is
packaged, served and logged under the users' names, and a fuzzer finds no server error
(real ``bentoml serve``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mloop.core.processes import ServiceProcess, stop_pid
from serving.log.feedback import read_feedback
from serving.log.layout import split_log
from serving.log.predictions import read_predictions
from tests.helpers import assert_openapi_holds
from tests.serving.helpers import (
    AUTH,
    TOKEN,
    Packaged,
    json_records,
    make_odd_contract,
    package_odd,
    start,
)


@pytest.fixture(scope="module")
def odd(packaged: Packaged) -> Iterator[tuple[object, object, ServiceProcess]]:
    """(packaged odd-columns model, its holdout, a running service of it)."""
    model, hold = package_odd(packaged.settings)
    proc = start(packaged, model.model_tag)
    try:
        yield model, hold, proc
    finally:
        stop_pid(proc.pid, first=15)


def test_odd_columns_package_to_onnx_or_a_recorded_fallback(odd) -> None:
    model, _, proc = odd
    assert model.backend == "onnx" or model.fallback_reason
    assert model.labels["mloop.serving_backend"] == model.backend
    assert httpx.get(f"{proc.url}/model").json()["backend"] == model.backend


def test_openapi_document_shows_the_users_column_names(odd) -> None:
    _, _, proc = odd
    doc = httpx.get(f"{proc.url}/docs.json").json()
    record = next(s for name, s in doc["components"]["schemas"].items() if name.endswith("Record"))
    assert set(record["properties"]) == {c.name for c in make_odd_contract().feature_columns}


def test_predict_log_and_feedback_use_the_users_names(odd, packaged: Packaged) -> None:
    _, hold, proc = odd
    recs = json_records(hold.head(20), make_odd_contract())
    resp = httpx.post(f"{proc.url}/predict", json={"records": recs}, headers=AUTH, timeout=20)
    assert resp.status_code == 200, resp.text
    ids = [a["prediction_id"] for a in resp.json()]
    assert all(0 <= a["probability"] <= 1 for a in resp.json())
    fb = httpx.post(
        f"{proc.url}/feedback",
        json={"labels": [{"prediction_id": ids[0], "label": 1}]},
        headers=AUTH,
    )
    assert fb.status_code == 200 and fb.json()["recorded"] == 1
    wrong = httpx.post(
        f"{proc.url}/feedback",
        json={"labels": [{"prediction_id": ids[1], "label": "yes"}]},
        headers=AUTH,
    )
    assert wrong.status_code == 400 and "label" in wrong.text
    deadline = time.monotonic() + 15
    while True:  # read at least once, until every id is logged or the deadline passes
        logged = read_predictions(packaged.settings.state.predictions, "odd-columns")
        if set(ids) <= set(logged["prediction_id"]) or time.monotonic() >= deadline:
            break
        time.sleep(0.3)
    mine = split_log(logged.set_index("prediction_id").loc[ids])[1]  # the inputs, by their names
    for name in ("petal length (cm)", "a b", "a_b", "1st", "class", "naïve", "x/y", "x.y"):
        column = (
            mine[name].astype(object).where(mine[name].notna(), None)
        )  # NaN read back -> null sent
        assert column.tolist() == [r[name] for r in recs], name
    assert (
        read_feedback(packaged.settings.state.feedback, "odd-columns")
        .set_index("prediction_id")
        .loc[ids[0], "label"]
        == 1
    )


def test_a_value_out_of_bounds_is_refused_naming_the_users_column(odd) -> None:
    _, hold, proc = odd
    rec = json_records(hold.head(1), make_odd_contract())[0]
    for name, value in (("x.y", 2**63), ("naïve", 1e308), ("1st", "z" * 1001)):
        resp = httpx.post(
            f"{proc.url}/predict", json={"records": [{**rec, name: value}]}, headers=AUTH
        )
        assert resp.status_code == 400, resp.text
        assert name in resp.json()["detail"][0]["loc"], resp.text


def test_the_served_openapi_document_holds(odd, tmp_path: Path) -> None:
    """Schemathesis' full check set on every operation of the served document of a one-model
    service (BentoML's routes, GET /model, the model's own routes), with and without the token."""
    _, _, proc = odd
    assert_openapi_holds(f"{proc.url}/docs.json", TOKEN, min_cases=500, cwd=tmp_path)

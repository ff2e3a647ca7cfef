"""Pieces of the per-model routes (serving/api/routes.py) without a server: the natural batcher, the 400
answer, the OpenAPI additions."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

import pytest
from pydantic import ValidationError

from mloop.core.contract import DatasetContract
from serving.api.routes import NaturalBatcher, openapi_additions, validation_answer
from serving.api.schema import build_request_model
from tests.serving.helpers import make_contract

if TYPE_CHECKING:
    from serving.api.runtime import LiveModel


# the batcher only groups requests by their model object (``is``), never reads it: strings stand in
V1 = cast("LiveModel", "v1")
V2 = cast("LiveModel", "v2")


class Recorder:
    """A batch function that records each call's records (and can hold the first call)."""

    def __init__(self, hold: float = 0.0) -> None:
        self.calls: list[list[Any]] = []
        self.hold = hold
        self._lock = threading.Lock()

    def __call__(self, live: Any, records: list[Any]) -> list[dict[str, Any]]:
        with self._lock:
            self.calls.append(list(records))
            first = len(self.calls) == 1
        if first and self.hold:
            time.sleep(self.hold)
        return [{"record": r, "live": live} for r in records]


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_lone_request_runs_at_once_as_its_own_batch() -> None:
    run = Recorder()
    batcher = NaturalBatcher(run, ThreadPoolExecutor(2), max_size=256)
    answers = _run(batcher.submit(V1, [1, 2]))
    assert answers == [{"record": 1, "live": "v1"}, {"record": 2, "live": "v1"}] and run.calls == [
        [1, 2]
    ]


def test_requests_arriving_during_a_batch_run_next_as_one_batch() -> None:
    run = Recorder(hold=0.3)
    batcher = NaturalBatcher(run, ThreadPoolExecutor(2), max_size=256)

    async def scenario() -> list[list[dict[str, Any]]]:
        first = asyncio.ensure_future(batcher.submit(V1, [0]))
        await asyncio.sleep(0.05)  # the first batch is predicting now
        rest = [asyncio.ensure_future(batcher.submit(V1, [i])) for i in range(1, 6)]
        return await asyncio.gather(first, *rest)

    answers = _run(scenario())
    assert run.calls == [[0], [1, 2, 3, 4, 5]]  # one batch for the five that queued
    assert [a[0]["record"] for a in answers] == [0, 1, 2, 3, 4, 5]  # each got its own answers


def test_a_batch_never_mixes_model_versions_nor_exceeds_the_size() -> None:
    run = Recorder(hold=0.3)
    batcher = NaturalBatcher(run, ThreadPoolExecutor(2), max_size=3)

    async def scenario() -> None:
        first = asyncio.ensure_future(batcher.submit(V1, [0]))
        await asyncio.sleep(0.05)
        queued = [
            batcher.submit(V1, [1]),
            batcher.submit(V1, [2, 3]),
            batcher.submit(V2, [4]),
            batcher.submit(V1, [5]),
        ]
        await asyncio.gather(first, *queued)

    _run(scenario())
    assert run.calls == [[0], [1, 2, 3], [4], [5]]


def test_a_failing_batch_fails_its_requests_only() -> None:
    def run(live: Any, records: list[Any]) -> list[dict[str, Any]]:
        if records == ["bad"]:
            raise OSError("disk full")
        return [{"ok": r} for r in records]

    batcher = NaturalBatcher(run, ThreadPoolExecutor(1), max_size=256)
    with pytest.raises(OSError):
        _run(batcher.submit(V1, ["bad"]))
    assert _run(batcher.submit(V1, ["good"])) == [{"ok": "good"}]


def test_a_400_names_the_record_the_field_and_why() -> None:
    import json

    from tests.serving.test_service import GOOD

    model = build_request_model(make_contract())
    with pytest.raises(ValidationError) as info:
        model.model_validate_json(json.dumps({"records": [GOOD, {**GOOD, "age": "old"}]}))
    answer = validation_answer(info.value)
    assert "records.1.age: Input should be a valid number" in answer["error"]
    assert [tuple(d["loc"]) for d in answer["detail"]] == [("records", 1, "age")]
    with pytest.raises(ValidationError) as info:
        model.model_validate_json(b'{"records": [{}, {}]}')
    assert (
        "(and 5 more)" in validation_answer(info.value)["error"]
    )  # 10 problems: 5 shown, the rest counted


def test_openapi_additions_give_each_model_its_own_schemas() -> None:
    from serving.api.routes import ModelSchemas, build_schemas
    from serving.api.runtime import LiveModel
    from serving.api.schema import ClassificationAnswer, RegressionAnswer

    def fake(contract: DatasetContract, answer: Any) -> LiveModel:
        return LiveModel(
            tag=f"{contract.name}:v1",
            model_name=contract.name,
            model_version="1",
            predictor=None,  # pyright: ignore[reportArgumentType]  # why: building schemas never calls the predictor
            contract=contract,
            meta={},
            keys={},
            answer=answer,
        )

    a = build_schemas(
        fake(make_contract("a"), ClassificationAnswer),
        max_records=10,
        max_string_length=5,
        strict=False,
    )
    b = build_schemas(
        fake(make_contract("b-b"), RegressionAnswer),
        max_records=10,
        max_string_length=5,
        strict=False,
    )
    assert isinstance(a, ModelSchemas)
    paths, components = openapi_additions({"a": a, "b-b": b})
    assert {
        "/models",
        "/models/a",
        "/models/a/predict",
        "/models/a/feedback",
        "/models/b-b/predict",
    } <= set(paths)
    ref = paths["/models/b-b/predict"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]["$ref"]
    assert (
        ref == "#/components/schemas/b-b__BBPredictRequest" and ref.rsplit("/", 1)[1] in components
    )
    assert "a__ARecord" in components and "b-b__BBRecord" in components
    answer = paths["/models/b-b/predict"]["post"]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]["items"]["$ref"]
    assert answer.endswith("b-b__RegressionAnswer")

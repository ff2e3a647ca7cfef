"""The completed /docs.json (serving/api/openapi_doc.py): every answer of the gate and the handlers
declared, by the gate's own token rule (pure: a BentoML-shaped document, no server). Schemathesis
checks the served document against a real service (test_columns.py, test_many_models.py)."""

from __future__ import annotations

import functools
from typing import Any

from mloop.core.openapi import ERROR_SCHEMA, operations
from mloop.core.web import GUARD_REFUSALS, TOKEN_REFUSED, Refusal
from serving.api import openapi_doc
from serving.api.access import LOOPBACK_ROUTES, token_needed

LEGACY = {("POST", "/predict"), ("POST", "/feedback"), ("GET", "/model")}
JSON_ROUTES = ("/predict", "/feedback", "/admin/rollout")


def _bentoml_doc() -> dict[str, Any]:
    """What BentoML generates: its routes, its error schemas, no security, bodies not required."""
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/NotFound"}}}}
    body = {"content": {"application/json": {"schema": {"type": "object"}}}}
    post = {"requestBody": body, "responses": {"200": {"description": "ok"}, "404": ref}}
    return {
        "paths": {
            "/healthz": {"get": {"responses": {"200": {"description": "ok"}}}},
            "/predict": {"post": post},
            "/feedback": {"post": {**post, "responses": dict(post["responses"])}},
            "/admin/rollout": {"post": {**post, "responses": dict(post["responses"])}},
        },
        "components": {"schemas": {"NotFound": {"type": "object"}}},
    }


def _with_a_model(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with the per-model paths of a served ``loans`` (serving/api/routes.py), as /docs.json."""
    from serving.api.routes import build_schemas, openapi_additions
    from serving.api.runtime import LiveModel
    from serving.api.schema import ClassificationAnswer
    from tests.serving.helpers import make_contract

    live = LiveModel(
        tag="loans:v1",
        model_name="loans",
        model_version="1",
        predictor=None,  # pyright: ignore[reportArgumentType]  # why: the document needs no predictor
        contract=make_contract(),
        meta={},
        keys={},
        answer=ClassificationAnswer,
    )
    schemas = build_schemas(live, max_records=10, max_string_length=5, strict=False)
    paths, components = openapi_additions({"loans": schemas})
    doc["paths"].update(paths)
    doc["components"]["schemas"].update(components)
    return doc


def _complete(predict_requires_token: bool = True, has_token: bool = True) -> dict[str, Any]:
    doc = _with_a_model(_bentoml_doc())
    openapi_doc.complete_document(
        doc,
        needs_token=functools.partial(
            token_needed, has_token=has_token, predict_requires_token=predict_requires_token
        ),
        loopback_routes=LOOPBACK_ROUTES,
        json_routes=JSON_ROUTES,
        legacy_routes=LEGACY,
    )
    return doc


def _statuses(doc: dict[str, Any], method: str, path: str) -> set[str]:
    return set(doc["paths"][path][method.lower()]["responses"])


def test_every_operation_declares_the_guards_and_the_token_where_the_gate_asks_for_it() -> None:
    doc = _complete()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for method, path, operation in operations(doc):
        statuses = set(operation["responses"])
        assert {str(r.status) for r in GUARD_REFUSALS} <= statuses, path
        secured = "security" in operation
        assert secured == (method == "POST"), path  # GET is open; every POST needs the token
        assert (str(TOKEN_REFUSED.status) in statuses) == secured, path
        if secured:
            www = operation["responses"]["401"]["headers"]["WWW-Authenticate"]
            assert www["required"] is True
        if "requestBody" in operation:
            assert operation["requestBody"]["required"] is True
    assert "403" in _statuses(doc, "POST", "/admin/rollout")
    assert "403" not in _statuses(doc, "POST", "/predict")
    assert {"409", "503", "415"} <= _statuses(doc, "POST", "/predict")
    assert {"409", "503"} <= _statuses(doc, "GET", "/model")  # answered by the gate: now documented
    open_predict = _complete(predict_requires_token=False)["paths"]["/predict"]["post"]
    assert "security" not in open_predict and "401" not in open_predict["responses"]
    assert not any("security" in op for _, _, op in operations(_complete(has_token=False)))


def test_error_bodies_are_mloops_error_schema_and_every_refusal_is_declared() -> None:
    doc = _complete()
    not_found = doc["paths"]["/predict"]["post"]["responses"]["404"]["content"]["application/json"]
    assert not_found["schema"] == {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}  # not BentoML's
    host = doc["paths"]["/healthz"]["get"]["responses"]["400"]["content"]
    assert set(host) == {"text/plain", "application/json"}  # Starlette's text, or a JSON error
    declared = {
        (status, description)
        for _, _, op in operations(doc)
        for status, response in op["responses"].items()
        for description in [response["description"]]
    }
    refusals = [v for v in vars(openapi_doc).values() if isinstance(v, Refusal)]
    assert len(refusals) >= 10
    for refusal in refusals:  # each one the code answers with is declared where it can happen
        assert any(s == str(refusal.status) and refusal.description in d for s, d in declared), (
            refusal
        )


def test_a_non_finite_model_output_is_answered_null_as_the_answer_schema_says() -> None:
    """JSON has no Infinity: a regression overflowing float32 answers null (it answered Infinity,
    which broke the declared ``number`` and every strict JSON parser)."""
    import json
    from types import SimpleNamespace

    from serving.api.answering import Answering, answer_batch
    from serving.api.runtime import LiveModel
    from serving.api.schema import RegressionAnswer
    from serving.bundle.onnx_model import Outputs
    from serving.log.feedback import RecentIds
    from tests.serving.helpers import make_contract

    scores = [float("inf"), 2.5, float("nan")]
    predictor = SimpleNamespace(predict=lambda columns: Outputs(predictions=scores, scores=scores))
    live = LiveModel(
        tag="rates:v1",
        model_name="rates",
        model_version="1",
        predictor=predictor,  # pyright: ignore[reportArgumentType]  # why: a stand-in with predict only
        contract=make_contract("rates"),
        meta={},
        keys={"x": "x"},
        answer=RegressionAnswer,
        value_name="score",
    )
    answering = Answering(
        logger=None,
        recent=RecentIds(),
        feedback_store=None,  # pyright: ignore[reportArgumentType]  # why: this answer records no label
        count=lambda *_: None,
    )
    records = [SimpleNamespace(x=v) for v in (1e38, 1.0, 2.0)]
    answers = answer_batch(live, records, answering)
    assert [(a["prediction"], a["score"]) for a in answers] == [
        (None, None),
        (2.5, 2.5),
        (None, None),
    ]
    json.dumps(answers, allow_nan=False)  # strict JSON
    for answer in answers:
        RegressionAnswer.model_validate(answer)  # the declared answer schema holds

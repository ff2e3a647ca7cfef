"""The prediction service's served OpenAPI document, completed so it tells the truth.

BentoML generates ``/docs.json`` from the service class: its own typed routes, with error bodies
it declares as ``{"error": str, "detail": str}`` (a validation error's ``detail`` is a list), no
security, no request body required, and nothing about the ASGI layer in front
(:class:`serving.api.access.ServingGate`: Host, body size, token, loopback, content type, the
legacy routes' 409) nor ``GET /model``. :func:`complete_document` adds all of that from the
constants below, which are the statuses the code answers with (the gate, ``local_answer`` in
:mod:`serving.api.bento`, the per-model routes of :mod:`serving.api.routes`), and from the gate's
own access rule (``needs_token``). Pure: edits the document dict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from mloop.core.openapi import (
    JSON,
    complete_common,
    declare,
    declare_all,
    error_ref,
    operations,
    require_bearer,
)
from mloop.core.web import Refusal

NOT_JSON = Refusal(415, "The body is not JSON (send Content-Type: application/json)")
INVALID_BODY = Refusal(
    400, "The body does not follow the schema (pydantic detail: record, field, why)"
)
UNKNOWN_MODEL = Refusal(404, "No such model is served (the answer lists the served ones)")
NO_ROUTE = Refusal(404, "No such route under /models/<name>")
UNKNOWN_IDS = Refusal(404, "None of the prediction ids is known to this model (nothing recorded)")
LOOPBACK_ONLY = Refusal(403, "Only loopback clients may call this route")
SEVERAL_MODELS = Refusal(
    409, "Several models are served: use /models/<name>/... (the answer lists them)"
)
NO_MODEL = Refusal(503, "No model loaded yet")
LOAD_FAILED = Refusal(503, "The model could not be loaded")
LOG_UNWRITABLE = Refusal(
    503, "The prediction log cannot be written: no answer without its log line"
)
NOT_IN_STORE = Refusal(404, "The model tag is in neither the BentoML store nor the team's S3")
ROLLOUT_REFUSED = Refusal(
    409, "The new version failed its checks (smoke test, schema): nothing changed"
)
INTERNAL = Refusal(500, "An unexpected error (see the server log)")

MODEL_INFO_PATH = "/model"
ROLLOUT_PATH = "/admin/rollout"
BENTOML_ERRORS = ("InvalidArgument", "NotFound", "InternalServerError")
"""BentoML's error schemas: their ``detail`` is declared a string, while a validation error's is a list."""

HANDLER_REFUSALS: dict[tuple[str, str], tuple[Refusal, ...]] = {
    ("POST", "/predict"): (INVALID_BODY, LOG_UNWRITABLE),
    ("POST", "/feedback"): (INVALID_BODY, UNKNOWN_IDS),
    ("POST", ROLLOUT_PATH): (INVALID_BODY, NOT_IN_STORE, ROLLOUT_REFUSED),
}
"""What BentoML's handlers of :mod:`serving.api.bento` answer besides their 200."""

NeedsToken = Callable[[str, str], bool]


def model_info_operation(refusals: Iterable[Refusal]) -> dict[str, Any]:
    """``GET /model`` (answered by the gate, so BentoML does not know it)."""
    operation: dict[str, Any] = {
        "tags": ["Service APIs"],
        "summary": "What the one served model is (version, lineage, backend)",
        "responses": {
            "200": {
                "description": "The served model",
                "content": {JSON: {"schema": {"type": "object"}}},
            }
        },
    }
    declare_all(operation, refusals)
    return operation


def _own_errors(operation: dict[str, Any]) -> None:
    """BentoML's error responses get mloop's error schema (the body they really carry)."""
    for response in operation.get("responses", {}).values():
        schema = response.get("content", {}).get(JSON, {}).get("schema", {})
        if schema.get("$ref", "").rsplit("/", 1)[-1] in BENTOML_ERRORS:
            response["content"][JSON]["schema"] = error_ref()


def complete_document(
    doc: dict[str, Any],
    *,
    needs_token: NeedsToken,
    loopback_routes: Iterable[str],
    json_routes: Iterable[str],
    legacy_routes: Iterable[tuple[str, str]],
) -> None:
    """Declare on ``doc`` (BentoML's document with the per-model paths merged in) every answer of
    the layers in front of the handlers, ``GET /model``, and mloop's error schema."""
    legacy = set(legacy_routes)
    if ("GET", MODEL_INFO_PATH) in legacy:
        doc.setdefault("paths", {})[MODEL_INFO_PATH] = {
            "get": model_info_operation((SEVERAL_MODELS, NO_MODEL))
        }
    complete_common(doc)
    loopback, json_only = set(loopback_routes), set(json_routes)
    for method, path, operation in operations(doc):
        _own_errors(operation)
        if needs_token(method, path):
            require_bearer(doc, operation)
        if path in loopback:
            declare(operation, LOOPBACK_ONLY)
        if method == "POST" and path in json_only:
            declare(operation, NOT_JSON)
        if (method, path) in legacy and path != MODEL_INFO_PATH:
            declare_all(operation, (SEVERAL_MODELS, NO_MODEL))
        declare_all(operation, HANDLER_REFUSALS.get((method, path), ()))

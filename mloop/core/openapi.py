"""What an mloop service's served OpenAPI document declares beyond what its framework generates.

BentoML and FastAPI document the routes they own and the answers of their handlers, not those of
the layers in front (Host allowlist, body limit, bearer token) nor the error bodies mloop answers.
These helpers complete a generated document from the same :class:`mloop.core.web.Refusal`
constants the layers answer with, so every status code and error body a client can meet is
declared. Pure: they edit a document dict in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from mloop.core.web import GUARD_REFUSALS, TOKEN_REFUSED, Refusal

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
ERROR_SCHEMA = "MloopError"
BEARER_SCHEME = "bearer"
JSON = "application/json"


def error_schema() -> dict[str, Any]:
    """The JSON body of every refusal: ``error`` (mloop's layers and handlers) or ``detail``
    (FastAPI's own refusals), ``detail`` being a message or pydantic's list of problems."""
    problem = {
        "type": "object",
        "properties": {
            "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            "msg": {"type": "string"},
            "type": {"type": "string"},
        },
    }
    return {
        "type": "object",
        "title": ERROR_SCHEMA,
        "description": "What was refused and why (and how to fix it)",
        "properties": {
            "error": {"type": "string"},
            "detail": {"anyOf": [{"type": "string"}, {"type": "array", "items": problem}]},
            "models": {"type": "array", "items": {"type": "string"}},
        },
        "anyOf": [{"required": ["error"]}, {"required": ["detail"]}],
    }


def error_ref() -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) of every operation of ``doc``."""
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method.upper(), path, operation


def declare(
    operation: dict[str, Any],
    refusal: Refusal,
    schema: dict[str, Any] | None = None,
    headers: dict[str, Any] | None = None,
) -> None:
    """Declare ``refusal`` on ``operation``: its description is added to the status's, its body
    (``schema``, by default the error schema; a plain-text refusal is a string) is one more
    alternative of the status's content."""
    response = operation.setdefault("responses", {}).setdefault(
        str(refusal.status), {"description": refusal.description}
    )
    described = response.get("description")
    if not described:
        response["description"] = refusal.description
    elif refusal.description not in described:
        response["description"] = f"{described}; {refusal.description}"
    if refusal.media_type != JSON:
        body = {"type": "string"}
    else:
        body = schema if schema is not None else error_ref()
    content = response.setdefault("content", {})
    known = content.get(refusal.media_type, {}).get("schema")
    if known is None:
        content[refusal.media_type] = {"schema": body}
    elif known != body:
        alternatives = known["anyOf"] if list(known) == ["anyOf"] else [known]
        if body not in alternatives:
            content[refusal.media_type] = {"schema": {"anyOf": [*alternatives, body]}}
    if headers:
        response.setdefault("headers", {}).update(headers)


def declare_all(operation: dict[str, Any], refusals: Iterable[Refusal]) -> None:
    for refusal in refusals:
        declare(operation, refusal)


def require_bearer(doc: dict[str, Any], operation: dict[str, Any]) -> None:
    """``operation`` needs ``Authorization: Bearer <token>``: the security scheme, and its 401 with
    the ``WWW-Authenticate`` header every refusal of a token carries."""
    doc.setdefault("components", {}).setdefault("securitySchemes", {})[BEARER_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "The platform's API token (`mloop token` prints it)",
    }
    operation["security"] = [{BEARER_SCHEME: []}]
    www = {"required": True, "schema": {"type": "string", "enum": ["Bearer"]}}
    declare(operation, TOKEN_REFUSED, headers={"WWW-Authenticate": www})


def complete_common(doc: dict[str, Any]) -> None:
    """Every operation: the error schema, the guards' refusals (they answer on any route), and a
    declared request body is required (no body at all is refused, so it is not a valid request)."""
    doc.setdefault("components", {}).setdefault("schemas", {})[ERROR_SCHEMA] = error_schema()
    for _, _, operation in operations(doc):
        declare_all(operation, GUARD_REFUSALS)
        if "requestBody" in operation:
            operation["requestBody"]["required"] = True

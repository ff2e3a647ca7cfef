"""The per-model routes of the prediction service, served in the ASGI layer in front of BentoML.

``/models/<name>/...`` cannot be BentoML routes: BentoML builds its routes and their request
schemas once, at import, and models are added and replaced at runtime. So
:class:`serving.api.access.ServingGate` hands these paths (after the Host, body-size and access checks)
to :class:`ModelRoutes`:

- ``GET /models``: ``{"models": {<name>: {<GET /model fields>, "loaded": bool}}}``;
- ``GET /models/<name>``: the ``GET /model`` fields plus ``loaded``; 404 ``{"error", "models"}``
  for a name that is not served (or breaks :mod:`mloop.core.names`' rule);
- ``POST /models/<name>/predict`` and ``POST /models/<name>/feedback``: the bodies and answers of
  ``/predict`` and ``/feedback``, validated against THAT model's contract (a pydantic model built
  per served tag by :mod:`serving.api.schema`, with the service's limits): 400 with pydantic's detail
  (which record, which field, why), 415 for a body that is not JSON;
- ``GET /docs.json``: BentoML's document with every served model's paths and request/answer
  schemas merged in, generated per request (models change at runtime).

Batching, the natural way: requests for one model queue while a batch of that model predicts in a
worker thread, and everything queued runs next as ONE batch (up to ``batch_max_size`` records) of
one model version. Nothing waits on a timer, so a lone request is answered at once. The batch is
answered by :func:`serving.api.answering.answer_batch`, the same function BentoML's ``/predict`` calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from mloop.core.names import NAME_PATTERN
from mloop.core.openapi import JSON, declare_all
from mloop.core.web import BODY_TOO_LARGE, ASGIApp, Message, Receive, Refusal, Scope, Send
from serving.api.answering import PREDICT_LOG_UNWRITABLE, Answering, answer_batch, answer_feedback
from serving.api.modelset import ModelSet
from serving.api.openapi_doc import (
    INTERNAL,
    INVALID_BODY,
    LOAD_FAILED,
    LOG_UNWRITABLE,
    NO_ROUTE,
    NOT_JSON,
    UNKNOWN_IDS,
    UNKNOWN_MODEL,
)
from serving.api.runtime import LiveModel
from serving.api.schema import (
    build_feedback_model,
    build_request_model,
    feedback_annotation,
    model_suffix,
)
from serving.log.journal import JournalError

log = logging.getLogger("mloop.serving")

MODELS_PREFIX = "/models"
DOCS_PATH = "/docs.json"
ERRORS_SHOWN = 5
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


def json_answer(status: int, body: Any, extra: list[tuple[bytes, bytes]] | None = None) -> Answer:
    """(status, headers, body) of a JSON answer. Pure."""
    data = json.dumps(body, default=str).encode()
    return (
        status,
        [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            *(extra or []),
        ],
        data,
    )


def validation_answer(exc: ValidationError) -> dict[str, Any]:
    """A 400 answer in BentoML's shape (``error``, ``detail``: pydantic's errors), with the first
    problems spelled out in ``error`` (``records.3.age: Input should be ...``). Pure."""
    detail = exc.errors(include_context=False, include_input=False, include_url=False)
    where = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in detail[:ERRORS_SHOWN]
    )
    more = f" (and {len(detail) - ERRORS_SHOWN} more)" if len(detail) > ERRORS_SHOWN else ""
    return {
        "error": f"{exc.error_count()} validation error for {exc.title}: {where}{more}",
        "detail": detail,
    }


@dataclass(frozen=True)
class ModelSchemas:
    """The request models of one served tag (built from its contract with the service's limits)."""

    predict: type[BaseModel]  # {"records": [...]}
    feedback: type[BaseModel]  # {"labels": [...]}
    answer: type[BaseModel]


def build_schemas(
    live: LiveModel, *, max_records: int, max_string_length: int, strict: bool
) -> ModelSchemas:
    """:class:`ModelSchemas` of ``live`` (pure: pydantic models from its contract)."""
    contract = live.contract
    predict = build_request_model(
        contract, max_records, max_string_length=max_string_length, strict=strict
    )
    item = build_feedback_model(contract, max_string_length)
    feedback = create_model(
        f"{model_suffix(contract)}FeedbackRequest",
        __config__=ConfigDict(extra="forbid"),
        labels=(feedback_annotation(item, max_records), Field(...)),
    )
    return ModelSchemas(predict=predict, feedback=feedback, answer=live.answer)


def _operation(
    summary: str,
    answer: str,
    refusals: tuple[Refusal, ...],
    answer_schema: dict[str, Any] | None = None,
    body_ref: str | None = None,
) -> dict[str, Any]:
    """One documented operation of the per-model routes: its 200 (``answer_schema``, by default a
    JSON object), its request body (``body_ref``) and ``refusals``. Pure."""
    operation: dict[str, Any] = {
        "tags": ["models"],
        "summary": summary,
        "responses": {
            "200": {
                "description": answer,
                "content": {JSON: {"schema": answer_schema or {"type": "object"}}},
            }
        },
    }
    if body_ref is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": {"$ref": body_ref}}},
        }
    declare_all(operation, refusals)
    return operation


def openapi_additions(served: dict[str, ModelSchemas]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(paths, component schemas) documenting ``/models``, ``/models/<name>`` and every model's
    ``predict`` and ``feedback`` with its own schemas (component names prefixed ``<name>__``) and
    what they answer (the token's 401 and the gate's answers are added by ``/docs.json``'s
    completion, :func:`serving.api.openapi_doc.complete_document`). Pure."""
    paths: dict[str, Any] = {
        MODELS_PREFIX: {"get": _operation("Every served model", "The served models by name", ())}
    }
    components: dict[str, Any] = {}
    post_refusals = (INVALID_BODY, UNKNOWN_MODEL, NO_ROUTE, NOT_JSON, LOAD_FAILED, INTERNAL)
    for name, schemas in sorted(served.items()):
        prefix = f"{name}__"
        refs: dict[str, str] = {}
        for role, model in (
            ("predict", schemas.predict),
            ("feedback", schemas.feedback),
            ("answer", schemas.answer),
        ):
            schema = model.model_json_schema(ref_template=f"#/components/schemas/{prefix}{{model}}")
            for key, sub in schema.pop("$defs", {}).items():
                components[prefix + key] = sub
            components[prefix + model.__name__] = schema
            refs[role] = f"#/components/schemas/{prefix}{model.__name__}"
        route = f"{MODELS_PREFIX}/{name}"
        paths[route] = {
            "get": _operation(
                f"What model {name!r} serves", "Version, lineage, backend, loaded", (UNKNOWN_MODEL,)
            )
        }
        paths[f"{route}/predict"] = {
            "post": _operation(
                f"Predict with model {name!r}: one answer per record, in order",
                "One answer per record",
                (*post_refusals, LOG_UNWRITABLE),
                answer_schema={"type": "array", "items": {"$ref": refs["answer"]}},
                body_ref=refs["predict"],
            )
        }
        paths[f"{route}/feedback"] = {
            "post": _operation(
                f"Ground-truth labels for predictions of model {name!r} (bearer token required)",
                "What was recorded, refused and why",
                (*post_refusals, UNKNOWN_IDS),
                body_ref=refs["feedback"],
            )
        }
    return paths, components


class _BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body; raises _BodyTooLarge past ``limit`` bytes (a chunked body has no
    Content-Length for the gate to check)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message.get("type") != "http.request":
            break
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(body)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


@dataclass
class _Pending:
    live: LiveModel
    records: list[Any]
    future: asyncio.Future[list[dict[str, Any]]]


class NaturalBatcher:
    """One model's queue: while a batch predicts in a worker thread, arriving requests queue and run
    next as one batch (at most ``max_size`` records, all of one model version). No timed wait."""

    def __init__(
        self,
        run: Callable[[LiveModel, list[Any]], list[dict[str, Any]]],
        executor: ThreadPoolExecutor,
        max_size: int,
    ) -> None:
        self._run = run
        self._executor = executor
        self.max_size = max_size
        self._queue: deque[_Pending] = deque()
        self._draining = False

    async def submit(self, live: LiveModel, records: list[Any]) -> list[dict[str, Any]]:
        """The answers of ``records`` (one per record), predicted with ``live``."""
        loop = asyncio.get_running_loop()
        pending = _Pending(live, records, loop.create_future())
        self._queue.append(pending)
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        return await pending.future

    def _take(self) -> list[_Pending]:
        first = self._queue.popleft()
        batch, size = [first], len(first.records)
        while (
            self._queue
            and self._queue[0].live is first.live
            and size + len(self._queue[0].records) <= self.max_size
        ):
            item = self._queue.popleft()
            batch.append(item)
            size += len(item.records)
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch = self._take()
                records = [r for item in batch for r in item.records]
                try:
                    answers = await loop.run_in_executor(
                        self._executor, self._run, batch[0].live, records
                    )
                except BaseException as exc:
                    for item in batch:
                        if not item.future.done():
                            item.future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                start = 0
                for item in batch:
                    n = len(item.records)
                    if not item.future.done():
                        item.future.set_result(answers[start : start + n])
                    start += n
        finally:
            self._draining = False


class ModelRoutes:
    """The routes of the module docstring (called by :class:`serving.api.access.ServingGate`)."""

    prefixes = (MODELS_PREFIX, DOCS_PATH)

    def __init__(
        self,
        models: ModelSet[LiveModel],
        answering: Answering,
        *,
        max_records: int,
        max_string_length: int,
        strict: bool,
        max_body_bytes: int,
        batch_max_size: int = 256,
        threads: int = 4,
        complete_doc: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.models = models
        self.answering = answering
        self.max_records = max_records
        self.max_string_length = max_string_length
        self.strict = strict
        self.max_body_bytes = max_body_bytes
        self.batch_max_size = batch_max_size
        self.complete_doc = complete_doc
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mloop-models")
        self._batchers: dict[str, NaturalBatcher] = {}
        self._schemas: dict[str, ModelSchemas] = {}

    # ------------------------------------------------------------------ schemas

    def schemas(self, live: LiveModel) -> ModelSchemas:
        """The request models of ``live``'s tag (built once per tag; tags no longer served are dropped)."""
        found = self._schemas.get(live.tag)
        if found is None:
            found = build_schemas(
                live,
                max_records=self.max_records,
                max_string_length=self.max_string_length,
                strict=self.strict,
            )
            served = {self.models.slot(n).tag for n in self.models.names()} | {live.tag}
            self._schemas = {t: s for t, s in self._schemas.items() if t in served}
            self._schemas[live.tag] = found
        return found

    def served_schemas(self) -> dict[str, ModelSchemas]:
        """Schemas of every served model whose tag has been seen (all of them: the service builds
        them when it puts a model)."""
        out = {}
        for name in self.models.names():
            schemas = self._schemas.get(self.models.slot(name).tag)
            if schemas is not None:
                out[name] = schemas
        return out

    # ------------------------------------------------------------------ dispatch

    async def __call__(
        self,
        app: ASGIApp,
        scope: Scope,
        receive: Receive,
        send: Send,
        method: str,
        path: str,
        content_type: str,
    ) -> bool:
        """Answer ``path`` if it is one of ours (True), else leave it to BentoML (False)."""
        if path == DOCS_PATH:
            if method != "GET":
                return False
            await self._docs(app, scope, receive, send)
            return True
        if path != MODELS_PREFIX and not path.startswith(MODELS_PREFIX + "/"):
            return False
        answer = await self._answer(scope, receive, method, path, content_type)
        status, headers, body = answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return True

    def _unknown(self, name: str) -> Answer:
        served = self.models.names()
        why = (
            "is not served"
            if NAME_PATTERN.match(name) and ".." not in name
            else "is not a valid model name"
        )
        return json_answer(
            UNKNOWN_MODEL.status,
            {
                "error": f"model {name!r} {why}; served models: {', '.join(served) or 'none'}",
                "models": served,
            },
        )

    async def _answer(
        self, scope: Scope, receive: Receive, method: str, path: str, content_type: str
    ) -> Answer:
        parts = path[len(MODELS_PREFIX) :].strip("/").split("/") if path != MODELS_PREFIX else []
        if not parts:
            if method not in ("GET", "HEAD"):
                return json_answer(
                    405, {"error": f"{method} {path} is not allowed: use GET"}, [(b"allow", b"GET")]
                )
            return json_answer(200, {"models": self.models.describe_all()})
        name = parts[0]
        if name not in self.models:  # models are added and replaced, never removed: it stays served
            return self._unknown(name)
        if len(parts) == 1:
            if method not in ("GET", "HEAD"):
                return json_answer(
                    405, {"error": f"{method} {path} is not allowed: use GET"}, [(b"allow", b"GET")]
                )
            return json_answer(200, self.models.describe(name))
        if len(parts) != 2 or parts[1] not in ("predict", "feedback"):
            return json_answer(
                NO_ROUTE.status,
                {
                    "error": f"no route {path}: use /models/{name}/predict or /models/{name}/feedback"
                },
            )
        if method != "POST":
            return json_answer(
                405, {"error": f"{method} {path} is not allowed: use POST"}, [(b"allow", b"POST")]
            )
        if content_type != "application/json":
            return json_answer(
                NOT_JSON.status,
                {
                    "error": f"wrong content type {content_type or '(none)'!r}: send Content-Type: application/json",
                    "detail": [
                        {"loc": ["header", "content-type"], "msg": "must be application/json"}
                    ],
                },
            )
        try:
            body = await read_body(receive, self.max_body_bytes)
        except _BodyTooLarge:
            return json_answer(
                BODY_TOO_LARGE.status,
                {
                    "error": f"request body larger than {self.max_body_bytes} bytes (MLOOP_MAX_BODY_BYTES): send fewer records per request"
                },
            )
        try:
            live = self.models.checkout(name)
            if live is None:  # unloaded by the budget: load it again, off the event loop
                live = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self.models.checkout_loading, name
                )
        except Exception as exc:
            log.exception("could not load model %s on demand", name)
            return json_answer(
                LOAD_FAILED.status,
                {"error": f"model {name!r} could not be loaded: {type(exc).__name__}"},
            )
        try:
            if parts[1] == "predict":
                return await self._predict(live, body)
            return await self._feedback(live, body, scope)
        except Exception:
            log.exception("%s %s failed", method, path)
            return json_answer(
                INTERNAL.status,
                {"error": "An unexpected error has occurred, please check the server log."},
            )
        finally:
            self.models.checkin(name)

    async def _predict(self, live: LiveModel, body: bytes) -> Answer:
        try:
            request = self.schemas(live).predict.model_validate_json(body or b"{}")
        except ValidationError as exc:
            return json_answer(INVALID_BODY.status, validation_answer(exc))
        batcher = self._batchers.get(live.model_name)
        if batcher is None:
            batcher = self._batchers[live.model_name] = NaturalBatcher(
                self._run, self._executor, self.batch_max_size
            )
        try:
            answers = await batcher.submit(live, request.records)  # pyright: ignore[reportAttributeAccessIssue]  # why: a field of a model built at run time from the contract
        except JournalError as exc:
            log.error("%s: answering 503", exc)
            return json_answer(LOG_UNWRITABLE.status, {"error": PREDICT_LOG_UNWRITABLE})
        return json_answer(200, answers)

    def _run(self, live: LiveModel, records: list[Any]) -> list[dict[str, Any]]:
        return answer_batch(live, records, self.answering)

    async def _feedback(self, live: LiveModel, body: bytes, scope: Scope) -> Answer:
        try:
            request = self.schemas(live).feedback.model_validate_json(body or b"{}")
        except ValidationError as exc:
            return json_answer(INVALID_BODY.status, validation_answer(exc))
        labels = request.labels  # pyright: ignore[reportAttributeAccessIssue]  # why: a field of a model built at run time from the contract
        headers = dict(scope.get("headers") or [])
        client = scope.get("client")
        source = {
            "via": f"POST {MODELS_PREFIX}/{live.model_name}/feedback",
            "client": client[0] if client else None,
            "user_agent": headers.get(b"user-agent", b"").decode("latin-1") or None,
            "labels": len(labels),
        }
        status, answer = await asyncio.get_running_loop().run_in_executor(
            self._executor, answer_feedback, live, labels, source, self.answering
        )
        return json_answer(status, answer)

    async def _docs(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """BentoML's document, with :func:`openapi_additions` merged in and ``complete_doc`` applied."""
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, capture)
        body = b"".join(chunks)
        status = int(start.get("status", 500))
        if status == 200:
            try:
                doc = json.loads(body)
                paths, components = openapi_additions(self.served_schemas())
                doc.setdefault("paths", {}).update(paths)
                doc.setdefault("components", {}).setdefault("schemas", {}).update(components)
                if self.complete_doc is not None:
                    self.complete_doc(doc)
                status, headers, body = json_answer(200, doc)
            except Exception:
                log.exception("could not add the models to /docs.json")
                headers = [
                    (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
                ]
                headers.append((b"content-length", str(len(body)).encode()))
        else:
            headers = list(start.get("headers", []))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

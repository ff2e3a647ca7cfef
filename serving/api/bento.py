"""The BentoML prediction service (``bentoml serve serving.api.bento:PredictionService``).

This module is BentoML's entry point, not a library module: it reads its configuration when
imported, because BentoML builds the HTTP schema from the class at import time. The knobs are one
typed :class:`serving.api.config.ServingSettings` (``MLOOP_SERVE_MODELS`` and/or ``MLOOP_SERVE_MODEL`` (at
least one tag), ``MLOOP_SERVE_MEMORY_MB``, ``MLOOP_MAX_RECORDS``,
``MLOOP_MAX_STRING_LENGTH``, ``MLOOP_SERVE_STRICT``, ``MLOOP_PREDICTION_LOG``, ``MLOOP_BATCHING``,
``MLOOP_BATCH_MAX_SIZE``, ``MLOOP_BATCH_MAX_LATENCY_MS``, ``MLOOP_BATCH_WAIT_BOUND``,
``MLOOP_PREDLOG_FLUSH_ROWS``, ``MLOOP_PREDLOG_FLUSH_SECONDS``, ``MLOOP_PREDLOG_JOURNAL``,
``MLOOP_ONNX_THREADS``: see its field
descriptions) plus the platform :class:`mloop.core.settings.Settings` (``MLOOP_HOME``: predictions go
to ``<home>/predictions``, labels to ``<home>/feedback``; ``MLOOP_SERVE_HOST``/``MLOOP_HOST`` and
``MLOOP_SERVE_PORT``: where it binds; the security settings below). Each model's contract defines
its request schema (see :mod:`serving.api.schema`), with the user's column names; the FIRST start
tag's types BentoML's ``/predict``.

Many models, one process (issue 12): the service holds a :class:`serving.api.modelset.ModelSet` (every
start tag, plus models added by ``/admin/rollout``), with a memory budget and least-recently-used
unloading (``MLOOP_SERVE_MEMORY_MB``). Each model answers at ``/models/<name>/predict`` and
``/models/<name>/feedback`` (:mod:`serving.api.routes`, in the ASGI layer: BentoML's routes are fixed
at import). With exactly one model served, ``/predict``, ``/feedback`` and ``GET /model`` are
BentoML's typed routes as before (the fast path measured by bench/serving.py); with several they
answer 409 with the list of models: a client is never answered by a model it did not name.

Security (issue 10), in the order a request meets it (outermost first):

All of 1-2 and the 415 of 3 are checked by ONE ASGI layer, :class:`serving.api.access.ServingGate`
(the behaviour of ``mloop.core.web.GuardMiddleware`` + :class:`serving.api.access.AccessMiddleware`, in
one pass over the headers).

1. **Host allowlist and body limit** (as :class:`mloop.core.web.GuardMiddleware`): a ``Host`` header
   not in ``Settings.host_allowlist()`` (loopback names, the bind addresses, ``MLOOP_ALLOWED_HOSTS``)
   gets 400 on EVERY route, health and metrics included (one rule, no exception to forget; a probe
   uses the service's own address); a body over ``MLOOP_MAX_BODY_BYTES`` gets 413.
2. **Access** (:mod:`serving.api.access`): the bearer token ``Settings().bearer_token()`` (the generated
   secret under MLOOP_HOME, or ``MLOOP_API_TOKEN``; none only with ``MLOOP_AUTH=false``) is required
   on every write (``/feedback``, ``/admin/rollout``) and on ``/predict`` unless
   ``MLOOP_PREDICT_REQUIRES_TOKEN=false``; ``/admin/rollout`` answers loopback clients only.
   Open without a token: the read-only ``GET`` routes: ``/healthz``, ``/livez``, ``/readyz``,
   ``/metrics``, ``/docs.json`` and the docs page, ``GET /model`` (any other method on them: 405).
3. **Request shape**: JSON only (415), the contract's schema (400), at most ``MLOOP_MAX_RECORDS``
   records or labels per request, ``MLOOP_SERVE_STRICT`` ranges and categories.
4. **Feedback you can trust** (:mod:`serving.log.feedback`): a label is recorded only for a prediction id
   this model issued (the recent-id index, then its prediction log); the first label per id wins,
   an equal second one is a duplicate, a different one a recorded conflict.

``/docs.json`` declares every answer of 1-4 and of the handlers (:mod:`serving.api.openapi_doc`,
from the same ``Refusal`` constants the code answers with); schemathesis' full check set holds
against it (tests/serving/test_columns.py, test_many_models.py).

Endpoints: ``POST /predict`` ``{"records": [...]}`` (batchable: concurrent requests are merged by
BentoML's adaptive batcher into one vectorised ONNX call), ``GET /model``, ``POST /feedback``
``{"labels": [{"prediction_id", "label"}]}`` (answer: ``model_name``, ``recorded``, ``duplicates``,
``conflicts``, ``unknown``, ``set_aside``, ``rejected`` (at most 100 ``{"prediction_id", "reason"}``),
``rejected_truncated``; 404 with the same fields plus ``error`` when no id is known),
``POST /admin/rollout`` ``{"model_tag"}`` (loopback
only: replaces the served version of the tag's model, ``"status": "switched"``, or adds the model,
``"added"``), ``GET /models`` and ``GET /models/<name>`` (what is served, ``loaded`` or not),
``/models/<name>/predict`` and ``/models/<name>/feedback``, BentoML's own ``/healthz`` ``/livez``
``/readyz`` (ready once the start models are loaded) and
``/metrics`` (Prometheus; ``mloop_predictions_total`` and ``mloop_model_info`` carry the model
version as a label; ``mloop_predlog_dead_letter_total`` counts rows the prediction log or the
feedback store had to set aside, see :mod:`serving.log.predictions`; ``mloop_models_loaded``,
``mloop_model_loads_total``, ``mloop_model_evictions_total`` and ``mloop_model_memory_mb`` show the
model set and its budget).

Rollout design: each served model is ONE entry of the model set holding a :class:`LiveModel`
(predictor, version, contract). A rollout loads the new tag from the BentoML store, smoke-tests
it, and only then replaces that entry (no other entry is touched). A request takes the model once
at its start, so each request (and each batch) is answered entirely by one model version,
requests in flight finish on the old one, and no request ever sees a half-loaded one. A failed
smoke test leaves the entry alone. A successful rollout is persisted (:mod:`serving.api.rollout_record`),
so a worker BentoML respawns after a crash serves the start models and every model rolled out
since (:func:`serving.api.rollout_record.startup_tags`), not only the ones it was started with.

Team mode (issue 13): every tag is loaded through :func:`serving.bundle.remote_models.ensure_local`, so a
start tag, a rolled-out or an added one that this host's store lacks is first imported from the
team's S3 (the exact model another host packaged and exported); a tag in neither place fails the
start (or the rollout, 404) with an error that says where it looked. A single machine only checks
its store, as before.

Write-ahead log: ``/predict`` journals its batch (:mod:`serving.log.journal`) before it answers; a
journal that cannot be written answers 503 (no answer without its log line). At start the worker
compacts the journal segments a killed predecessor left (:func:`serving.log.predictions.compact_journals`).
One worker process per service (``workers=1``): the swap is in-process, the models are loaded
once, and on 2 cores one worker with ONNX Runtime already runs near BentoML's own floor.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any, Protocol

import bentoml
from bentoml.exceptions import BentoMLException
from bentoml.validators import ContentType

from mloop.core.names import check_name
from mloop.core.settings import Settings
from mloop.core.web import ASGIApp, Receive, Refusal, Scope, Send
from serving.api.access import LOOPBACK_ROUTES, LocalAnswer, ServingGate, token_needed
from serving.api.answering import PREDICT_LOG_UNWRITABLE, Answering, answer_batch, answer_feedback
from serving.api.batching import bound_batching_wait
from serving.api.config import ServingSettings
from serving.api.modelset import Change, ModelSet
from serving.api.openapi_doc import (
    NO_MODEL,
    NOT_IN_STORE,
    NOT_JSON,
    ROLLOUT_REFUSED,
    SEVERAL_MODELS,
    complete_document,
)
from serving.api.rollout_record import (
    initial_tag_for,
    model_name_of,
    read_all_rolled_out,
    startup_tags,
    write_rolled_out,
)
from serving.api.routes import ModelRoutes, json_answer
from serving.api.runtime import (
    LiveModel,
    RolloutRefused,
    answer_schema,
    load_live_model,
    prepare_live_model,
    served_name,
)
from serving.api.schema import (
    build_feedback_model,
    build_record_model,
    feedback_annotation,
    records_annotation,
)
from serving.bundle.onnx_model import read_contract, read_meta
from serving.bundle.remote_models import ensure_local
from serving.log.feedback import FeedbackStore, RecentIds
from serving.log.journal import JournalError
from serving.log.predictions import PredictionLogger, compact_journals
from serving.log.remote_parts import remote_log

log = logging.getLogger("mloop.serving")

_SERVING = ServingSettings()
_TAGS = _SERVING.tags()
if not _TAGS:
    raise RuntimeError(
        "MLOOP_SERVE_MODELS (or MLOOP_SERVE_MODEL) is not set: give the BentoML model tags to serve (e.g. loans:v1,rates:v2)"
    )
_TAG = _TAGS[
    0
]  # types BentoML's /predict (the route of a one-model service) and is the Bento's model
_SETTINGS = Settings()


def _get_model(tag: str) -> Any:
    """``bentoml.models.get(tag)``, imported from the team's S3 first when the local store lacks it
    (team mode, :func:`serving.bundle.remote_models.ensure_local`; a single machine only checks the store)."""
    ensure_local(_SETTINGS, tag)
    return bentoml.models.get(tag)


ensure_local(
    _SETTINGS, _TAG
)  # a host that did not package it serves the exact model another host exported
_INITIAL_REF = bentoml.models.BentoModel(_TAG)
if _INITIAL_REF.stored is None:  # ensure_local has just put it there: only a broken store lacks it
    raise RuntimeError(f"model {_TAG} is not in the local BentoML store after ensure_local")
_INITIAL_DIR = Path(_INITIAL_REF.stored.path)
_CONTRACT, _META = (
    read_contract(_INITIAL_DIR),
    read_meta(_INITIAL_DIR),
)  # read once: __init__ reuses them
Record = build_record_model(
    _CONTRACT, max_string_length=_SERVING.max_string_length, strict=_SERVING.serve_strict
)
Records = records_annotation(Record, _SERVING.max_records)
Labels = feedback_annotation(
    build_feedback_model(_CONTRACT, _SERVING.max_string_length), _SERVING.max_records
)
Answer = answer_schema(
    _CONTRACT, _META
)  # a rollout keeps it: the answer schema is part of the signature
# The explicit content type matters for speed: without it BentoML derives the media type of a list
# output from its JSON schema, regenerated on every response (~1 ms here, measured with cProfile).
Answers = Annotated[list[Answer], ContentType("application/json")]

_PREDICTIONS = bentoml.metrics.Counter(
    name="mloop_predictions",
    documentation="Records answered by /predict and /models/<name>/predict",
    labelnames=["model_name", "model_version"],
)
_MODEL_INFO = bentoml.metrics.Gauge(
    name="mloop_model_info",
    documentation="1 for the model version this worker serves, 0 for versions it served before",
    labelnames=["model_name", "model_version", "backend"],
    multiprocess_mode="livemax",
)
_DEAD_LETTER = bentoml.metrics.Counter(
    name="mloop_predlog_dead_letter",
    documentation="Rows the prediction log (log=predictions) or the feedback store (log=feedback) set aside as dead letter",
    labelnames=["model_name", "log"],
)
_LOADED = bentoml.metrics.Gauge(
    name="mloop_models_loaded",
    documentation="Models loaded in memory now (the others are served but unloaded by the memory budget)",
    multiprocess_mode="livemax",
)
_LOADS = bentoml.metrics.Counter(
    name="mloop_model_loads",
    documentation="Loads of a model into memory (start, rollout, reload on demand after an unload)",
    labelnames=["model_name"],
)
_EVICTIONS = bentoml.metrics.Counter(
    name="mloop_model_evictions",
    documentation="Least-recently-used unloads of a model to stay within MLOOP_SERVE_MEMORY_MB",
    labelnames=["model_name"],
)
_MEMORY = bentoml.metrics.Gauge(
    name="mloop_model_memory_mb",
    documentation="Measured memory cost of a loaded model, in MB (0 while unloaded)",
    labelnames=["model_name"],
    multiprocess_mode="livemax",
)


def _count_dead_letter(kind: str, model_name: str, rows: int, reason: str) -> None:
    _DEAD_LETTER.labels(model_name, kind).inc(rows)


def _count_predictions(model_name: str, model_version: str, rows: int) -> None:
    _PREDICTIONS.labels(model_name, model_version).inc(rows)


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _load_tag(tag: str) -> LiveModel:
    """A model from the BentoML store, as served (no checks: it passed them when it was put)."""
    model = _get_model(tag)
    return load_live_model(str(model.tag), Path(model.path), threads=_SERVING.onnx_threads)


class _Served(Protocol):
    """What the middleware reads of the service instance (``PredictionService`` names BentoML's
    wrapper of the class, not the class of the instance)."""

    models: ModelSet[LiveModel]
    routes: ModelRoutes


class _Holder:
    """Lets the ASGI middleware reach the service instance (set in ``__init__``)."""

    service: _Served | None = None


_HOLDER = _Holder()


JSON_ROUTES = ("/predict", "/feedback", "/admin/rollout")
LEGACY_ROUTES = {
    ("POST", "/predict"): "predict",
    ("POST", "/feedback"): "feedback",
    ("GET", "/model"): "",
}


def local_answer(holder: _Holder, method: str, path: str, content_type: str) -> LocalAnswer | None:
    """The service's own answers before BentoML's routes (given by :class:`serving.api.access.ServingGate`
    after the Host, body and access checks): ``GET /model`` (what is served), 409 for the legacy
    routes while several models are served (never a wrong model), and 415 for a POST route whose
    body is not JSON (BentoML would otherwise parse any content type as JSON; a client sending
    form data or text deserves a clear "wrong content type" answer). None: on to the routes."""
    svc = holder.service
    legacy = LEGACY_ROUTES.get((method, path))
    if legacy is not None and svc is not None and len(svc.models) > 1:
        names = svc.models.names()
        use = f"/models/<name>/{legacy}" if legacy else "GET /models/<name> (or GET /models)"
        return json_answer(
            SEVERAL_MODELS.status,
            {
                "error": f"{len(names)} models are served here: use {use} with one of {', '.join(names)}",
                "models": names,
            },
        )
    if path == "/model" and method == "GET":
        if svc is not None and len(svc.models) == 1:
            return json_answer(200, svc.models.slot(svc.models.names()[0]).info)
        return json_answer(NO_MODEL.status, {"error": "no model loaded yet"})
    if path in JSON_ROUTES and method == "POST" and content_type != "application/json":
        return json_answer(
            NOT_JSON.status,
            {
                "error": f"wrong content type {content_type or '(none)'!r}: send Content-Type: application/json",
                "detail": [{"loc": ["header", "content-type"], "msg": "must be application/json"}],
            },
        )
    return None


class _Routes:
    """The service's :class:`serving.api.routes.ModelRoutes`, once ``__init__`` has made it."""

    prefixes = ModelRoutes.prefixes

    def __init__(self, holder: _Holder) -> None:
        self.holder = holder

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
        svc = self.holder.service
        if svc is None:
            return False
        return await svc.routes(app, scope, receive, send, method, path, content_type)


def _client_error(message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> BentoMLException:
    return BentoMLException(message, error_code=status)


def _refused(ctx: bentoml.Context, refusal: Refusal, message: str) -> dict[str, Any]:
    """A 4xx answer ``{"error": message}`` of a BentoML handler. Not raised: BentoML answers a raised
    client error as a one-item LIST ``[{"error": ...}]``, which is not the object its document declares."""
    ctx.response.status_code = refusal.status
    return {"error": message}


@bentoml.service(
    name="mloop-prediction",
    workers=1,
    threads=4,
    traffic={"timeout": 30},
    http={"host": _SETTINGS.serving_host, "port": _SETTINGS.serve_port},  # pyright: ignore[reportArgumentType]  # why: BentoML types host as pydantic's IPvAnyAddress, which its config validation parses from this text
    metrics={"enabled": True},
    logging={"access": {"enabled": False}},
)
class PredictionService:
    """Serves many registered models, each version swappable at runtime by ``/admin/rollout``."""

    model_ref = _INITIAL_REF  # a Bento built from this service embeds the first start model

    def __init__(self) -> None:
        if _SERVING.batching and _SERVING.batch_wait_bound:
            bound_batching_wait()  # a lone request is not held back after a burst (serving/api/batching.py)
        import onnxruntime  # noqa: F401 - imported before any load is measured: not a model's cost

        self._rollout_lock = threading.Lock()
        state = _SETTINGS.state
        recent = RecentIds(_SERVING.feedback_index_size)
        remote = remote_log(_SETTINGS)  # team mode: log parts and labels also go to S3
        logger = (
            PredictionLogger(
                state.predictions,
                flush_rows=_SERVING.predlog_flush_rows,
                flush_seconds=_SERVING.predlog_flush_seconds,
                on_dead_letter=_count_dead_letter,
                journal=_SERVING.predlog_journal,
                remote=remote,
            )
            if _SERVING.prediction_log
            else None
        )
        self.logger = logger
        self.answering = Answering(
            logger=logger,
            recent=recent,
            feedback_store=FeedbackStore(
                state.feedback,
                state.predictions,
                recent=recent,
                on_dead_letter=_count_dead_letter,
                remote=remote,
            ),
            count=_count_predictions,
        )
        if logger is not None:
            try:  # what a killed predecessor journaled but never wrote as parquet
                compact_journals(state.predictions, _count_dead_letter)
            except Exception:
                log.exception("could not compact the prediction journal at start")
        self.models: ModelSet[LiveModel] = ModelSet(
            _load_tag,
            budget_mb=_SERVING.serve_memory_mb,
            rss_mb=_rss_mb,
            estimate_mb=lambda live: live.size_mb,
            on_load=self._loaded,
            on_evict=self._evicted,
        )
        self.routes = ModelRoutes(
            self.models,
            self.answering,
            max_records=_SERVING.max_records,
            max_string_length=_SERVING.max_string_length,
            strict=_SERVING.serve_strict,
            max_body_bytes=_SETTINGS.max_body_bytes,
            batch_max_size=_SERVING.batch_max_size,
            complete_doc=self._complete_doc(),
        )
        self._start_models()
        _HOLDER.service = self
        # Everything loaded so far (libraries, the models, schemas) lives as long as the process: keep
        # it out of the collector, so each collection under load scans only the requests' objects.
        gc.collect()
        gc.freeze()

    @staticmethod
    def _complete_doc() -> functools.partial[None]:
        """What ``/docs.json`` adds to BentoML's document: the gate's answers, by the gate's own rules."""
        needs_token = functools.partial(
            token_needed,
            has_token=bool(_SETTINGS.bearer_token()),
            predict_requires_token=_SETTINGS.predict_requires_token,
        )
        return functools.partial(
            complete_document,
            needs_token=needs_token,
            loopback_routes=LOOPBACK_ROUTES,
            json_routes=JSON_ROUTES,
            legacy_routes=LEGACY_ROUTES,
        )

    # ------------------------------------------------------------------ the model set

    def _start_models(self) -> None:
        """Load the start tags, or what was rolled out since (per model, :func:`serving.api.rollout_record.startup_tags`),
        plus the models rolled out (added) since this service's start."""

        def in_store(tag: str) -> bool:
            try:
                _get_model(tag)
            except Exception:
                return False
            return True

        tags, warnings = startup_tags(_TAGS, read_all_rolled_out(_SETTINGS.state.root), in_store)
        for warning in warnings:
            log.warning(warning)
        start = {model_name_of(t): t for t in _TAGS}
        for tag in tags:
            initial = start.get(model_name_of(tag))
            if initial is not None:
                self._start_model(initial, tag)
                continue
            try:  # added by a rollout since this service started: the rollout checks again
                model = _get_model(tag)
                live, cost = self.models.measure(
                    lambda m=model: prepare_live_model(
                        str(m.tag), Path(m.path), None, threads=_SERVING.onnx_threads
                    )
                )
            except Exception as exc:
                log.warning("the added model %s is not restored at start: %s", tag, exc)
                continue
            self._put(live, cost)
            log.info("restored the added model %s", tag)

    def _start_model(self, initial: str, tag: str) -> None:
        """Load start tag ``initial``, then ``tag`` in its place when a rollout since says so and it
        passes the rollout checks (else ``initial``, with a warning)."""
        if initial == _TAG:
            first, cost = self.models.measure(
                lambda: load_live_model(
                    _TAG,
                    _INITIAL_DIR,
                    threads=_SERVING.onnx_threads,
                    contract=_CONTRACT,
                    meta=_META,
                )
            )
        else:
            first, cost = self.models.measure(lambda: _load_tag(initial))
        if tag == initial:
            self._put(first, cost)
            return
        model = _get_model(tag)
        try:
            live, cost = self.models.measure(
                lambda: prepare_live_model(
                    str(model.tag), Path(model.path), first, threads=_SERVING.onnx_threads
                )
            )
        except RolloutRefused as exc:
            log.warning(
                "the rolled-out model %s is refused at start (%s); serving the initial %s",
                tag,
                exc,
                initial,
            )
            self._put(first, cost)
            return
        log.info("restored the rolled-out model %s (started with %s)", tag, initial)
        self._put(live, cost)

    def _put(self, live: LiveModel, cost: float) -> Change:
        """Serve ``live`` (add or replace its model's entry), with its request schemas built first."""
        self.routes.schemas(live)
        change = self.models.put(live, cost)
        previous = change.previous
        if previous is not None and previous.get("bentoml_tag") != live.tag:
            _MODEL_INFO.labels(
                previous["model_name"], previous["model_version"], previous["backend"]
            ).set(0)
        _MODEL_INFO.labels(live.model_name, live.model_version, live.predictor.backend).set(1)
        log.info(
            "serving %s version %s (%s backend)",
            live.model_name,
            live.model_version,
            live.predictor.backend,
        )
        return change

    def _loaded(self, name: str, tag: str, cost: float) -> None:
        _LOADS.labels(name).inc()
        _MEMORY.labels(name).set(cost)
        _LOADED.set(len(self.models.loaded))

    def _evicted(self, name: str, tag: str) -> None:
        _EVICTIONS.labels(name).inc()
        _MEMORY.labels(name).set(0)
        _LOADED.set(len(self.models.loaded))

    def __is_ready__(self) -> bool:
        return _HOLDER.service is self

    @bentoml.on_shutdown
    def flush_prediction_log(self) -> None:
        """Write every queued prediction before the process exits (SIGTERM)."""
        if self.logger is not None:
            rows = self.logger.close()
            log.info("prediction log flushed on shutdown (%d rows)", rows)

    # ------------------------------------------------------------------ the one-model routes

    def _sole(self) -> LiveModel:
        live = self.models.sole()
        if live is None:  # several models: the gate answered 409 already; none: still starting
            raise _client_error("no model loaded yet", HTTPStatus(NO_MODEL.status))
        return live

    @bentoml.api(
        batchable=_SERVING.batching,
        max_batch_size=_SERVING.batch_max_size,
        max_latency_ms=_SERVING.batch_max_latency_ms,
    )
    async def predict(self, records: Records) -> Answers:  # pyright: ignore[reportInvalidTypeForm]  # why: built at import from the model's contract; BentoML reads the annotation at run time
        """Predict a list of records; one answer per record, in order (while one model is served;
        with several, use /models/<name>/predict)."""
        live = self._sole()
        try:
            answers = answer_batch(live, records, self.answering)
        except JournalError as exc:
            log.error("%s: answering 503", exc)
            raise _client_error(PREDICT_LOG_UNWRITABLE, HTTPStatus.SERVICE_UNAVAILABLE) from exc
        construct = Answer.model_construct
        return [construct(**a) for a in answers]

    @bentoml.api(route="/feedback")
    def feedback(self, labels: Labels, ctx: bentoml.Context) -> dict[str, Any]:  # pyright: ignore[reportInvalidTypeForm]  # why: built at import from the model's contract; BentoML reads the annotation at run time
        """Record ground-truth labels by prediction id (bearer token required; a label's type follows
        the contract's target). Only ids this model issued are accepted; the first label per id wins
        (an equal second one is a duplicate, a different one a recorded conflict). 404 when no id is
        known. With several models served, use /models/<name>/feedback."""
        live = self._sole()
        request = ctx.request
        source = {
            "via": "POST /feedback",
            "client": request.client.host if request.client else None,
            "user_agent": request.headers.get("user-agent"),
            "labels": len(labels),
        }
        status, answer = answer_feedback(live, labels, source, self.answering)
        if status != HTTPStatus.OK:
            ctx.response.status_code = status
        return answer

    @bentoml.api(route="/admin/rollout")
    def rollout(self, model_tag: str, ctx: bentoml.Context) -> dict[str, Any]:
        """Load ``model_tag`` from the BentoML store, smoke-test it, then switch its model to it
        atomically, or add the model when its name is not served yet (bearer token and a loopback
        client required: see :mod:`serving.api.access`). No other model is touched."""
        with self._rollout_lock:
            try:
                model = _get_model(model_tag)
                name = check_name(served_name(Path(model.path), str(model.tag)), "model")
            except Exception as exc:
                return _refused(
                    ctx, NOT_IN_STORE, f"model {model_tag!r} is not in the BentoML store: {exc}"
                )
            slot = self.models.slot(name) if name in self.models else None
            previous = slot.live if slot is not None else None
            try:
                live, cost = self.models.measure(
                    lambda: prepare_live_model(
                        str(model.tag),
                        Path(model.path),
                        previous,
                        threads=_SERVING.onnx_threads,
                        signature=slot.signature if slot is not None else None,
                    )
                )
            except RolloutRefused as exc:
                log.error("rollout refused: %s", exc)
                return _refused(ctx, ROLLOUT_REFUSED, str(exc))
            change = self._put(live, cost)
            try:
                write_rolled_out(
                    _SETTINGS.state.root, live.tag, initial_tag_for(model_name_of(live.tag), _TAGS)
                )
            except OSError:  # the switch happened; a respawned worker would serve the initial model
                log.exception("could not persist the rollout of %s", live.tag)
        return {"status": change.status, "previous": change.previous, "current": live.describe()}


# One layer in front of BentoML's routes, in this order: the Host allowlist and the body limit (a forged
# Host or an oversized body never reaches the access check or GET /model), then access, then ours
# (GET /model, 409, 415), then the per-model routes and /docs.json (serving/api/routes.py).
PredictionService.add_asgi_middleware(
    ServingGate,  # pyright: ignore[reportArgumentType]  # why: BentoML's AsgiMiddleware protocol types an instance as called with (app, **options); it takes the class, called so
    allowed_hosts=_SETTINGS.host_allowlist(),
    max_body_bytes=_SETTINGS.max_body_bytes,
    token=_SETTINGS.bearer_token,
    predict_requires_token=_SETTINGS.predict_requires_token,
    local=functools.partial(local_answer, _HOLDER),
    routes=_Routes(_HOLDER),
)

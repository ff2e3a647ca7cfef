"""The BentoML prediction service (``bentoml serve serving.service:PredictionService``).

This module is BentoML's entry point, not a library module: it reads its configuration when
imported, because BentoML builds the HTTP schema from the class at import time. The knobs are one
typed :class:`serving.config.ServingSettings` (``MLOOP_SERVE_MODEL`` (required), ``MLOOP_MAX_RECORDS``,
``MLOOP_MAX_STRING_LENGTH``, ``MLOOP_SERVE_STRICT``, ``MLOOP_PREDICTION_LOG``, ``MLOOP_BATCHING``,
``MLOOP_BATCH_MAX_SIZE``, ``MLOOP_BATCH_MAX_LATENCY_MS``, ``MLOOP_BATCH_WAIT_BOUND``,
``MLOOP_PREDLOG_FLUSH_ROWS``, ``MLOOP_PREDLOG_FLUSH_SECONDS``, ``MLOOP_PREDLOG_JOURNAL``,
``MLOOP_ONNX_THREADS``: see its field
descriptions) plus the platform :class:`mloop.core.settings.Settings` (``MLOOP_HOME``: predictions go
to ``<home>/predictions``, labels to ``<home>/feedback``; ``MLOOP_SERVE_HOST``/``MLOOP_HOST`` and
``MLOOP_SERVE_PORT``: where it binds; the security settings below). The model tag's contract
defines the request schema (see :mod:`serving.schema`), with the user's column names.

Security (issue 10), in the order a request meets it (outermost first):

All of 1-2 and the 415 of 3 are checked by ONE ASGI layer, :class:`serving.access.ServingGate`
(the behaviour of ``mloop.core.web.GuardMiddleware`` + :class:`serving.access.AccessMiddleware`, in
one pass over the headers).

1. **Host allowlist and body limit** (as :class:`mloop.core.web.GuardMiddleware`): a ``Host`` header
   not in ``Settings.host_allowlist()`` (loopback names, the bind addresses, ``MLOOP_ALLOWED_HOSTS``)
   gets 400 on EVERY route, health and metrics included (one rule, no exception to forget; a probe
   uses the service's own address); a body over ``MLOOP_MAX_BODY_BYTES`` gets 413.
2. **Access** (:mod:`serving.access`): the bearer token ``Settings().bearer_token()`` (the generated
   secret under MLOOP_HOME, or ``MLOOP_API_TOKEN``; none only with ``MLOOP_AUTH=false``) is required
   on every write (``/feedback``, ``/admin/rollout``) and on ``/predict`` unless
   ``MLOOP_PREDICT_REQUIRES_TOKEN=false``; ``/admin/rollout`` answers loopback clients only.
   Open without a token: the read-only ``GET`` routes: ``/healthz``, ``/livez``, ``/readyz``,
   ``/metrics``, ``/docs.json`` and the docs page, ``GET /model``.
3. **Request shape**: JSON only (415), the contract's schema (400), at most ``MLOOP_MAX_RECORDS``
   records or labels per request, ``MLOOP_SERVE_STRICT`` ranges and categories.
4. **Feedback you can trust** (:mod:`serving.feedback`): a label is recorded only for a prediction id
   this model issued (the recent-id index, then its prediction log); the first label per id wins,
   an equal second one is a duplicate, a different one a recorded conflict.

Endpoints: ``POST /predict`` ``{"records": [...]}`` (batchable: concurrent requests are merged by
BentoML's adaptive batcher into one vectorised ONNX call), ``GET /model``, ``POST /feedback``
``{"labels": [{"prediction_id", "label"}]}`` (answer: ``model_name``, ``recorded``, ``duplicates``,
``conflicts``, ``unknown``, ``set_aside``, ``rejected`` (at most 100 ``{"prediction_id", "reason"}``),
``rejected_truncated``; 404 with the same fields plus ``error`` when no id is known),
``POST /admin/rollout`` ``{"model_tag"}`` (loopback
only), BentoML's own ``/healthz`` ``/livez`` ``/readyz`` (ready only once a model is loaded) and
``/metrics`` (Prometheus; ``mloop_predictions_total`` and ``mloop_model_info`` carry the model
version as a label; ``mloop_predlog_dead_letter_total`` counts rows the prediction log or the
feedback store had to set aside, see :mod:`serving.predlog`).

Rollout design: the serving model is ONE attribute (``self.live``) holding a :class:`LiveModel`
(predictor, version, contract). A rollout loads the new tag from the BentoML store, smoke-tests
it, and only then assigns the attribute. A request reads the attribute once at its start, so each
request (and each batch) is answered entirely by one model, requests in flight finish on the old
model, and no request ever sees a half-loaded one. A failed smoke test leaves ``self.live`` alone.
A successful rollout is persisted (:mod:`serving.rolled_out`), so a worker BentoML respawns after a
crash serves the rolled-out model again, not the one the service was started with.

Write-ahead log: ``/predict`` journals its batch (:mod:`serving.journal`) before it answers; a
journal that cannot be written answers 503 (no answer without its log line). At start the worker
compacts the journal segments a killed predecessor left (:func:`serving.predlog.compact_journals`).
One worker process per service (``workers=1``): the swap is in-process, and on 2 cores one worker
with ONNX Runtime already runs near BentoML's own floor.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import threading
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import bentoml
from bentoml.exceptions import BentoMLException
from bentoml.validators import ContentType

from mloop.core.settings import Settings
from serving.access import LocalAnswer, ServingGate
from serving.batching import bound_batching_wait
from serving.config import ServingSettings
from serving.feedback import FeedbackStore, RecentIds
from serving.onnx_model import read_contract, read_meta
from serving.journal import JournalError
from serving.predlog import PredictionLogger, compact_journals, new_prediction_ids
from serving.rolled_out import model_name_of, read_rolled_out, startup_tag, write_rolled_out
from serving.runtime import (
    LiveModel,
    RolloutRefused,
    answer_schema,
    load_live_model,
    prepare_live_model,
)
from serving.schema import (
    build_feedback_model,
    build_record_model,
    feedback_annotation,
    records_annotation,
)

log = logging.getLogger("mloop.serving")

_SERVING = ServingSettings()
_TAG = _SERVING.serve_model.strip()
if not _TAG:
    raise RuntimeError("MLOOP_SERVE_MODEL is not set: give the BentoML model tag to serve (e.g. loans:v1)")
_SETTINGS = Settings()

_INITIAL_REF = bentoml.models.BentoModel(_TAG)
_INITIAL_DIR = Path(_INITIAL_REF.stored.path)
_CONTRACT, _META = read_contract(_INITIAL_DIR), read_meta(_INITIAL_DIR)  # read once: __init__ reuses them
Record = build_record_model(_CONTRACT, max_string_length=_SERVING.max_string_length, strict=_SERVING.serve_strict)
Records = records_annotation(Record, _SERVING.max_records)
Labels = feedback_annotation(build_feedback_model(_CONTRACT, _SERVING.max_string_length), _SERVING.max_records)
Answer = answer_schema(_CONTRACT, _META)  # a rollout keeps it: the answer schema is part of the signature
# The explicit content type matters for speed: without it BentoML derives the media type of a list
# output from its JSON schema, regenerated on every response (~1 ms here, measured with cProfile).
Answers = Annotated[list[Answer], ContentType("application/json")]  # type: ignore[valid-type]

_PREDICTIONS = bentoml.metrics.Counter(
    name="mloop_predictions",
    documentation="Records answered by /predict",
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


def _count_dead_letter(kind: str, model_name: str, rows: int, reason: str) -> None:
    _DEAD_LETTER.labels(model_name, kind).inc(rows)


def _json(status: int, body: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    data = json.dumps(body, default=str).encode()
    return status, [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())], data


class _Holder:
    """Lets the ASGI middleware reach the service instance (set in ``__init__``)."""

    service: PredictionService | None = None


_HOLDER = _Holder()


JSON_ROUTES = ("/predict", "/feedback", "/admin/rollout")


def local_answer(holder: _Holder, method: str, path: str, content_type: str) -> LocalAnswer | None:
    """The service's own answers before BentoML's routes (given by :class:`serving.access.ServingGate`
    after the Host, body and access checks): ``GET /model`` (what is served), and 415 for a POST
    route whose body is not JSON (BentoML would otherwise parse any content type as JSON; a client
    sending form data or text deserves a clear "wrong content type" answer). None: on to the routes."""
    if path == "/model" and method == "GET":
        svc = holder.service
        if svc is not None and svc.live is not None:
            return _json(200, svc.live.describe())
        return _json(503, {"error": "no model loaded yet"})
    if path in JSON_ROUTES and method == "POST" and content_type != "application/json":
        return _json(
            415,
            {
                "error": f"wrong content type {content_type or '(none)'!r}: send Content-Type: application/json",
                "detail": [{"loc": ["header", "content-type"], "msg": "must be application/json"}],
            },
        )
    return None


def _client_error(message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> BentoMLException:
    return BentoMLException(message, error_code=status)


@bentoml.service(
    name="mloop-prediction",
    workers=1,
    threads=4,
    traffic={"timeout": 30},
    http={"host": _SETTINGS.serving_host, "port": _SETTINGS.serve_port},
    metrics={"enabled": True},
    logging={"access": {"enabled": False}},
)
class PredictionService:
    """Serves one registered model version (swappable at runtime by ``/admin/rollout``)."""

    model_ref = _INITIAL_REF  # a Bento built from this service embeds the initial model

    def __init__(self) -> None:
        if _SERVING.batching and _SERVING.batch_wait_bound:
            bound_batching_wait()  # a lone request is not held back after a burst (serving/batching.py)
        self.live: LiveModel | None = None
        self._rollout_lock = threading.Lock()
        state = _SETTINGS.state
        self.recent_ids = RecentIds(_SERVING.feedback_index_size)
        self.feedback_store = FeedbackStore(
            state.feedback, state.predictions, recent=self.recent_ids, on_dead_letter=_count_dead_letter
        )
        self.logger = (
            PredictionLogger(
                state.predictions,
                flush_rows=_SERVING.predlog_flush_rows,
                flush_seconds=_SERVING.predlog_flush_seconds,
                on_dead_letter=_count_dead_letter,
                journal=_SERVING.predlog_journal,
            )
            if _SERVING.prediction_log
            else None
        )
        if self.logger is not None:
            try:  # what a killed predecessor journaled but never wrote as parquet
                compact_journals(state.predictions, _count_dead_letter)
            except Exception:  # noqa: BLE001 - the readers compact too: serving must start
                log.exception("could not compact the prediction journal at start")
        initial = load_live_model(_TAG, _INITIAL_DIR, threads=_SERVING.onnx_threads, contract=_CONTRACT, meta=_META)
        self._set_live(self._restore_rollout(initial))
        _HOLDER.service = self
        # Everything loaded so far (libraries, the model, schemas) lives as long as the process: keep
        # it out of the collector, so each collection under load scans only the requests' objects.
        gc.collect()
        gc.freeze()

    def _restore_rollout(self, initial: LiveModel) -> LiveModel:
        """The model rolled out before this worker (re)started, when :func:`serving.rolled_out.startup_tag`
        says so and it passes the rollout checks; else ``initial`` (with a warning)."""

        def in_store(tag: str) -> bool:
            try:
                bentoml.models.get(tag)
            except Exception:  # noqa: BLE001 - NotFound or an unreadable entry: not servable
                return False
            return True

        tag, warning = startup_tag(_TAG, read_rolled_out(_SETTINGS.state.root, model_name_of(_TAG)), in_store)
        if warning:
            log.warning(warning)
        if tag == _TAG:
            return initial
        model = bentoml.models.get(tag)
        try:
            live = prepare_live_model(str(model.tag), Path(model.path), initial, threads=_SERVING.onnx_threads)
        except RolloutRefused as exc:
            log.warning("the rolled-out model %s is refused at start (%s); serving the initial %s", tag, exc, _TAG)
            return initial
        log.info("restored the rolled-out model %s (started with %s)", tag, _TAG)
        return live

    def _set_live(self, live: LiveModel) -> None:
        old = self.live
        self.live = live  # the atomic switch: one reference assignment
        if old is not None:
            _MODEL_INFO.labels(old.model_name, old.model_version, old.predictor.backend).set(0)
        _MODEL_INFO.labels(live.model_name, live.model_version, live.predictor.backend).set(1)
        log.info("serving %s version %s (%s backend)", live.model_name, live.model_version, live.predictor.backend)

    def __is_ready__(self) -> bool:
        return self.live is not None

    @bentoml.on_shutdown
    def flush_prediction_log(self) -> None:
        """Write every queued prediction before the process exits (SIGTERM)."""
        if self.logger is not None:
            rows = self.logger.close()
            log.info("prediction log flushed on shutdown (%d rows)", rows)

    @bentoml.api(
        batchable=_SERVING.batching,
        max_batch_size=_SERVING.batch_max_size,
        max_latency_ms=_SERVING.batch_max_latency_ms,
    )
    async def predict(self, records: Records) -> Answers:  # type: ignore[valid-type]
        """Predict a list of records; one answer per record, in order."""
        live = self.live
        if live is None:
            raise _client_error("no model loaded yet", HTTPStatus.SERVICE_UNAVAILABLE)
        columns = {name: [getattr(r, key) for r in records] for name, key in live.keys.items()}
        out = live.predictor.predict(columns)
        n = len(out.predictions)
        ids = new_prediction_ids(n)
        self.recent_ids.add(live.model_name, ids)  # feedback for them is accepted before the log is written
        values = out.probabilities if out.probabilities is not None else out.scores
        if self.logger is not None:
            try:  # write-ahead: journaled before the answer leaves
                self.logger.log(
                    ids=ids,
                    model_name=live.model_name,
                    model_version=live.model_version,
                    features=columns,
                    predictions=out.predictions,
                    values=values,
                    value_name=live.value_name,
                )
            except JournalError as exc:
                log.error("%s: answering 503", exc)
                raise _client_error("the prediction log cannot be written; try again", HTTPStatus.SERVICE_UNAVAILABLE) from exc
        _PREDICTIONS.labels(live.model_name, live.model_version).inc(n)
        key = live.value_name
        name, version = live.model_name, live.model_version
        extra = [{key: v} for v in (values if values is not None else [None] * n)]
        if live.class_labels is not None:  # multiclass: every class's probability too
            for fields, row in zip(extra, out.class_probabilities or (), strict=True):
                fields["probabilities"] = dict(zip(live.class_labels, row, strict=True))
        return [
            Answer.model_construct(prediction=p, model_name=name, model_version=version, prediction_id=i, **fields)
            for p, i, fields in zip(out.predictions, ids, extra, strict=True)
        ]

    @bentoml.api(route="/feedback")
    def feedback(self, labels: Labels, ctx: bentoml.Context) -> dict[str, Any]:  # type: ignore[valid-type]
        """Record ground-truth labels by prediction id (bearer token required; a label's type follows
        the contract's target). Only ids this model issued are accepted; the first label per id wins
        (an equal second one is a duplicate, a different one a recorded conflict). 404 when no id is
        known."""
        live = self.live
        if live is None:
            raise _client_error("no model loaded yet", HTTPStatus.SERVICE_UNAVAILABLE)
        request = ctx.request
        source = {
            "via": "POST /feedback",
            "client": request.client.host if request.client else None,
            "user_agent": request.headers.get("user-agent"),
            "labels": len(labels),
            "model_version": live.model_version,
        }
        result = self.feedback_store.record(
            live.model_name, [(item.prediction_id, item.label) for item in labels], source=source
        )
        answer = result.answer()
        if result.unknown == len(labels):
            ctx.response.status_code = HTTPStatus.NOT_FOUND
            answer["error"] = (
                f"none of the {len(labels)} prediction ids is known to model {live.model_name!r}: labels are "
                "accepted only for predictions this model answered (prediction_id from /predict)"
            )
        return answer

    @bentoml.api(route="/admin/rollout")
    def rollout(self, model_tag: str) -> dict[str, Any]:
        """Load ``model_tag`` from the BentoML store, smoke-test it, then switch to it atomically
        (bearer token and a loopback client required: see :mod:`serving.access`)."""
        with self._rollout_lock:
            previous = self.live
            try:
                model = bentoml.models.get(model_tag)
            except Exception as exc:  # noqa: BLE001 - unknown tag is the caller's mistake
                raise _client_error(f"model {model_tag!r} is not in the BentoML store: {exc}", HTTPStatus.NOT_FOUND) from exc
            try:
                live = prepare_live_model(str(model.tag), Path(model.path), previous, threads=_SERVING.onnx_threads)
            except RolloutRefused as exc:
                log.error("rollout refused: %s", exc)
                raise _client_error(str(exc), HTTPStatus.CONFLICT) from exc
            self._set_live(live)
            try:
                write_rolled_out(_SETTINGS.state.root, live.tag, _TAG)
            except OSError:  # the switch happened; a respawned worker would serve the initial model
                log.exception("could not persist the rollout of %s", live.tag)
        return {
            "status": "switched",
            "previous": previous.describe() if previous else None,
            "current": live.describe(),
        }


# One layer in front of BentoML's routes, in this order: the Host allowlist and the body limit (a forged
# Host or an oversized body never reaches the access check or GET /model), then access, then ours.
PredictionService.add_asgi_middleware(
    ServingGate,
    allowed_hosts=_SETTINGS.host_allowlist(),
    max_body_bytes=_SETTINGS.max_body_bytes,
    token=_SETTINGS.bearer_token,
    predict_requires_token=_SETTINGS.predict_requires_token,
    local=functools.partial(local_answer, _HOLDER),
)

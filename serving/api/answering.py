"""What answering a batch of records or labels means, ONE function each for every route that does it.

``/predict`` (BentoML's typed route, one model served) and ``/models/<name>/predict`` (the ASGI
route of :mod:`serving.api.routes`, any number of models) both call :func:`answer_batch`: predict, new
prediction ids, remember them for feedback, journal the batch (write-ahead: raises
:class:`serving.log.journal.JournalError` when it cannot be written, and then no answer may leave),
count it, and build one answer per record. ``/feedback`` and ``/models/<name>/feedback`` both call
:func:`answer_feedback`. No BentoML import: testable on its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from serving.api.runtime import LiveModel
from serving.log.feedback import FeedbackStore, RecentIds
from serving.log.predictions import PredictionLogger, new_prediction_ids

PREDICT_LOG_UNWRITABLE = "the prediction log cannot be written; try again"


@dataclass(frozen=True)
class Answering:
    """The service's shared state a batch is answered with: the prediction log (None when off), the
    recent-id index of :mod:`serving.log.feedback`, the feedback store and a counter hook
    ``(model_name, model_version, records)``."""

    logger: PredictionLogger | None
    recent: RecentIds
    feedback_store: FeedbackStore
    count: Callable[[str, str, int], None]


def answer_batch(
    live: LiveModel, records: Sequence[Any], answering: Answering
) -> list[dict[str, Any]]:
    """Answer ``records`` (validated request records: one attribute per feature, named by
    ``live.keys``) with ``live``: one answer dict per record, in order (fields of ``live.answer``).
    Raises JournalError (answer 503)."""
    columns = {column: [getattr(r, key) for r in records] for column, key in live.keys.items()}
    out = live.predictor.predict(columns)
    n = len(out.predictions)
    ids = new_prediction_ids(n)
    answering.recent.add(
        live.model_name, ids
    )  # feedback for them is accepted before the log is written
    values = out.probabilities if out.probabilities is not None else out.scores
    if answering.logger is not None:  # write-ahead: journaled before the answer leaves
        answering.logger.log(
            ids=ids,
            model_name=live.model_name,
            model_version=live.model_version,
            features=columns,
            predictions=out.predictions,
            values=values,
            value_name=live.value_name,
        )
    answering.count(live.model_name, live.model_version, n)
    key = live.value_name
    name, version = live.model_name, live.model_version
    predictions = out.predictions
    if values is not None and not all(map(math.isfinite, values)):
        # JSON has no Infinity or NaN (a float32 model overflows on an input far outside its
        # training data): such a value is answered null, as the answer schema declares
        values = [v if math.isfinite(v) else None for v in values]
        if out.probabilities is None:  # a regression: the prediction is the score
            predictions = values
    answers = [
        {"prediction": p, key: v, "model_name": name, "model_version": version, "prediction_id": i}
        for p, v, i in zip(
            predictions, values if values is not None else [None] * n, ids, strict=True
        )
    ]
    if live.class_labels is not None:  # multiclass: every class's probability too
        for answer, row in zip(answers, out.class_probabilities or (), strict=True):
            answer["probabilities"] = dict(zip(live.class_labels, row, strict=True))
    return answers


def answer_feedback(
    live: LiveModel, labels: Sequence[Any], source: dict[str, Any], answering: Answering
) -> tuple[int, dict[str, Any]]:
    """Record ``labels`` (validated feedback items: ``prediction_id``, ``label``) for ``live``'s model
    under the trust rule of :mod:`serving.log.feedback`: (HTTP status, answer); 404 with an ``error``
    when no id is known."""
    items = [(item.prediction_id, item.label) for item in labels]
    result = answering.feedback_store.record(
        live.model_name, items, source={**source, "model_version": live.model_version}
    )
    answer = result.answer()
    if result.unknown == len(items):
        answer["error"] = (
            f"none of the {len(items)} prediction ids is known to model {live.model_name!r}: labels are "
            "accepted only for predictions this model answered (prediction_id from /predict)"
        )
        return HTTPStatus.NOT_FOUND, answer
    return HTTPStatus.OK, answer

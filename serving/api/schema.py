"""Request and answer schemas of the prediction service, generated from a dataset contract.

The record model has one field per feature column of the contract (target and time column
excluded). Its JSON names are the user's column names, whatever they hold (spaces, dots, unicode,
keywords...): each field's Python name is :func:`serving.bundle.column_keys.column_keys`'s identifier and the
column name is its alias, so the request, the OpenAPI document and every error message use the
user's names. Rules:

- ``numeric`` -> finite float within float32's range (the ONNX model computes in float32), JSON
  integers accepted, strings and booleans refused;
- ``integer`` -> int within int64 (what the model and the prediction log hold): ``3`` and ``3.0``
  are accepted (pandas writes integer columns holding nulls as floats), ``3.5``, ``"3"`` and
  booleans are refused;
- ``categorical`` -> string of at most ``max_string_length`` characters (strict: a number is
  refused). Levels are *not* restricted to the contract's categories by default: the pipelines
  one-hot encode with ``handle_unknown="ignore"``, so an unseen level is valid input (it encodes as
  all zeros) and the drift monitor is what notices new levels. Refusing them would turn a data
  shift into an outage;
- ``boolean`` -> bool (strict);
- ``datetime`` -> ISO-8601 string;
- nullable columns accept ``null`` and may be omitted (default null); other columns are required
  and refuse ``null``;
- unknown fields are refused (``extra="forbid"``), so a typo in a field name is a 400, not a
  silently imputed value;
- ``strict=True`` (``MLOOP_SERVE_STRICT``) also refuses numbers outside the contract's
  ``[min, max]`` widened by ``range_tolerance``, and levels outside its category list.

Pure: no I/O. The models are built with ``pydantic.create_model`` once per contract.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal, TypedDict

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    create_model,
)

from mloop.core.contract import ColumnSpec, DatasetContract
from serving.api.config import MAX_RECORDS_DEFAULT, MAX_STRING_LENGTH_DEFAULT
from serving.bundle.column_keys import column_keys

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38  # numpy.finfo(numpy.float32).max


def _not_text(value: Any) -> Any:
    if isinstance(value, str | bool):
        raise ValueError("Input should be a valid integer (a JSON number, not text or a boolean)")
    return value


def _number(low: float = -FLOAT32_MAX, high: float = FLOAT32_MAX) -> Any:
    """A finite JSON number in ``[low, high]`` (integers accepted, text and booleans refused)."""
    return Annotated[
        float,
        Field(
            strict=True, allow_inf_nan=False, ge=max(low, -FLOAT32_MAX), le=min(high, FLOAT32_MAX)
        ),
    ]


def _integer(low: float = INT64_MIN, high: float = INT64_MAX) -> Any:
    """A whole number in ``[low, high]``: ``3.0`` accepted, ``3.5``, ``"3"`` and booleans refused.
    (The bounds come before the validator so the OpenAPI document shows them as minimum/maximum.)"""
    lo, hi = max(math.ceil(low), INT64_MIN), min(math.floor(high), INT64_MAX)
    return Annotated[int, Field(ge=lo, le=hi), BeforeValidator(_not_text)]


def _text(max_length: int) -> Any:
    return Annotated[StrictStr, Field(max_length=max_length)]


def _base_type(col: ColumnSpec, max_string_length: int, strict: bool) -> Any:
    """The value type of one feature column (bounds always; contract ranges/levels when strict)."""
    if col.kind in ("numeric", "integer"):
        make = _number if col.kind == "numeric" else _integer
        if strict and col.min is not None and col.max is not None:
            slack = col.range_tolerance * (col.max - col.min)
            return make(col.min - slack, col.max + slack)
        return make()
    if col.kind == "categorical":
        if strict and col.categories:
            return Literal[tuple(col.categories)]
        return _text(max_string_length)
    if col.kind == "boolean":
        return StrictBool
    return datetime


def _description(col: ColumnSpec, strict: bool) -> str:
    description = f"{col.kind} feature"
    if col.kind == "categorical" and col.categories:
        shown = ", ".join(col.categories[:20])
        description += f"; levels seen in training: {shown}" + (
            " ..." if len(col.categories) > 20 else ""
        )
        if not strict:
            description += " (other levels are accepted and encode as unknown)"
    return description


class _FieldNames(TypedDict, total=False):
    alias: str
    title: str


def _field(col: ColumnSpec, key: str, max_string_length: int, strict: bool) -> tuple[Any, Any]:
    base = _base_type(col, max_string_length, strict)
    description = _description(col, strict)
    names: _FieldNames = {"alias": col.name, "title": col.name} if key != col.name else {}
    if col.nullable:
        return (base | None, Field(default=None, description=description + "; nullable", **names))
    return (base, Field(..., description=description, **names))


def model_suffix(contract: DatasetContract) -> str:
    """A class-name friendly form of the dataset name."""
    return (
        "".join(part.capitalize() for part in contract.name.replace("-", "_").split("_") if part)
        or "Model"
    )


def record_keys(contract: DatasetContract) -> dict[str, str]:
    """Feature column name -> field name of the record model (see :mod:`serving.bundle.column_keys`)."""
    return column_keys([c.name for c in contract.feature_columns])


def build_record_model(
    contract: DatasetContract,
    *,
    max_string_length: int = MAX_STRING_LENGTH_DEFAULT,
    strict: bool = False,
) -> type[BaseModel]:
    """The pydantic model of one prediction record (one field per feature column, aliased to the
    user's column name when that is not an identifier)."""
    keys = record_keys(contract)
    fields: dict[str, Any] = {  # Any: create_model's field arguments are typed Any
        keys[col.name]: _field(col, keys[col.name], max_string_length, strict)
        for col in contract.feature_columns
    }
    return create_model(
        f"{model_suffix(contract)}Record",
        __config__=ConfigDict(extra="forbid", frozen=False, serialize_by_alias=True),
        __doc__=f"One record of dataset {contract.name!r}: its feature columns.",
        **fields,
    )


def records_annotation(
    record_model: type[BaseModel], max_records: int = MAX_RECORDS_DEFAULT
) -> Any:
    """The annotation of the ``records`` parameter: a non-empty list of at most ``max_records``."""
    return Annotated[
        list[record_model],
        Field(min_length=1, max_length=max_records, description=f"1 to {max_records} records."),
    ]


def build_request_model(
    contract: DatasetContract,
    max_records: int = MAX_RECORDS_DEFAULT,
    *,
    max_string_length: int = MAX_STRING_LENGTH_DEFAULT,
    strict: bool = False,
) -> type[BaseModel]:
    """The whole request body ``{"records": [...]}`` (used by clients and tests; the service
    declares the same ``records`` parameter)."""
    record = build_record_model(contract, max_string_length=max_string_length, strict=strict)
    return create_model(
        f"{model_suffix(contract)}PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        records=(records_annotation(record, max_records), Field(...)),
    )


NOT_FINITE = (
    "null when the model's output is not a finite number: an input far outside the training data"
)


class ClassificationAnswer(BaseModel):
    """One answer of ``/predict`` for a classifier (one per record, in request order)."""

    prediction: int | float | str | bool = Field(description="Predicted class.")
    probability: float | None = Field(
        description="Probability of the positive class (binary) or of the predicted class "
        f"({NOT_FINITE})."
    )
    model_name: str
    model_version: str
    prediction_id: str = Field(description="Id to send labels to /feedback and to trace lineage.")


class RegressionAnswer(BaseModel):
    """One answer of ``/predict`` for a regressor."""

    prediction: float | None = Field(description=f"Predicted value (same as score; {NOT_FINITE}).")
    score: float | None = Field(description=f"Regression output ({NOT_FINITE}).")
    model_name: str
    model_version: str
    prediction_id: str = Field(description="Id to send labels to /feedback and to trace lineage.")


class MulticlassAnswer(ClassificationAnswer):
    """One answer of ``/predict`` for a classifier with more than two classes."""

    probabilities: dict[str, float] = Field(
        description="Probability of every class, keyed by class label."
    )


def answer_model(task: str, n_classes: int = 2) -> type[BaseModel]:
    if task == "regression":
        return RegressionAnswer
    return MulticlassAnswer if n_classes > 2 else ClassificationAnswer


def label_type(
    contract: DatasetContract, max_string_length: int = MAX_STRING_LENGTH_DEFAULT
) -> Any:
    """The type a ground-truth label must have: the contract's target kind, with the same bounds as
    a feature of that kind (a label of another type is a 400, never a 500 in the feedback store)."""
    spec = contract.column(contract.target)
    return _base_type(spec, max_string_length, strict=False)


def build_feedback_model(
    contract: DatasetContract, max_string_length: int = MAX_STRING_LENGTH_DEFAULT
) -> type[BaseModel]:
    """One ``{"prediction_id", "label"}`` item of ``/feedback``, typed by the contract's target."""
    return create_model(
        f"{model_suffix(contract)}Feedback",
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"A ground-truth label ({contract.target!r}) for one earlier prediction.",
        prediction_id=(Annotated[StrictStr, Field(min_length=1, max_length=64)], Field(...)),
        label=(
            label_type(contract, max_string_length),
            Field(..., description=f"The true {contract.target!r}."),
        ),
    )


def feedback_annotation(item_model: type[BaseModel], max_items: int = MAX_RECORDS_DEFAULT) -> Any:
    """The annotation of ``/feedback``'s ``labels``: 1 to ``max_items`` items."""
    return Annotated[
        list[item_model],
        Field(min_length=1, max_length=max_items, description=f"1 to {max_items} labels."),
    ]


def schema_signature(contract: DatasetContract, answer: type[BaseModel]) -> list[tuple[str, str]]:
    """(name, kind) of each feature, then of the target, then the answer model: two models can share
    a running service's request, feedback and answer schemas iff equal."""
    target = contract.column(contract.target)
    return [
        *((c.name, c.kind) for c in contract.feature_columns),
        (f"target:{target.name}", target.kind),
        ("answer", answer.__name__),
    ]

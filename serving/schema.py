"""Request and answer schemas of the prediction service, generated from a dataset contract.

The record model has one field per feature column of the contract (target and time column
excluded) with these rules:

- ``numeric`` -> finite float (JSON integers accepted, strings and booleans refused);
- ``integer`` -> int: ``3`` and ``3.0`` are accepted (pandas writes integer columns holding nulls as
  floats), ``3.5``, ``"3"`` and booleans are refused;
- ``categorical`` -> string (strict: a number is refused). Levels are *not* restricted to the
  contract's categories: the pipelines one-hot encode with ``handle_unknown="ignore"``, so an
  unseen level is valid input (it encodes as all zeros) and the drift monitor is what notices
  new levels. Refusing them would turn a data shift into an outage.
- ``boolean`` -> bool (strict);
- ``datetime`` -> ISO-8601 string;
- nullable columns accept ``null`` and may be omitted (default null); other columns are required
  and refuse ``null``;
- unknown fields are refused (``extra="forbid"``), so a typo in a field name is a 400, not a
  silently imputed value.

Pure: no I/O. The models are built with ``pydantic.create_model`` once per contract.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    create_model,
)

from mloop.core.contract import ColumnSpec, DatasetContract

MAX_RECORDS_DEFAULT = 1000
MAX_STRING_LENGTH = 256

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def _not_text(value: Any) -> Any:
    if isinstance(value, str | bool):
        raise ValueError("Input should be a valid integer (a JSON number, not text or a boolean)")
    return value


IntegerValue = Annotated[int, BeforeValidator(_not_text)]  # lax int: 3.0 accepted, 3.5 refused
CategoryStr = Annotated[StrictStr, Field(max_length=MAX_STRING_LENGTH)]

_KIND_TYPES: dict[str, Any] = {
    "numeric": FiniteFloat,
    "integer": IntegerValue,
    "categorical": CategoryStr,
    "boolean": StrictBool,
    "datetime": datetime,
}


def _field(col: ColumnSpec) -> tuple[Any, Any]:
    base = _KIND_TYPES[col.kind]
    description = f"{col.kind} feature"
    if col.kind == "categorical" and col.categories:
        shown = ", ".join(col.categories[:20])
        description += f"; levels seen in training: {shown}" + (" ..." if len(col.categories) > 20 else "")
        description += " (other levels are accepted and encode as unknown)"
    if col.nullable:
        return (base | None, Field(default=None, description=description + "; nullable"))
    return (base, Field(..., description=description))


def model_suffix(contract: DatasetContract) -> str:
    """A class-name friendly form of the dataset name."""
    return "".join(part.capitalize() for part in contract.name.replace("-", "_").split("_") if part) or "Model"


def build_record_model(contract: DatasetContract) -> type[BaseModel]:
    """The pydantic model of one prediction record (one field per feature column)."""
    fields = {col.name: _field(col) for col in contract.feature_columns}
    return create_model(  # type: ignore[call-overload,no-any-return]
        f"{model_suffix(contract)}Record",
        __config__=ConfigDict(extra="forbid", frozen=False),
        __doc__=f"One record of dataset {contract.name!r}: its feature columns.",
        **fields,
    )


def records_annotation(record_model: type[BaseModel], max_records: int = MAX_RECORDS_DEFAULT) -> Any:
    """The annotation of the ``records`` parameter: a non-empty list of at most ``max_records``."""
    return Annotated[
        list[record_model],  # type: ignore[valid-type]
        Field(min_length=1, max_length=max_records, description=f"1 to {max_records} records."),
    ]


def build_request_model(contract: DatasetContract, max_records: int = MAX_RECORDS_DEFAULT) -> type[BaseModel]:
    """The whole request body ``{"records": [...]}`` (used by clients and tests; the service
    declares the same ``records`` parameter)."""
    record = build_record_model(contract)
    return create_model(  # type: ignore[call-overload,no-any-return]
        f"{model_suffix(contract)}PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        records=(records_annotation(record, max_records), Field(...)),
    )


class ClassificationAnswer(BaseModel):
    """One answer of ``/predict`` for a classifier (one per record, in request order)."""

    prediction: int | float | str | bool = Field(description="Predicted class.")
    probability: float = Field(description="Probability of the positive class (binary) or of the predicted class.")
    model_name: str
    model_version: str
    prediction_id: str = Field(description="Id to send labels to /feedback and to trace lineage.")


class RegressionAnswer(BaseModel):
    """One answer of ``/predict`` for a regressor."""

    prediction: float = Field(description="Predicted value (same as score).")
    score: float = Field(description="Regression output.")
    model_name: str
    model_version: str
    prediction_id: str = Field(description="Id to send labels to /feedback and to trace lineage.")


class MulticlassAnswer(ClassificationAnswer):
    """One answer of ``/predict`` for a classifier with more than two classes."""

    probabilities: dict[str, float] = Field(description="Probability of every class, keyed by class label.")


def answer_model(task: str, n_classes: int = 2) -> type[BaseModel]:
    if task == "regression":
        return RegressionAnswer
    return MulticlassAnswer if n_classes > 2 else ClassificationAnswer


class FeedbackItem(BaseModel):
    """A ground-truth label for one earlier prediction."""

    model_config = ConfigDict(extra="forbid")

    prediction_id: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    label: StrictInt | FiniteFloat | StrictStr | StrictBool


def feature_signature(contract: DatasetContract) -> list[tuple[str, str]]:
    """(name, kind) of each feature: two models can share a running service's schema iff equal."""
    return [(c.name, c.kind) for c in contract.feature_columns]

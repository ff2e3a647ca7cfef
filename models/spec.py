"""Typed model specifications: which estimator, with which hyperparameters.

A :class:`ModelSpec` is part of a training run's identity (the idempotence key hashes
:meth:`ModelSpec.key`), is logged as a run parameter so ``mloop reproduce`` can rebuild the exact
estimator, and is the type of the ``specs`` parameter of the train flow (the Prefect UI renders it
as a form).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from mloop.core.errors import UsageError

EstimatorName = Literal["logistic_regression", "linear", "hist_gradient_boosting", "random_forest"]

ESTIMATORS: tuple[EstimatorName, ...] = (
    "logistic_regression",
    "linear",
    "hist_gradient_boosting",
    "random_forest",
)


class ModelSpec(BaseModel):
    """One candidate model: an estimator family and its hyperparameters.

    ``logistic_regression`` and ``linear`` are the linear family (LogisticRegression for
    classification, Ridge for regression); the tree families map to their classifier or regressor.
    """

    estimator: EstimatorName = Field(
        default="logistic_regression",
        description="Estimator family: logistic_regression/linear, hist_gradient_boosting, random_forest.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description='Hyperparameters passed to the estimator (e.g. {"C": 0.5} or {"max_depth": 6}).',
    )

    def key(self) -> str:
        """Canonical JSON (sorted keys): equal specs give equal keys."""
        return json.dumps(
            {"estimator": self.estimator, "params": self.params}, sort_keys=True, default=str
        )

    def label(self) -> str:
        """Short human label, e.g. ``random_forest(max_depth=6)``."""
        inner = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.estimator}({inner})" if inner else self.estimator


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_spec(text: str) -> ModelSpec:
    """Parse the CLI form ``ESTIMATOR[:k=v,k=v]`` (values are JSON when they parse, else strings)."""
    name, _, rest = text.strip().partition(":")
    if name not in ESTIMATORS:
        raise UsageError(
            f"unknown estimator {name!r}",
            where=f"--model {text}",
            fix=f"use one of {', '.join(ESTIMATORS)}, e.g. random_forest:n_estimators=200,max_depth=8",
        )
    params: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(
                f"bad hyperparameter {item!r}", where=f"--model {text}", fix="write key=value pairs"
            )
        params[key.strip()] = _parse_value(value.strip())
    return ModelSpec(estimator=name, params=params)

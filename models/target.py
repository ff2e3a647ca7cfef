"""What kind of target a model predicts, its class order, and the gate metric that fits it. Pure.

``DatasetContract.task`` says classification or regression; whether a classifier is binary or
multiclass is read from the data: the number of classes in the training target (a fitted
pipeline's ``classes_``, sorted like ``numpy.unique``). Binary scores are the probability of
``classes_[1]`` (the larger label); multiclass scores are an (n, k) probability array whose columns
follow ``classes_``. Metric code works on integer class codes (0/1 for binary, 0..k-1 for
multiclass) made here, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

# The gate metric that fits a target when the user chose none: the contract's rule, defined once in core.
from mloop.core.contract.inference import suggested_gate_metric as default_gate_metric  # noqa: F401 - re-exported

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

TargetKind = Literal["binary", "multiclass", "regression"]


def target_kind(task: str, n_classes: int) -> TargetKind:
    """binary / multiclass for a classification task by its number of classes; regression otherwise."""
    if task != "classification":
        return "regression"
    return "multiclass" if n_classes > 2 else "binary"


def class_counts(y: Any) -> dict[Any, int]:
    """Rows per class, in class order (sorted like ``numpy.unique`` and sklearn's ``classes_``)."""
    import numpy as np

    levels, counts = np.unique(np.asarray(y), return_counts=True)
    return {
        level.item() if hasattr(level, "item") else level: int(c)
        for level, c in zip(levels, counts, strict=True)
    }


def infer_classes(y: Any, n_columns: int) -> np.ndarray:
    """The class order of ``n_columns`` score columns, read from the labels ``y`` (sorted levels).

    Only safe when ``y`` holds every class; raises instead of guessing when it does not.
    """
    import numpy as np

    levels = np.unique(np.asarray(y))
    if len(levels) != n_columns:
        raise ValueError(
            f"cannot tell which score column is which class: the labels have {len(levels)} levels "
            f"({levels.tolist()[:10]}) but the scores have {n_columns} columns; pass classes=pipeline.classes_"
        )
    return levels


def class_codes(y: Any, classes: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Integer codes of the labels ``y`` in ``classes`` order (0..k-1); raises on an unknown label."""
    import numpy as np
    import pandas as pd

    codes = pd.Index(list(classes)).get_indexer(pd.Index(np.asarray(y)))
    if (codes < 0).any():
        unknown = sorted(
            {str(v) for v, c in zip(np.asarray(y).tolist(), codes, strict=True) if c < 0}
        )
        raise ValueError(
            f"labels {unknown[:10]} are not among the model's classes {list(classes)[:20]}"
        )
    return codes.astype(np.int64)


def is_multiclass_scores(scores: Any) -> bool:
    """True for an (n, k) probability array (multiclass); binary scores and regression outputs are 1-D."""
    import numpy as np

    return bool(np.ndim(scores) == 2)

"""The fast inference path: a scikit-learn pipeline converted to ONNX and run by ONNX Runtime.

A single-row ``Pipeline.predict_proba`` costs ~2.6 ms of fixed overhead (pandas, validation,
one Python call per step); the same pipeline in ONNX Runtime costs ~0.03 ms. Conversion happens
once, at package time (:func:`convert_pipeline`), and is accepted only when the ONNX outputs match
sklearn's on the holdout to ``tolerance`` (1e-5; relative to a regression score's size:
:func:`outputs_agree`); otherwise the packaged model is the sklearn
pipeline itself (skops) and the reason is logged and stored in the model metadata.

Serving never builds a DataFrame on the ONNX path: records become one ``(n, 1)`` numpy array per
input column (:func:`columns_from_records`, :meth:`OnnxPredictor.predict`), vectorised over the
batch. Categorical missing values use the string marker :data:`MISSING`: skl2onnx cannot convert
a categorical ``SimpleImputer`` whose missing value is NaN, so the converted copy of the pipeline
imputes that marker instead (see STACK_NOTES).
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import numpy as np

from mloop.core.contract import DatasetContract
from serving.bundle.column_keys import column_keys

if TYPE_CHECKING:  # pragma: no cover
    from onnx import ModelProto

log = logging.getLogger(__name__)

MISSING = "__mloop_missing__"
ONNX_FILE = "model.onnx"
SKOPS_FILE = "model.skops"
CONTRACT_FILE = "contract.json"
META_FILE = "mloop.json"
TOLERANCE = 1e-5

Backend = Literal["onnx", "sklearn"]
InputKind = Literal["float", "string"]


def input_kinds(contract: DatasetContract) -> dict[str, InputKind]:
    """ONNX input type of each feature column: numbers as float32, everything else as strings."""
    return {
        c.name: ("float" if c.kind in ("numeric", "integer") else "string")
        for c in contract.feature_columns
    }


def columns_from_records(records: Sequence[Any], names: Sequence[str]) -> dict[str, list[Any]]:
    """Column lists from pydantic records (or plain dicts), in one pass per column."""
    dicts = [r if isinstance(r, dict) else r.__dict__ for r in records]
    return {name: [d.get(name) for d in dicts] for name in names}


def columns_from_frame(frame: Any, names: Sequence[str]) -> dict[str, list[Any]]:
    """Column lists from a DataFrame (NaN/NA become None), e.g. a holdout for verification."""
    out: dict[str, list[Any]] = {}
    for name in names:
        series = frame[name]
        values = series.astype(object).where(series.notna(), None).tolist()
        out[name] = values
    return out


def _string_value(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float) and math.isnan(value):
        return MISSING
    return value if isinstance(value, str) else str(value)


@dataclass
class NumericPrep:
    """Median imputation + standard scaling of the numeric columns, done in float64 numpy.

    Taken out of the ONNX graph on purpose: ONNX's Imputer/Scaler run in float32, and a tree model
    then sees values that differ from sklearn's (float64 scaling, then float32) in the last bit, which
    flips splits near a threshold (seen: 0.033 probability error for a RandomForest). Doing this step
    in float64 first makes the ONNX inputs bit-identical to what sklearn's trees compare.
    """

    columns: list[str]
    fill: list[float]
    mean: list[float]
    scale: list[float]

    def __post_init__(self) -> None:
        # (k, 1) arrays, built once: apply() runs on every request
        self._fill = np.asarray(self.fill, dtype=np.float64).reshape(-1, 1)
        self._mean = np.asarray(self.mean, dtype=np.float64).reshape(-1, 1)
        self._scale = np.asarray(self.scale, dtype=np.float64).reshape(-1, 1)

    def apply(self, columns: dict[str, list[Any]]) -> np.ndarray:
        """(k, n) float32 array of the prepared numeric columns (row j = column j, contiguous)."""
        x = np.array([columns[c] for c in self.columns], dtype=np.float64)  # None -> NaN
        if x.ndim == 1:  # no rows
            x = x.reshape(len(self.columns), 0)
        nan = np.isnan(x)
        if nan.any():
            x = np.where(nan, self._fill, x)
        # division, not a multiplication by the inverse: bit-identical to StandardScaler.transform
        return ((x - self._mean) / self._scale).astype(np.float32)


def onnx_feed(
    columns: dict[str, list[Any]],
    kinds: dict[str, InputKind],
    prep: NumericPrep | None = None,
    inputs: dict[str, str] | None = None,
) -> dict[str, np.ndarray]:
    """The ONNX Runtime input dict: one (n, 1) array per input (float32 or string).

    ``columns`` and ``kinds`` use the user's column names; ``inputs`` maps them to the graph's
    input names (:func:`serving.bundle.column_keys.column_keys`, as the request schema's field names; identity
    when None)."""
    feed: dict[str, np.ndarray] = {}
    done: set[str] = set()
    key = inputs.__getitem__ if inputs is not None else str
    if prep is not None and prep.columns:
        x = prep.apply(columns)
        for j, name in enumerate(prep.columns):
            feed[key(name)] = x[j].reshape(-1, 1)
        done = set(prep.columns)
    for name, kind in kinds.items():
        if name in done:
            continue
        col = columns[name]
        if kind == "float":
            # numpy turns None into NaN for float dtypes.
            feed[key(name)] = np.array(col, dtype=np.float32).reshape(-1, 1)
        else:
            feed[key(name)] = np.array([_string_value(v) for v in col], dtype=object).reshape(-1, 1)
    return feed


def sklearn_frame(columns: dict[str, list[Any]], kinds: dict[str, InputKind]) -> Any:
    """A DataFrame for the sklearn fallback path (numeric columns as float64, None -> NaN)."""
    import pandas as pd

    data: dict[str, Any] = {}
    for name, kind in kinds.items():
        col = columns[name]
        if kind == "float":
            data[name] = np.array(col, dtype=np.float64)
        else:  # same convention as models.pipeline.prepare_features: strings, missing as NaN
            data[name] = pd.Series(
                [np.nan if _string_value(v) == MISSING else _string_value(v) for v in col],
                dtype=object,
            )
    return pd.DataFrame(data)


@dataclass
class Outputs:
    """Model outputs for a batch: predictions and positive-class probabilities (or scores).

    Multiclass: ``probabilities`` is the predicted class's probability and ``class_probabilities``
    every class's, in ``classes`` order (the pipeline's ``classes_``).
    """

    predictions: list[Any]
    probabilities: list[float] | None = None
    scores: list[float] | None = None
    class_probabilities: list[list[float]] | None = None
    classes: list[Any] | None = None


def _class_outputs(
    labels: np.ndarray, proba: np.ndarray, classes: list[Any] | None = None
) -> Outputs:
    proba = np.asarray(proba, dtype=np.float64)
    positive = proba[:, 1] if proba.shape[1] == 2 else proba.max(axis=1)
    out = Outputs(predictions=np.asarray(labels).ravel().tolist(), probabilities=positive.tolist())
    if proba.shape[1] > 2:
        out.class_probabilities = proba.tolist()
        out.classes = classes
    return out


class Predictor(Protocol):
    """What the service needs from a loaded model."""

    backend: Backend
    task: str
    kinds: dict[str, InputKind]

    def predict(self, columns: dict[str, list[Any]]) -> Outputs: ...


class OnnxPredictor:
    """ONNX Runtime session built once; one intra-op thread (the 2-core box serves, logs and
    answers HTTP at the same time: more threads only add contention for tiny batches)."""

    backend: Backend = "onnx"

    def __init__(
        self,
        model: bytes | Path,
        kinds: dict[str, InputKind],
        task: str,
        prep: NumericPrep | None = None,
        threads: int = 1,
        inputs: dict[str, str] | None = None,
        classes: Sequence[Any] | None = None,
    ) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        graph_inputs = {i.name for i in self.session.get_inputs()}
        self.inputs = inputs if inputs is not None else {n: n for n in graph_inputs}
        self.kinds: dict[str, InputKind] = {n: kinds.get(n, "float") for n in self.inputs}
        unknown = graph_inputs - set(self.inputs.values())
        if unknown:
            raise ValueError(f"the ONNX graph has inputs no column feeds: {sorted(unknown)}")
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.task = task
        self.prep = prep
        self.classes = (
            None if classes is None else np.asarray(classes).tolist()
        )  # once, not per batch

    def predict(self, columns: dict[str, list[Any]]) -> Outputs:
        out = self.session.run(None, onnx_feed(columns, self.kinds, self.prep, self.inputs))
        if self.task == "regression":
            scores = np.asarray(out[0], dtype=np.float64).ravel().tolist()
            return Outputs(predictions=scores, scores=scores)
        # zipmap is off: labels and probabilities are arrays (onnxruntime types any output kind)
        return _class_outputs(cast(np.ndarray, out[0]), cast(np.ndarray, out[1]), self.classes)


class SklearnPredictor:
    """The fallback: the sklearn pipeline itself (used when ONNX conversion fails or disagrees)."""

    backend: Backend = "sklearn"

    def __init__(self, pipeline: Any, kinds: dict[str, InputKind], task: str) -> None:
        self.pipeline = pipeline
        self.kinds = kinds
        self.task = task

    def predict(self, columns: dict[str, list[Any]]) -> Outputs:
        frame = sklearn_frame(columns, self.kinds)
        if self.task == "regression":
            scores = np.asarray(self.pipeline.predict(frame), dtype=np.float64).tolist()
            return Outputs(predictions=scores, scores=scores)
        proba = self.pipeline.predict_proba(frame)
        classes = np.asarray(self.pipeline.classes_)
        return _class_outputs(classes[np.argmax(proba, axis=1)], proba, classes.tolist())


# ----------------------------------------------------------------------------- conversion


@dataclass
class Conversion:
    """Result of trying to convert a pipeline to ONNX."""

    backend: Backend
    onnx_model: bytes | None = None
    prep: NumericPrep | None = None
    reason: str | None = None  # why the sklearn fallback was used
    max_abs_diff: float | None = None
    rows_checked: int = 0
    inputs: dict[str, str] | None = None  # column name -> ONNX input name
    extra: dict[str, Any] = field(default_factory=dict)


def _patch_categorical_imputers(pipeline: Any) -> Any:
    """A copy of ``pipeline`` whose string-column SimpleImputers treat :data:`MISSING` as missing.

    Only the ``missing_values`` marker changes; the fitted statistics are kept, so the copy imputes
    exactly what the original imputes for NaN/None (the serving path sends MISSING for None).
    """
    from sklearn.impute import SimpleImputer

    patched = copy.deepcopy(pipeline)

    def visit(obj: Any, depth: int = 0) -> None:
        if depth > 8:
            return
        if isinstance(obj, SimpleImputer):
            stats = getattr(obj, "statistics_", None)
            if stats is not None and np.asarray(stats).dtype == object:
                mv = obj.missing_values
                if mv is None or (isinstance(mv, float) and math.isnan(mv)):
                    obj.missing_values = MISSING  # pyright: ignore[reportAttributeAccessIssue]  # why: sklearn is untyped; pyright types missing_values from its default np.nan; any placeholder is valid
                    obj.statistics_ = np.array([_string_value(s) for s in stats], dtype=object)
            return
        for attr in ("steps", "transformers_"):
            for item in getattr(obj, attr, None) or []:
                visit(item[1], depth + 1)

    visit(patched)
    return patched


def _extract_numeric_prep(patched: Any, kinds: dict[str, InputKind]) -> NumericPrep | None:
    """Replace (in place) the numeric ``SimpleImputer -> StandardScaler`` branch of the
    ColumnTransformer by ``passthrough`` and return the same computation as a :class:`NumericPrep`.
    None when the pipeline does not have that shape (then the branch stays in the graph)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pre = patched.steps[0][1] if isinstance(patched, Pipeline) else None
    if not isinstance(pre, ColumnTransformer):
        return None
    for i, (name, trans, cols) in enumerate(pre.transformers_):
        if not isinstance(trans, Pipeline) or not isinstance(cols, list | tuple) or not cols:
            continue
        if not all(isinstance(c, str) and kinds.get(c) == "float" for c in cols):
            continue
        steps = [s for _, s in trans.steps]
        if (
            len(steps) != 2
            or not isinstance(steps[0], SimpleImputer)
            or not isinstance(steps[1], StandardScaler)
        ):
            continue
        imp, sc = steps
        if not (
            imp.missing_values is None
            or (isinstance(imp.missing_values, float) and math.isnan(imp.missing_values))
        ):
            continue
        if getattr(imp, "indicator_", None) is not None or len(imp.statistics_) != len(cols):
            continue
        k = len(cols)
        mean = sc.mean_ if sc.with_mean and sc.mean_ is not None else np.zeros(k)
        scale = sc.scale_ if sc.with_std and sc.scale_ is not None else np.ones(k)
        pre.transformers_[i] = (name, "passthrough", cols)
        return NumericPrep(
            columns=list(cols),
            fill=[float(v) for v in imp.statistics_],
            mean=[float(v) for v in mean],
            scale=[float(v) for v in scale],
        )
    return None


def _patch_skl2onnx_hist_gradient_boosting() -> None:
    """skl2onnx 1.20 passes numpy uint32 node ids and Python bools to ``onnx.helper.make_node``
    for HistGradientBoosting trees, which onnx 1.23 refuses ("Expected an int, got a boolean").
    Cast them to int (idempotent; affects only the conversion in this process)."""
    import skl2onnx.common.tree_ensemble as te

    if getattr(te.add_node, "_mloop_patched", False):
        return
    original = te.add_node

    def add_node(
        attr_pairs,
        is_classifier,
        tree_id,
        tree_weight,
        node_id,
        feat_id,
        mode,
        threshold,
        left,
        right,
        *args,
        **kwargs,
    ):
        if "nodes_missing_value_tracks_true" in kwargs:
            kwargs["nodes_missing_value_tracks_true"] = int(
                kwargs["nodes_missing_value_tracks_true"]
            )
        return original(
            attr_pairs,
            is_classifier,
            int(tree_id),
            tree_weight,
            int(node_id),
            int(feat_id),
            mode,
            threshold,
            int(left),
            int(right),
            *args,
            **kwargs,
        )

    add_node._mloop_patched = True  # pyright: ignore[reportFunctionMemberAccess]  # why: our mark on the patched function: patched once per process
    te.add_node = add_node


def _initial_types(kinds: dict[str, InputKind], inputs: dict[str, str]) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    return [
        (inputs[n], FloatTensorType([None, 1]) if k == "float" else StringTensorType([None, 1]))
        for n, k in kinds.items()
    ]


def _rename_columns(patched: Any, inputs: dict[str, str]) -> None:
    """Make the (copied) pipeline's ColumnTransformer select columns by ONNX input name, so the
    converter matches them to the inputs declared with those names (in place)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    pre = patched.steps[0][1] if isinstance(patched, Pipeline) else patched
    if not isinstance(pre, ColumnTransformer):
        return
    for i, (name, trans, cols) in enumerate(pre.transformers_):
        if isinstance(cols, str):
            pre.transformers_[i] = (name, trans, inputs.get(cols, cols))
        elif isinstance(cols, list | tuple) and all(isinstance(c, str) for c in cols):
            pre.transformers_[i] = (name, trans, [inputs.get(c, c) for c in cols])
    if hasattr(pre, "feature_names_in_"):
        pre.feature_names_in_ = np.array(  # pyright: ignore[reportAttributeAccessIssue]  # why: sklearn is untyped: a fitted attribute its class does not declare
            [inputs.get(str(c), str(c)) for c in pre.feature_names_in_],  # pyright: ignore[reportAttributeAccessIssue]  # why: sklearn is untyped: a fitted attribute its class does not declare
            dtype=object,
        )


def convert_pipeline(
    pipeline: Any,
    contract: DatasetContract,
    holdout: Any,
    *,
    tolerance: float = TOLERANCE,
) -> Conversion:
    """Convert ``pipeline`` to ONNX and verify it against sklearn on ``holdout``.

    Returns an ONNX conversion when every probability (or score) agrees to ``tolerance``; otherwise a
    sklearn conversion with the reason (logged). Never raises: any failure to convert, load or
    verify the ONNX model means serving with sklearn.
    Runs sklearn with one OpenMP/BLAS thread: on a small shared box more threads only spin.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        try:
            return _convert_pipeline(pipeline, contract, holdout, tolerance)
        except Exception as exc:
            return _fallback(f"ONNX verification failed: {type(exc).__name__}: {str(exc)[:300]}")


def _fallback(reason: str, **extra: Any) -> Conversion:
    log.warning("%s; serving with the sklearn pipeline", reason)
    return Conversion(backend="sklearn", reason=reason, **extra)


def outputs_agree(want: np.ndarray, have: np.ndarray, task: str, tolerance: float) -> bool:
    """Whether ONNX outputs ``have`` match sklearn's ``want``. Probabilities to ``tolerance``; a
    regression score to ``tolerance`` relative to its size (the ONNX model computes in float32, whose
    rounding grows with the value: a weight of 190 kg is exact to about 1e-5 of itself, not to 1e-5). Pure."""
    error = np.abs(want - have)
    allowed = tolerance if task == "classification" else tolerance * np.maximum(1.0, np.abs(want))
    return bool(np.all(error <= allowed))


def _convert_pipeline(
    pipeline: Any, contract: DatasetContract, holdout: Any, tolerance: float
) -> Conversion:
    kinds = input_kinds(contract)
    names = list(kinds)
    # ONNX input names by the request schema's rule: skl2onnx would otherwise rewrite a name that
    # is not a C identifier behind the feed's back
    inputs = column_keys(names)
    try:
        from skl2onnx import convert_sklearn

        _patch_skl2onnx_hist_gradient_boosting()
        patched = _patch_categorical_imputers(pipeline)
        prep = _extract_numeric_prep(patched, kinds)
        _rename_columns(patched, inputs)
        final = patched.steps[-1][1] if hasattr(patched, "steps") else patched
        options = {id(final): {"zipmap": False}} if contract.task == "classification" else None
        onx = convert_sklearn(
            patched,
            initial_types=_initial_types(kinds, inputs),
            target_opset={"": 17, "ai.onnx.ml": 3},
            options=options,
        )
        # a model, not the (model, topology) pair some other options return
        onnx_bytes = cast("ModelProto", onx).SerializeToString()
        predictor = OnnxPredictor(onnx_bytes, kinds, contract.task, prep=prep, inputs=inputs)
    except Exception as exc:
        return _fallback(f"ONNX conversion failed: {type(exc).__name__}: {str(exc)[:300]}")

    columns = columns_from_frame(holdout, names)
    got = predictor.predict(columns)
    ref = SklearnPredictor(pipeline, kinds, contract.task).predict(columns)
    if contract.task == "regression":
        want = np.asarray(ref.scores, dtype=np.float64)
        have = np.asarray(got.scores, dtype=np.float64)
    else:
        want = np.asarray(ref.class_probabilities or ref.probabilities, dtype=np.float64)
        have = np.asarray(got.class_probabilities or got.probabilities, dtype=np.float64)
    diff = float(np.max(np.abs(want - have))) if len(want) else 0.0
    if not np.isfinite(diff) or not outputs_agree(want, have, contract.task, tolerance):
        scale = "" if contract.task == "classification" else " x max(1, |sklearn's score|)"
        return _fallback(
            f"ONNX outputs differ from sklearn by {diff:.3g} > {tolerance:g}{scale} on {len(want)} holdout rows",
            max_abs_diff=diff,
            rows_checked=len(want),
        )
    return Conversion(
        backend="onnx",
        onnx_model=onnx_bytes,
        prep=prep,
        max_abs_diff=diff,
        rows_checked=len(want),
        inputs=inputs,
    )


# ----------------------------------------------------------------------------- model folder


def expected_outputs(pipeline: Any, contract: DatasetContract, frame: Any) -> Outputs:
    """sklearn's outputs on ``frame``: stored with the model as the rollout smoke test's reference."""
    return SklearnPredictor(pipeline, input_kinds(contract), contract.task).predict(
        columns_from_frame(frame, list(input_kinds(contract)))
    )


def write_model_dir(
    dest: Path,
    *,
    pipeline: Any,
    contract: DatasetContract,
    conversion: Conversion,
    metadata: dict[str, Any],
    sample: Any,
) -> dict[str, Any]:
    """Write the serving artefacts into ``dest``: the model (ONNX, or skops when the fallback is
    used), ``contract.json``, and ``mloop.json`` (lineage metadata, the conversion result and
    sample records with sklearn's expected outputs for the smoke test). Returns the metadata."""
    dest.mkdir(parents=True, exist_ok=True)
    if conversion.backend == "onnx":
        assert conversion.onnx_model is not None
        (dest / ONNX_FILE).write_bytes(conversion.onnx_model)
    else:
        import skops.io as sio

        sio.dump(pipeline, dest / SKOPS_FILE)
    (dest / CONTRACT_FILE).write_text(contract.model_dump_json(indent=2))
    names = list(input_kinds(contract))
    sample_cols = columns_from_frame(sample[names], names)
    expected = expected_outputs(pipeline, contract, sample)
    meta = {
        **metadata,
        "task": contract.task,
        "backend": conversion.backend,
        "fallback_reason": conversion.reason,
        "onnx_max_abs_diff": conversion.max_abs_diff,
        "onnx_rows_checked": conversion.rows_checked,
        "input_kinds": input_kinds(contract),
        "onnx_inputs": conversion.inputs,
        "numeric_prep": (
            {k: getattr(conversion.prep, k) for k in ("columns", "fill", "mean", "scale")}
            if conversion.prep
            else None
        ),
        "sample_columns": sample_cols,
        **(
            {"classes": expected.classes} if expected.classes is not None else {}
        ),  # multiclass column order
        "expected": {
            "predictions": expected.predictions,
            "probabilities": expected.probabilities,
            "scores": expected.scores,
        },
    }
    (dest / META_FILE).write_text(json.dumps(meta, indent=1, default=_json_default))
    return meta


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def read_meta(model_dir: Path) -> dict[str, Any]:
    return json.loads((model_dir / META_FILE).read_text())


def read_contract(model_dir: Path) -> DatasetContract:
    return DatasetContract.model_validate_json((model_dir / CONTRACT_FILE).read_text())


def _load_skops(path: Path) -> Any:
    import skops.io as sio

    from models.pipeline import TRUSTED_TYPES

    # The same explicit allowlist as the registry: a type outside it is refused, never trusted.
    bad = sorted(set(sio.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))
    if bad:
        raise ValueError(f"refusing to load {path}: types outside the allowlist: {bad}")
    return sio.load(path, trusted=TRUSTED_TYPES)


def load_predictor(
    model_dir: Path, threads: int = 1, meta: dict[str, Any] | None = None
) -> Predictor:
    """The predictor stored in ``model_dir`` (ONNX when present, else the skops pipeline);
    ``meta``: its :func:`read_meta` when the caller has it already."""
    meta = read_meta(model_dir) if meta is None else meta
    kinds: dict[str, InputKind] = meta["input_kinds"]
    if (model_dir / ONNX_FILE).exists():
        prep = NumericPrep(**meta["numeric_prep"]) if meta.get("numeric_prep") else None
        inputs = meta.get(
            "onnx_inputs"
        )  # absent in models packaged before names were mapped: identity
        return OnnxPredictor(
            model_dir / ONNX_FILE,
            kinds,
            meta["task"],
            prep=prep,
            threads=threads,
            inputs=inputs,
            classes=meta.get("classes"),
        )
    return SklearnPredictor(_load_skops(model_dir / SKOPS_FILE), kinds, meta["task"])


def smoke_test(predictor: Predictor, meta: dict[str, Any], *, tolerance: float = 1e-4) -> list[str]:
    """Problems found running ``predictor`` on the stored sample records (empty list = healthy).

    Checks: it runs, answers one output per record, probabilities are finite and within [0, 1],
    and outputs agree with sklearn's stored expected outputs to ``tolerance``.
    """
    columns = meta.get("sample_columns") or {}
    expected = meta.get("expected") or {}
    n = len(next(iter(columns.values()), []))
    if n == 0:
        return ["the model has no stored sample records to smoke-test"]
    try:
        out = predictor.predict(columns)
    except Exception as exc:
        return [f"prediction on the sample records failed: {type(exc).__name__}: {exc}"]
    problems: list[str] = []
    if len(out.predictions) != n:
        problems.append(f"{len(out.predictions)} answers for {n} records")
    values = out.probabilities if out.probabilities is not None else out.scores
    want = (
        expected.get("probabilities") if out.probabilities is not None else expected.get("scores")
    )
    arr = np.asarray(values if values is not None else [], dtype=np.float64)
    if arr.size != n or not np.all(np.isfinite(arr)):
        problems.append("outputs are not all finite numbers")
    elif out.probabilities is not None and (arr.min() < 0 or arr.max() > 1):
        problems.append(f"probabilities outside [0, 1] (min {arr.min():.3g}, max {arr.max():.3g})")
    if want is not None and arr.size == n and np.all(np.isfinite(arr)):
        stored = np.asarray(want, dtype=np.float64)
        task = "classification" if out.probabilities is not None else "regression"
        if stored.shape != arr.shape or not outputs_agree(stored, arr, task, tolerance):
            diff = (
                float(np.max(np.abs(arr - stored))) if stored.shape == arr.shape else float("nan")
            )
            problems.append(
                f"outputs differ from the stored sklearn outputs by {diff:.3g} > {tolerance:g}"
            )
    return problems

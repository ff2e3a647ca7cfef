"""ONNX conversion: agreement with sklearn on the holdout, fallback, smoke test."""

from __future__ import annotations

from typing import cast

import numpy as np
import pytest

from serving.bundle.onnx_model import (
    MISSING,
    OnnxPredictor,
    Predictor,
    SklearnPredictor,
    columns_from_frame,
    convert_pipeline,
    input_kinds,
    outputs_agree,
    smoke_test,
)
from tests.serving.helpers import fit, make_contract


@pytest.mark.parametrize("kind", ["logreg", "rf", "hgb"])
def test_onnx_matches_sklearn_probabilities_on_the_holdout(kind: str) -> None:
    contract = make_contract()
    pipe, _, hold = fit(kind)
    conv = convert_pipeline(pipe, contract, hold)
    assert conv.backend == "onnx" and conv.onnx_model is not None, conv.reason
    assert conv.rows_checked == len(hold) == 400
    # independent re-check, through the serving code path
    kinds = input_kinds(contract)
    cols = columns_from_frame(hold, list(kinds))
    onnx_out = OnnxPredictor(conv.onnx_model, kinds, "classification", prep=conv.prep).predict(cols)
    sk_out = SklearnPredictor(pipe, kinds, "classification").predict(cols)
    diff = np.max(np.abs(np.array(onnx_out.probabilities) - np.array(sk_out.probabilities)))
    assert diff <= 1e-5
    assert onnx_out.predictions == sk_out.predictions


def test_missing_values_and_unknown_levels_match_sklearn() -> None:
    contract = make_contract()
    pipe, _, hold = fit("rf")
    conv = convert_pipeline(pipe, contract, hold)
    assert conv.onnx_model is not None, conv.reason
    kinds = input_kinds(contract)
    cols = columns_from_frame(hold.head(5), list(kinds))
    cols["income"] = [None] * 5
    cols["region"] = [None, "mars", "north", None, MISSING]
    cols["purpose"] = ["yacht", "car", "home", "unknown", "business"]
    a = OnnxPredictor(conv.onnx_model, kinds, "classification", prep=conv.prep).predict(cols)
    b = SklearnPredictor(pipe, kinds, "classification").predict(cols)
    assert a.probabilities is not None and b.probabilities is not None
    assert np.allclose(a.probabilities, b.probabilities, atol=1e-5)


def test_unconvertible_pipeline_falls_back_to_sklearn_with_a_reason() -> None:
    from sklearn.preprocessing import FunctionTransformer

    contract = make_contract()
    pipe, _, hold = fit("logreg")
    pipe.steps.insert(
        1, ("custom", FunctionTransformer(np.log1p))
    )  # no ONNX converter for a Python function
    pipe.steps[1][1].fit(None)
    conv = convert_pipeline(pipe, contract, hold)
    assert conv.backend == "sklearn"
    assert conv.onnx_model is None
    assert "ONNX conversion failed" in (conv.reason or "")


def test_disagreeing_conversion_is_refused() -> None:
    contract = make_contract()
    pipe, _, hold = fit("logreg")
    conv = convert_pipeline(
        pipe, contract, hold, tolerance=0.0 - 1.0
    )  # nothing can be within a negative tolerance
    assert conv.backend == "sklearn"
    assert "differ" in (conv.reason or "")


def test_smoke_test_passes_a_good_model_and_catches_a_bad_one() -> None:
    contract = make_contract()
    pipe, _, hold = fit("logreg")
    conv = convert_pipeline(pipe, contract, hold)
    assert conv.onnx_model is not None, conv.reason
    kinds = input_kinds(contract)
    # typed as the protocol smoke_test takes: OnnxPredictor.kinds is inferred dict[str, str]
    predictor = cast(
        Predictor, OnnxPredictor(conv.onnx_model, kinds, "classification", prep=conv.prep)
    )
    sample = hold.head(10)
    cols = columns_from_frame(sample, list(kinds))
    expected = SklearnPredictor(pipe, kinds, "classification").predict(cols)
    assert expected.probabilities is not None
    meta = {"sample_columns": cols, "expected": {"probabilities": expected.probabilities}}
    assert smoke_test(predictor, meta) == []
    bad = {
        "sample_columns": cols,
        "expected": {"probabilities": [p + 0.2 for p in expected.probabilities]},
    }
    assert any("differ" in p for p in smoke_test(predictor, bad))
    assert smoke_test(predictor, {"sample_columns": {}, "expected": {}}) != []


def test_outputs_agree_absolutely_on_probabilities_and_relatively_on_scores() -> None:
    want = np.array([0.25, 190.0, -3000.0])
    close = want + np.array([5e-6, 1.5e-3, -2.5e-2])  # float32 rounding at each size
    assert outputs_agree(want, close, "regression", 1e-5)
    assert not outputs_agree(want, close, "classification", 1e-5)
    assert not outputs_agree(
        want, want + np.array([0.0, 3e-3, 0.0]), "regression", 1e-5
    )  # beyond 1e-5 x 190
    assert outputs_agree(np.array([0.5]), np.array([0.500009]), "classification", 1e-5)


def test_a_regression_on_a_large_scale_target_is_served_by_onnx() -> None:
    """A table nobody here designed: linnerud's weights (about 190). float32 rounding of such a score is
    above 1e-5 in absolute terms; the check is relative, so the forest still converts."""
    from sklearn import datasets
    from sklearn.utils import Bunch

    from mloop.core.contract.inference import infer_contract
    from models.spec import ModelSpec
    from models.train import fit_and_evaluate

    bunch = datasets.load_linnerud(as_frame=True)
    assert isinstance(bunch, Bunch)  # return_X_y=False: the Bunch, not the (X, y) tuple
    frame = bunch.data.assign(Weight=bunch.target["Weight"])
    contract = infer_contract(frame, name="linnerud", target="Weight")
    assert contract.task == "regression"  # 17 weights in 20 rows are measurements, not classes
    train, holdout = frame.iloc[:15], frame.iloc[15:]
    fitted = fit_and_evaluate(contract, ModelSpec(estimator="random_forest"), train, holdout)
    conv = convert_pipeline(fitted.pipeline, contract, holdout)
    assert conv.backend == "onnx", conv.reason

"""Column names that are not identifiers: one mapping (serving/bundle/column_keys.py) for request fields and
ONNX inputs; the request schema keeps the users' names; bounds and strict mode (pure)."""

from __future__ import annotations

import keyword

import pytest
from pydantic import BaseModel, ValidationError

from serving.api.schema import build_feedback_model, build_record_model
from serving.bundle.column_keys import column_keys
from tests.serving.helpers import make_contract, make_odd_contract

ODD = [
    "petal length (cm)",
    "a b",
    "a_b",
    "1st",
    "class",
    "naïve",
    "x/y",
    "x.y",
    "json",
    "model_x",
    "",
    "x_y_2",
]


def test_keys_are_unique_safe_identifiers_and_clean_names_keep_themselves() -> None:
    keys = column_keys(ODD)
    assert list(keys) == ODD
    assert len(set(keys.values())) == len(ODD)
    for key in keys.values():
        assert key.isascii() and key.isidentifier() and key[0].isalpha()
        assert (
            not keyword.iskeyword(key)
            and not hasattr(BaseModel, key)
            and not key.startswith("model_")
        )
    assert (
        keys["a_b"] == "a_b" and keys["x_y_2"] == "x_y_2"
    )  # already safe: unchanged (old ONNX models)
    assert keys["a b"] not in ("a_b",) and keys["x.y"] not in (
        "x_y",
        "x_y_2",
    )  # collisions resolved
    assert keys["naïve"] == "naive" and keys["class"] == "f_class" and keys["1st"] == "f_1st"


def test_keys_depend_only_on_the_names_and_their_order() -> None:
    assert column_keys(ODD) == column_keys(list(ODD))
    assert column_keys(["income", "age"]) == {"income": "income", "age": "age"}
    with pytest.raises(ValueError, match="duplicate"):
        column_keys(["a", "a"])


def test_record_model_takes_and_names_the_users_columns() -> None:
    contract = make_odd_contract()
    Record = build_record_model(contract)
    schema = Record.model_json_schema()
    assert set(schema["properties"]) == {c.name for c in contract.feature_columns}
    good = {
        "petal length (cm)": 1.0,
        "a b": None,
        "naïve": 0.1,
        "x/y": 2.0,
        "a_b": 3,
        "x.y": 4,
        "1st": "gold",
        "class": None,
    }
    rec = Record.model_validate(good)
    assert rec.model_dump() == good  # serialised by alias: the users' names
    with pytest.raises(ValidationError) as err:  # the field's own (Python) name is not accepted
        Record.model_validate({**{k: v for k, v in good.items() if k != "a b"}, "a_b_2": 1.0})
    assert "a_b_2" in str(err.value)
    with pytest.raises(ValidationError) as err:
        Record.model_validate({**good, "x/y": "text"})
    assert "x/y" in str(err.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"n_accounts": 2**63}, "n_accounts"),
        ({"n_accounts": -(2**63) - 1}, "n_accounts"),
        ({"n_accounts": 1e308}, "n_accounts"),
        ({"age": 1e308}, "age"),
        ({"age": -1e39}, "age"),
        ({"purpose": "x" * 257}, "purpose"),
    ],
)
def test_values_the_model_or_the_log_cannot_hold_are_refused(change: dict, field: str) -> None:
    Record = build_record_model(make_contract())
    good = {
        "income": 1.0,
        "loan_amount": 2.0,
        "age": 3.0,
        "debt_ratio": 0.1,
        "n_accounts": 2,
        "purpose": "car",
    }
    Record.model_validate(
        {**good, "n_accounts": 2**63 - 1, "age": 3e38}
    )  # the limits themselves pass
    with pytest.raises(ValidationError) as err:
        Record.model_validate({**good, **change})
    assert field in str(err.value)


def test_strict_mode_enforces_contract_ranges_and_levels() -> None:
    contract = make_odd_contract()
    good = {"petal length (cm)": 0.0, "naïve": 0.0, "x/y": 0.0, "a_b": 3, "x.y": 4, "1st": "gold"}
    lax, strict = build_record_model(contract), build_record_model(contract, strict=True)
    for change, field in (
        ({"a_b": 500}, "a_b"),
        ({"1st": "platinum"}, "1st"),
        ({"x/y": 1e6}, "x/y"),
    ):
        lax.model_validate({**good, **change})
        with pytest.raises(ValidationError) as err:
            strict.model_validate({**good, **change})
        assert field in str(err.value)
    strict.model_validate(good)


@pytest.mark.parametrize("label", ["1", 1.5, True, None, [1], {"a": 1}, 2**63])
def test_feedback_label_follows_the_target_type(label: object) -> None:
    Feedback = build_feedback_model(make_contract())  # integer target
    Feedback.model_validate({"prediction_id": "p", "label": 1})
    with pytest.raises(ValidationError):
        Feedback.model_validate({"prediction_id": "p", "label": label})

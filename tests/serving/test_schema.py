"""Request schema generated from the contract (pure)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serving.api.schema import build_record_model, build_request_model
from tests.serving.helpers import make_contract

GOOD = {
    "income": 1.0,
    "loan_amount": 2,
    "age": 3.0,
    "debt_ratio": 0.1,
    "n_accounts": 2,
    "purpose": "car",
    "region": None,
}


def test_good_record_validates_and_nullable_may_be_omitted() -> None:
    Record = build_record_model(make_contract())
    # the record model is built at run time: its fields are read from the validated dump
    rec = Record.model_validate({k: v for k, v in GOOD.items() if k not in ("income", "region")})
    assert rec.model_dump()["income"] is None and rec.model_dump()["loan_amount"] == 2.0
    # pandas int-with-nulls as float
    assert Record.model_validate({**GOOD, "n_accounts": 3.0}).model_dump()["n_accounts"] == 3


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"age": "3"}, "age"),
        ({"n_accounts": 2.5}, "n_accounts"),
        ({"n_accounts": "2"}, "n_accounts"),
        ({"n_accounts": True}, "n_accounts"),
        ({"purpose": 1}, "purpose"),
        ({"purpose": None}, "purpose"),
        ({"extra": 1}, "extra"),
        ({"debt_ratio": float("inf")}, "debt_ratio"),
    ],
)
def test_bad_records_are_refused_naming_the_field(change: dict, field: str) -> None:
    Record = build_record_model(make_contract())
    with pytest.raises(ValidationError) as err:
        Record.model_validate({**GOOD, **change})
    assert field in str(err.value)


def test_request_list_limits() -> None:
    Request = build_request_model(make_contract(), max_records=3)
    Request.model_validate({"records": [GOOD]})
    for bad in ({"records": []}, {"records": [GOOD] * 4}, {"records": [GOOD], "other": 1}):
        with pytest.raises(ValidationError):
            Request.model_validate(bad)

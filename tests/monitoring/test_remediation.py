"""How a remediation reads an alert and records what it did. Pure."""

from __future__ import annotations

from pydantic import BaseModel

from monitoring.remediation import (
    RemediationResult,
    affected_model,
    alert_reason,
    as_dict,
    describe_audit,
    remediation_markdown,
)


def test_affected_model() -> None:
    assert affected_model({"model": "loans"}) == "loans"
    assert affected_model({"model": "", "model_name": "churn"}) == "churn"
    assert affected_model({"model": "loans"}, "given") == "given"
    assert affected_model({}) is None


def test_alert_reason() -> None:
    assert alert_reason("HighErrorRate", None, None) == "alert HighErrorRate"
    assert alert_reason("X", {"description": "d"}, "e1") == "alert X: d (event e1)"
    assert alert_reason("X", {"summary": "s", "description": "d"}, None) == "alert X: s"


def test_as_dict_and_audit_description() -> None:
    class Record(BaseModel):
        from_version: str
        to_version: str

    audit = as_dict(Record(from_version="3", to_version="2"))
    assert audit == {"from_version": "3", "to_version": "2"}
    assert as_dict(None) is None and as_dict({"a": 1}) == {"a": 1} and as_dict(5) == {"value": "5"}
    assert describe_audit(audit) == "champion 3 -> 2 (applied)"
    assert describe_audit(None) == "no audit record returned"


def test_remediation_markdown() -> None:
    result = RemediationResult(alertname="HighErrorRate", model_name="loans", action="rollback", outcome="done",
                               detail="rolled back", audit={"to_version": "2"})
    md = remediation_markdown(result, {"severity": "page", "model": "loans"}, "alert HighErrorRate")
    assert md.startswith("# Remediation: HighErrorRate -> rollback (done)")
    assert md.index("| `model` | loans |") < md.index("| `severity` | page |")
    assert '"to_version": "2"' in md
    assert "| - | - |" in remediation_markdown(result.model_copy(update={"audit": None}), {}, "r")

"""How a remediation reads an alert and records what it did, and its one-run-per-key claim."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from mloop.core.errors import MloopError
from mloop.core.settings import Settings
from monitoring.remediation import (
    ALREADY_REMEDIATING,
    RemediationResult,
    affected_model,
    alert_reason,
    as_dict,
    claim_remediation,
    describe_audit,
    remediation_lock_name,
    remediation_markdown,
    skipped_duplicate,
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
    result = RemediationResult(
        alertname="HighErrorRate",
        model_name="loans",
        action="rollback",
        outcome="done",
        detail="rolled back",
        audit={"to_version": "2"},
    )
    md = remediation_markdown(result, {"severity": "page", "model": "loans"}, "alert HighErrorRate")
    assert md.startswith("# Remediation: HighErrorRate -> rollback (done)")
    assert md.index("| `model` | loans |") < md.index("| `severity` | page |")
    assert '"to_version": "2"' in md
    assert "| - | - |" in remediation_markdown(result.model_copy(update={"audit": None}), {}, "r")


def test_one_claim_per_model_alert_and_fingerprint(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    with claim_remediation(locks, "loans", "HighErrorRate", "fp-1") as first:
        assert first is True
        with claim_remediation(locks, "loans", "HighErrorRate", "fp-1") as again:
            assert again is False  # same key: refused at once, no waiting
        for other in (
            ("loans", "HighErrorRate", "fp-2"),
            ("churn", "HighErrorRate", "fp-1"),
            ("loans", "DataDrift", "fp-1"),
            (None, "HighErrorRate", "fp-1"),
        ):
            with claim_remediation(locks, *other) as claimed:
                assert claimed is True, other
    with claim_remediation(locks, "loans", "HighErrorRate", "fp-1") as after:
        assert after is True  # released when the holder ends
    assert all(p.parent == locks for p in locks.iterdir())


def test_the_lock_name_is_built_from_validated_parts() -> None:
    name = remediation_lock_name("loans", "HighErrorRate", "../../etc/passwd")
    assert (
        name.startswith("remediate~loans~HighErrorRate~")
        and name.endswith(".lock")
        and "/" not in name
    )
    assert remediation_lock_name("loans", "a/../b", None).startswith("remediate~loans~h")
    assert remediation_lock_name("loans", "X", "fp") != remediation_lock_name("loans", "X", "fq")
    with pytest.raises(MloopError, match="invalid model name"):
        remediation_lock_name("x/../../../canary", "X", "fp")
    with pytest.raises(MloopError, match="invalid model name"):
        affected_model({"model": "x/../../../canary"})


def test_a_duplicate_is_recorded_as_skipped() -> None:
    result = RemediationResult(
        alertname="HighErrorRate", model_name="loans", action="rollback", outcome="done", detail=""
    )
    skipped = skipped_duplicate(result, "fp-1")
    assert (
        skipped.outcome == "skipped"
        and skipped.detail.startswith(ALREADY_REMEDIATING)
        and "fp-1" in skipped.detail
    )
    assert "skipped: already remediating" in remediation_markdown(skipped, {}, "r")


@pytest.mark.integration
def test_the_flow_skips_a_key_that_is_being_remediated(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, prefect_server
) -> None:
    from flows.remediate import remediate_flow

    monkeypatch.setenv("MLOOP_HOME", str(settings.state.root))
    monkeypatch.setenv("MLOOP_PROJECT_DIR", str(settings.project_dir))
    monkeypatch.setenv(
        "MLOOP_WEBHOOK_PORT", "9"
    )  # nothing listens: the notification is best effort
    notify_only = {"HighErrorRate": "notify"}
    with claim_remediation(settings.state.locks, "loans", "HighErrorRate", "fp-1"):
        busy = remediate_flow(
            alertname="HighErrorRate",
            labels={"model": "loans"},
            fingerprint="fp-1",
            actions=notify_only,
        )
        other = remediate_flow(
            alertname="HighErrorRate",
            labels={"model": "loans"},
            fingerprint="fp-2",
            actions=notify_only,
        )
    assert busy.outcome == "skipped" and busy.detail.startswith(ALREADY_REMEDIATING)
    assert other.outcome == "done"
    free = remediate_flow(
        alertname="HighErrorRate",
        labels={"model": "loans"},
        fingerprint="fp-1",
        actions=notify_only,
    )
    assert free.outcome == "done"
    with pytest.raises(MloopError, match="invalid model name"):
        remediate_flow(
            alertname="HighErrorRate", labels={"model": "x/../../../canary"}, actions=notify_only
        )


def test_different_keys_never_share_a_lock_file() -> None:
    assert remediation_lock_name("a-b", "c", "fp") != remediation_lock_name("a", "b-c", "fp")
    assert remediation_lock_name(None, "X", "fp") != remediation_lock_name("X", "X", "fp")

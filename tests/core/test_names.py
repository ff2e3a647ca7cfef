"""Every entry that takes a model or dataset name refuses one that breaks the rule (mloop.core.names),
before anything is written: flow parameters, the registry, the audit log, report folders, the
remediation lock, the CLI (the webhook: tests/monitoring/test_webhook_security.py). And a name like
``x/../../../canary`` never creates a file anywhere: a snapshot of the tmp dir holding MLOOP_HOME is
unchanged after every attempt."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mloop.core.errors import MloopError
from mloop.core.settings import Settings

BAD_NAMES = ["x/../../../canary", "..", "", "a" * 101]
"""Names every entry must refuse: a path escape, the parent folder, empty, one character too long."""


def tree_snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` (files and folders) -> (size, mtime ns, mode)."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(root))] = (
            st.st_size if path.is_file() else 0,
            st.st_mtime_ns,
            st.st_mode,
        )
    return out


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    """Settings with MLOOP_HOME = tmp_path/home (state folders created)."""
    s = Settings(home=tmp_path / "home", project_dir=tmp_path)
    s.state.ensure()
    return s


def _registry_calls(s: Settings, name: str) -> list[Callable[[], Any]]:
    from models import registry

    uri = s.tracking_uri
    return [
        lambda: registry.promote(uri, s.state, name, "1", reason="r", actor="test"),
        lambda: registry.rollback(uri, s.state, name, reason="r", actor="test"),
        lambda: registry.set_challenger(uri, s.state, name, "1"),
        lambda: registry.list_versions(uri, name),
        lambda: registry.register_version(uri, name, source="file:///nowhere", run_id="r", tags={}),
    ]


def _audit_calls(s: Settings, name: str) -> list[Callable[[], Any]]:
    from models.audit import AuditRecord, append_audit, audit_path, read_audit

    record = AuditRecord.model_construct(
        model_name=name,
        action="rollback",
        from_version="2",
        to_version="1",
        reason="r",
        actor="test",
    )
    return [
        lambda: append_audit(s.state.audit, record),
        lambda: read_audit(s.state.audit, name),
        lambda: audit_path(s.state.audit, name),
    ]


def _report_calls(s: Settings, name: str) -> list[Callable[[], Any]]:
    from monitoring.reports import add_to_workspace, report_folder

    return [
        lambda: report_folder(s.state.reports, name, "1"),
        lambda: add_to_workspace(
            s.state.evidently_workspace,
            name,
            None,  # pyright: ignore[reportArgumentType]  # why: the name is refused before the snapshot is read
        ),
    ]


def _remediation_calls(s: Settings, name: str) -> list[Callable[[], Any]]:
    from monitoring.remediation import affected_model, claim_remediation, remediation_lock_name

    def claim() -> None:
        with claim_remediation(s.state.locks, name, "HighErrorRate", "fp"):
            pass

    return [
        lambda: affected_model({"model": name}),
        lambda: affected_model({}, name),
        lambda: remediation_lock_name(name, "HighErrorRate", "fp"),
        claim,
    ]


@pytest.mark.parametrize("bad", BAD_NAMES)
@pytest.mark.parametrize("entry", ["registry", "audit", "reports", "remediation"])
def test_capabilities_refuse_bad_names_and_write_nothing(
    home: Settings, tmp_path: Path, entry: str, bad: str
) -> None:
    if entry == "remediation" and bad == "":
        pytest.skip(
            "an empty model label means 'no model' in an alert; the flow parameter refuses '' (below)"
        )
    calls = {
        "registry": _registry_calls,
        "audit": _audit_calls,
        "reports": _report_calls,
        "remediation": _remediation_calls,
    }[entry](home, bad)
    before = tree_snapshot(tmp_path)
    for call in calls:
        with pytest.raises(MloopError):
            call()
    assert tree_snapshot(tmp_path) == before
    assert not list(tmp_path.parent.glob("canary*"))


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_flow_parameters_refuse_bad_names(bad: str) -> None:
    from prefect.exceptions import ParameterTypeError

    from flows.deploy import deploy_flow
    from flows.ingest import ingest_flow
    from flows.monitor import monitor_flow
    from flows.promote import promote_flow, rollback_flow
    from flows.remediate import remediate_flow
    from flows.train import train_flow

    cases = [
        (train_flow, {"dataset": bad}),
        (deploy_flow, {"name": bad}),
        (remediate_flow, {"alertname": "HighErrorRate", "model_name": bad}),
        (monitor_flow, {"model_name": bad}),
        (promote_flow, {"name": bad, "version": "1", "reason": "r"}),
        (rollback_flow, {"name": bad, "reason": "r"}),
        (ingest_flow, {"path": "x.csv", "dataset": bad}),
    ]
    for flow_fn, params in cases:
        with pytest.raises(ParameterTypeError, match="invalid (model|dataset) name"):
            flow_fn.validate_parameters(params)
    assert (
        remediate_flow.validate_parameters({"alertname": "X", "model_name": "loans"})["model_name"]
        == "loans"
    )
    # retrain takes the event resource id too: its name is checked in the body (model_name_from)


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_cli_commands_refuse_bad_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    from mloop.cli.app import app

    home = tmp_path / "home"
    monkeypatch.setenv("MLOOP_HOME", str(home))
    data = tmp_path / "in.csv"
    data.write_text("prediction_id,label\n1,0\n")
    before = tree_snapshot(tmp_path)
    commands = [
        ["models", bad],
        ["audit", bad],
        ["promote", bad, "1", "--reason", "r"],
        ["rollback", bad, "--reason", "r"],
        ["reproduce", bad, "1"],
        ["monitor", bad],
        ["train", bad],
        ["ingest", str(data), "--dataset", bad],
        ["data", "list", bad],
        ["data", "get", bad, "--out", str(tmp_path / "o.parquet")],
        ["data", "contract", bad],
        ["package", bad],
        ["serve", bad],
        ["deploy", bad],
        ["feedback", str(data), bad],
    ]
    for argv in commands:
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 2, (argv, result.output)
        assert "invalid" in result.output and "name" in result.output, (argv, result.output)
    assert tree_snapshot(tmp_path) == before and not home.exists()


def test_good_names_pass_every_entry(home: Settings) -> None:
    from models.audit import audit_path
    from monitoring.remediation import affected_model, remediation_lock_name
    from monitoring.reports import report_folder

    assert (
        audit_path(home.state.audit, "loans.v2_a-b")
        == home.state.audit.resolve() / "loans.v2_a-b.jsonl"
    )
    assert (
        report_folder(home.state.reports, "loans", "3").parent
        == home.state.reports.resolve() / "loans"
    )
    assert affected_model({"model": "loans"}) == "loans"
    name = remediation_lock_name("loans", "High Error/Rate", "fp")
    assert name.startswith("remediate~loans~h") and "/" not in name

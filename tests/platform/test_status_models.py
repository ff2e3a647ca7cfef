"""``mloop status`` with several models: one row per registered model with its champion, the
version served (loaded or not), its own newest drift verdict and its own newest retrain.

Tiny fixtures: result.json files and a retrain ledger under a temporary MLOOP_HOME, the registry
and the service stubbed. No server.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from rich.console import Console
from typer.testing import CliRunner

import mloop.platform.status as status_mod
from mloop.cli.platform import models_table
from mloop.core.settings import Settings
from mloop.platform.client import PrefectApi
from mloop.platform.status import (
    ModelStatus,
    PlatformStatus,
    RetrainInfo,
    model_rows,
    newest_retrains,
)
from monitoring.policy import RetrainLedger, RetrainRecord, ledger_path

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def write_result(
    reports: Path, model: str, stamp: str, *, drift: bool, share: float, version: str, age: float
) -> Path:
    folder = reports / model / stamp
    folder.mkdir(parents=True)
    path = folder / "result.json"
    path.write_text(
        json.dumps(
            {
                "model_name": model,
                "model_version": version,
                "drift_share": share,
                "drift_share_threshold": 0.5,
                "dataset_drift": drift,
                "drifted_columns": ["income"] if drift else [],
                "quality": {"degraded": False},
            }
        )
    )
    when = (T0 - timedelta(seconds=age)).timestamp()
    os.utime(path, (when, when))
    return path


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home", auth=False)
    settings.state.ensure()
    reports = settings.state.reports
    write_result(
        reports, "loans", "20260301T100000-v2", drift=False, share=0.1, version="2", age=7200
    )
    write_result(
        reports, "loans", "20260301T115000-v3", drift=True, share=0.6, version="3", age=600
    )  # newest
    write_result(
        reports, "rates", "20260301T110000-v1", drift=False, share=0.0, version="1", age=3600
    )
    torn = reports / "loans" / "20260301T115900-v3" / "result.json"  # the newest, but torn: skipped
    torn.parent.mkdir()
    torn.write_text("{torn")
    os.utime(torn, (T0.timestamp() - 60, T0.timestamp() - 60))
    ledger = RetrainLedger(ledger_path(settings.state.root))
    for model, minutes, trigger, run in (
        ("loans", 90, "drift", "r1"),
        ("rates", 60, "alert", None),
        ("loans", 30, "manual", "r2"),
    ):
        ledger.claim(
            RetrainRecord(
                model_name=model,
                started_at=T0 - timedelta(minutes=minutes),
                trigger=trigger,
                flow_run_id=run,
            ),
            cooldown_minutes=0,
            daily_budget=100,
        )
    return settings


REGISTRY = [
    ("rates", {"champion": "1"}),
    ("loans", {"champion": "3", "challenger": "4"}),
    ("apples", {}),
]
SERVED = {
    "loans": {"model_name": "loans", "model_version": 3, "loaded": True},
    "rates": {"model_name": "rates", "model_version": "1", "loaded": False},
}


def test_every_model_gets_its_own_drift_and_retrain(
    home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(status_mod, "registry_aliases", lambda s: REGISTRY)
    monkeypatch.setattr(status_mod, "served_models", lambda s: SERVED)

    class Api:
        def flow_runs_by_id(self, ids: list[str]) -> list[dict[str, Any]]:
            assert ids == ["r2"]  # only the newest retrain per model is looked up
            return [{"id": "r2", "state": {"name": "Completed"}}]

    # a stand-in for the one PrefectApi method the status reads (model_statuses takes the class)
    api = cast(PrefectApi, Api())
    rows = {m.name: m for m in status_mod.model_statuses(home, api)}
    assert list(rows) == ["apples", "loans", "rates"]
    loans, rates, apples = rows["loans"], rows["rates"], rows["apples"]
    assert (loans.champion, loans.challenger, loans.deployed, loans.loaded) == ("3", "4", "3", True)
    assert (rates.champion, rates.deployed, rates.loaded) == (
        "1",
        "1",
        False,
    )  # served, not in memory now
    assert (
        apples.champion,
        apples.deployed,
        apples.loaded,
        apples.last_drift,
        apples.last_retrain,
    ) == (None, None, None, None, None)
    assert (
        loans.last_drift is not None
        and loans.last_drift.drifted
        and loans.last_drift.drift_share == 0.6
    )
    assert loans.last_drift.version == "3" and loans.last_drift.checked_at.startswith(
        "2026-03-01T11:50"
    )
    assert (
        rates.last_drift is not None
        and not rates.last_drift.drifted
        and rates.last_drift.verdict == "no drift"
    )
    assert loans.last_retrain == RetrainInfo(
        started_at=(T0 - timedelta(minutes=30)).isoformat(),
        trigger="manual",
        flow_run_id="r2",
        state="Completed",
    )
    assert (
        rates.last_retrain is not None
        and rates.last_retrain.trigger == "alert"
        and rates.last_retrain.state is None
    )


def test_without_prefect_the_retrain_state_is_unknown(home: Settings) -> None:
    retrains = status_mod.model_retrains(home, None)
    assert set(retrains) == {"loans", "rates"} and retrains["loans"].state is None


def test_nothing_yet_means_empty_rows(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "empty", auth=False)
    assert status_mod.model_drift(settings.state.reports) == {}
    assert status_mod.model_retrains(settings, None) == {}
    assert model_rows([], SERVED, {}, {}) == []  # served but not registered: not a registry row


def test_newest_retrain_per_model() -> None:
    records = [
        RetrainRecord(model_name=m, started_at=T0 + timedelta(minutes=k), trigger=t)
        for m, k, t in (("a", 1, "drift"), ("b", 5, "alert"), ("a", 3, "manual"), ("a", 2, "drift"))
    ]
    newest = newest_retrains(records)
    assert {m: (r.started_at, r.trigger) for m, r in newest.items()} == {
        "a": (T0 + timedelta(minutes=3), "manual"),
        "b": (T0 + timedelta(minutes=5), "alert"),
    }


def rows_for_rendering(home: Settings, monkeypatch: pytest.MonkeyPatch) -> list[ModelStatus]:
    monkeypatch.setattr(status_mod, "registry_aliases", lambda s: REGISTRY)
    monkeypatch.setattr(status_mod, "served_models", lambda s: SERVED)
    return status_mod.model_statuses(home, None)


def test_the_models_table_shows_every_model(
    home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    console = Console(width=220, record=True)
    console.print(models_table(rows_for_rendering(home, monkeypatch)))
    text = console.export_text()
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") > 2}
    assert {"apples", "loans", "rates"} <= set(lines)
    assert (
        "drift (share 0.6) v3 at 2026-03-01T11:50" in lines["loans"] and "manual" in lines["loans"]
    )
    assert (
        "no (on demand)" in lines["rates"]
        and "no drift" in lines["rates"]
        and "alert" in lines["rates"]
    )
    assert [cell.strip() for cell in lines["apples"].split("│")[2:-1]] == ["-"] * 6


def test_mloop_status_prints_the_models_table_and_json(
    home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mloop.cli.app import app

    models = rows_for_rendering(home, monkeypatch)
    st = PlatformStatus(home=str(home.state.root), urls={}, services=[], models=models)
    monkeypatch.setattr(status_mod, "status", lambda settings, runs=10: st)
    monkeypatch.setenv(
        "COLUMNS", "250"
    )  # the CLI makes its console when it prints: the width is read then
    out = CliRunner().invoke(app, ["status"])
    assert out.exit_code == 0, out.output
    assert "last drift check" in out.output and "no (on demand)" in out.output
    for name in ("apples", "loans", "rates"):
        assert name in out.output
    out = CliRunner().invoke(app, ["status", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    by_name = {m["name"]: m for m in doc["models"]}
    assert by_name["loans"]["last_drift"]["drifted"] is True and by_name["loans"]["loaded"] is True
    assert (
        by_name["rates"]["last_retrain"]["trigger"] == "alert"
        and by_name["rates"]["loaded"] is False
    )

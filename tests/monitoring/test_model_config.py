"""Per-model monitoring config: validation, defaults from the global settings, the file, the retrain claim.

Tmp MLOOP_HOME, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mloop.core.errors import MloopError
from mloop.core.settings import Settings
from monitoring.model_config import (
    ModelMonitorConfig,
    config_path,
    configured_models,
    effective_config,
    load_model_config,
    resolve_config,
    update_model_config,
)
from monitoring.retraining import claim_retrain


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        project_dir=tmp_path,
        monitor_window_size=4000,
        monitor_min_rows=50,
        retrain_cooldown_minutes=30,
        daily_retrain_budget=6,
    )


def test_unset_fields_follow_the_global_settings(settings: Settings) -> None:
    config = effective_config(settings, "loans", ModelMonitorConfig(window_size=2000))
    assert (
        config.window_size,
        config.min_rows,
        config.retrain_cooldown_minutes,
        config.daily_retrain_budget,
    ) == (2000, 50, 30, 6)
    assert config.overridden == ["window_size"]
    assert resolve_config(settings, "never-configured").overridden == []


@pytest.mark.parametrize(
    "bad",
    [
        {"window_size": 0},
        {"min_rows": -1},
        {"retrain_cooldown_minutes": -5},
        {"daily_retrain_budget": -1},
        {"unknown": 1},
    ],
)
def test_invalid_values_are_refused_and_nothing_is_written(settings: Settings, bad: dict) -> None:
    with pytest.raises(MloopError, match="invalid"):
        update_model_config(settings, "loans", bad)
    assert not config_path(settings.state.root, "loans").exists()


def test_a_minimum_above_the_window_is_refused(settings: Settings) -> None:
    update_model_config(settings, "loans", {"window_size": 1000})
    with pytest.raises(MloopError, match="never be checked"):
        update_model_config(settings, "loans", {"min_rows": 1001})
    assert load_model_config(settings.state.root, "loans") == ModelMonitorConfig(window_size=1000)


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "x" * 101])
def test_names_follow_the_rule(settings: Settings, bad: str) -> None:
    with pytest.raises(MloopError, match="invalid model name"):
        update_model_config(settings, bad, {"window_size": 10})
    with pytest.raises(MloopError, match="invalid model name"):
        resolve_config(settings, bad)


def test_update_merges_reset_drops_and_the_file_round_trips(settings: Settings) -> None:
    update_model_config(settings, "loans", {"window_size": 2000, "retrain_cooldown_minutes": 10})
    config = update_model_config(
        settings, "loans", {"daily_retrain_budget": 2, "window_size": None}
    )
    assert (config.window_size, config.retrain_cooldown_minutes, config.daily_retrain_budget) == (
        2000,
        10,
        2,
    )
    assert configured_models(settings.state.root) == ["loans"]
    other = update_model_config(settings, "rates", {"min_rows": 10})
    assert (
        other.min_rows == 10 and resolve_config(settings, "loans").min_rows == 50
    )  # models never share values
    reset = update_model_config(settings, "loans", {}, reset=True)
    assert reset.overridden == [] and not config_path(settings.state.root, "loans").exists()


def test_a_broken_file_is_a_readable_error(settings: Settings) -> None:
    path = config_path(settings.state.root, "loans")
    path.parent.mkdir(parents=True)
    path.write_text('{"window_size": "lots"}')
    with pytest.raises(MloopError, match="monitoring config of model loans") as err:
        resolve_config(settings, "loans")
    assert "mloop monitor configure loans" in (err.value.fix or "")


def test_the_retrain_claim_uses_each_models_own_cooldown_and_budget(settings: Settings) -> None:
    update_model_config(
        settings, "fast", {"retrain_cooldown_minutes": 1, "daily_retrain_budget": 2}
    )
    now = datetime(2025, 1, 1, 12, tzinfo=UTC)

    def claim(name: str, minutes: float) -> bool:
        return claim_retrain(
            settings,
            name,
            trigger="drift",
            event_id=None,
            flow_run_id="f",
            force=False,
            now=now + timedelta(minutes=minutes),
        ).allowed

    # fast: 1-minute cooldown, budget 2; slow (global): 30-minute cooldown, budget 6; counted per model
    assert [claim("fast", 0), claim("slow", 0), claim("fast", 2), claim("slow", 2)] == [
        True,
        True,
        True,
        False,
    ]
    decision = claim_retrain(
        settings,
        "fast",
        trigger="drift",
        event_id=None,
        flow_run_id="f",
        force=False,
        now=now + timedelta(minutes=5),
    )
    assert not decision.allowed and decision.reason.startswith("daily budget: 2 retrains of fast")
    assert claim("slow", 31)


def test_budget_zero_switches_a_models_automatic_retrains_off(settings: Settings) -> None:
    update_model_config(settings, "manual-only", {"daily_retrain_budget": 0})
    now = datetime(2025, 1, 1, tzinfo=UTC)
    off = claim_retrain(
        settings,
        "manual-only",
        trigger="drift",
        event_id=None,
        flow_run_id="f",
        force=False,
        now=now,
    )
    forced = claim_retrain(
        settings,
        "manual-only",
        trigger="manual",
        event_id=None,
        flow_run_id="f",
        force=True,
        now=now,
    )
    assert not off.allowed and "switched off" in off.reason and forced.allowed


def test_cli_configure_sets_and_shows(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from mloop.cli.app import app

    monkeypatch.setenv("MLOOP_HOME", str(settings.state.root))
    monkeypatch.setenv("MLOOP_MONITOR_MIN_ROWS", "50")
    for key in settings.service_env():
        monkeypatch.setenv(key, settings.service_env()[key])
    out = CliRunner().invoke(
        app, ["monitor", "configure", "loans", "--window", "2000", "--cooldown-minutes", "10"]
    )
    assert out.exit_code == 0, out.output
    shown = CliRunner().invoke(app, ["monitor", "configure", "loans", "--json"])
    doc = json.loads(shown.stdout)
    assert (
        doc["window_size"] == 2000
        and doc["retrain_cooldown_minutes"] == 10
        and doc["min_rows"] == 50
    )
    assert doc["overridden"] == ["window_size", "retrain_cooldown_minutes"]
    table = CliRunner().invoke(app, ["monitor", "configure", "loans"])
    assert "global (MLOOP_MONITOR_MIN_ROWS)" in table.stdout
    bad = CliRunner().invoke(app, ["monitor", "configure", "loans", "--min-rows", "5000"])
    assert (
        bad.exit_code != 0
        and "never be" in bad.output
        and "min rows 5000 > window size 2000" in bad.output
    )
    assert CliRunner().invoke(app, ["monitor", "configure", "../x"]).exit_code == 2

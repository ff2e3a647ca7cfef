"""Code tests of the core: settings, state layout, event names, services helpers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mloop.core import events
from mloop.core.errors import MloopError
from mloop.core.processes import (
    free_port,
    pid_alive,
    read_pid,
    start_process,
    stop_pid,
    stop_service,
)
from mloop.core.settings import Settings


def test_state_lives_under_home(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "h", project_dir=tmp_path)
    paths = s.state
    for p in (
        paths.prefect_home,
        paths.mlflow_db,
        paths.bentoml_home,
        paths.dvc_remote,
        paths.dvc_site_cache,
        paths.predictions,
        paths.reports,
        paths.run,
        paths.audit,
    ):
        assert tmp_path / "h" in p.parents
    assert s.tracking_uri == f"sqlite:///{tmp_path / 'h' / 'mlflow' / 'mlflow.db'}"
    assert s.remote_url == str(tmp_path / "h" / "dvc-remote")


def test_home_defaults_to_project_dot_mloop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLOOP_HOME", raising=False)
    assert Settings(project_dir=tmp_path).state.root == (tmp_path / ".mloop").resolve()


def test_env_prefix_sets_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOOP_HOME", str(tmp_path / "x"))
    monkeypatch.setenv("MLOOP_GATE_MIN_GAIN", "0.05")
    s = Settings()
    assert s.state.root == (tmp_path / "x").resolve()
    assert s.gate_min_gain == 0.05


def test_bad_setting_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOOP_GATE_RESAMPLES", "10")
    with pytest.raises(ValueError, match="gate_resamples"):
        Settings()


def test_service_env_turns_telemetry_off_and_points_into_home(tmp_path: Path) -> None:
    env = Settings(home=tmp_path / "h", project_dir=tmp_path).service_env()
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["DO_NOT_TRACK"] == "1"
    assert env["BENTOML_DO_NOT_TRACK"] == "true"
    assert env["DVC_NO_ANALYTICS"] == "1"
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    for key in (
        "PREFECT_HOME",
        "BENTOML_HOME",
        "DVC_SITE_CACHE_DIR",
        "XDG_CACHE_HOME",
        "MPLCONFIGDIR",
    ):
        assert env[key].startswith(str(tmp_path / "h"))


def test_event_names_and_resources() -> None:
    assert events.dataset_resource("loans") == "mloop.dataset.loans"
    assert events.model_resource("loans") == "mloop.model.loans"
    assert events.alert_event("HighErrorRate") == "mloop.alert.HighErrorRate"
    assert events.alert_event("bad name/!") == "mloop.alert.bad-name"
    with pytest.raises(ValueError, match="alertname"):
        events.alert_event("  ")


def test_mloop_error_message_has_what_where_fix() -> None:
    err = MloopError("column x missing", where="data/a.csv", fix="add column x")
    assert str(err) == "column x missing\nwhere: data/a.csv\nfix: add column x"


def test_start_and_stop_process_by_pid(tmp_path: Path) -> None:
    proc = start_process(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], run_dir=tmp_path
    )
    assert read_pid(tmp_path, "sleeper") == proc.pid
    assert stop_service(tmp_path, "sleeper", grace=2)
    assert not pid_alive(proc.pid)
    assert read_pid(tmp_path, "sleeper") is None
    assert not stop_service(tmp_path, "sleeper")


def test_stop_pid_escalates_when_first_signal_is_ignored(tmp_path: Path) -> None:
    code = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    proc = start_process("stubborn", [sys.executable, "-c", code], run_dir=tmp_path)
    for _ in range(100):
        if "ready" in (tmp_path / "stubborn.log").read_text():
            break
        subprocess.run(["sleep", "0.05"])
    stop_pid(proc.pid, grace=0.5)
    assert not pid_alive(proc.pid)


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 < port < 65536

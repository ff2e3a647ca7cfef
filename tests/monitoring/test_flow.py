"""Monitor flow and retraining data on real parts: DVC-versioned data, a model trained by the train
flow (MLflow on SQLite), the serving prediction log and feedback store, the session Prefect server.

One module-wide MLOOP_HOME: the tests run in order and each logs its own window of predictions
(the newest ``WINDOW`` rows), so each check sees only its own traffic.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from mloop.core.datasets import ingest_dataset, list_versions
from mloop.core.frames import write_frame
from mloop.core.generate import generate
from mloop.core.settings import Settings
from tests.helpers import column, flow_home
from tests.monitoring.helpers import log_traffic, model_events

pytestmark = pytest.mark.integration
NAME = "loans"
WINDOW = 1500


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, prefect_server) -> Iterator[tuple[Settings, str]]:
    """Settings + the champion version of a model trained on 3,000 baseline rows."""
    root = tmp_path_factory.mktemp("monitoring")
    with flow_home(root) as (settings, _mp):
        src = write_frame(generate("baseline", 3000, seed=1), root / "v1.parquet")
        ingest_dataset(
            settings,
            src,
            dataset=NAME,
            target="target",
            task="classification",
            time_column="event_time",
        )
        from flows.train import train_flow

        trained = train_flow(dataset=NAME)
        assert trained.promoted
        yield settings, str(trained.version)


def _feedback(settings: Settings, ids: list[str], labels: pd.Series) -> None:
    from serving.log.feedback import record_feedback

    record_feedback(
        settings.state.feedback,
        NAME,
        pd.DataFrame({"prediction_id": ids, "label": labels.to_numpy()}),
    )


def test_drifted_traffic_emits_drift_event(env: tuple[Settings, str]) -> None:
    from flows.monitor import monitor_flow

    settings, version = env
    since = datetime.now(UTC)
    log_traffic(settings, NAME, version, generate("covariate-shift", WINDOW, seed=5))
    result = monitor_flow(NAME, window_size=WINDOW)
    assert result.status == "drift" and result.events == ["mloop.drift.detected"]
    drift = result.drift
    assert drift is not None and drift.dataset_drift and drift.model_version == version
    assert drift.window.rows == WINDOW
    assert any(c.is_prediction for c in drift.columns)
    assert result.report_path is not None
    assert (
        Path(result.report_path).is_file() and Path(result.report_path).parent.parent.name == NAME
    )
    events = model_events("mloop.drift.detected", NAME, since)
    assert len(events) == 1
    payload = events[0]["payload"]
    assert payload["model_version"] == version and payload["report_path"] == result.report_path
    assert (
        set(payload["drifted_columns"]) == set(drift.drifted_columns)
        and payload["window"]["rows"] == WINDOW
    )
    assert payload["drift_share"] >= settings.drift_share_threshold
    # published: MLflow monitoring run linked to the version, Evidently workspace snapshot
    from mlflow import MlflowClient

    assert result.mlflow_run_id is not None
    run = MlflowClient(settings.tracking_uri).get_run(result.mlflow_run_id)
    assert (
        run.data.tags["mloop.model_name"] == NAME
        and run.data.tags["mloop.model_version"] == version
    )
    assert run.data.metrics["drift_share"] == pytest.approx(drift.drift_share)
    from evidently.ui.workspace import Workspace

    ws = Workspace(str(settings.state.evidently_workspace))
    project = ws.search_project(f"mloop-{NAME}")[0]
    assert result.workspace_snapshot_id in {str(s) for s in ws.list_runs(project.id)}


def test_same_population_emits_nothing(env: tuple[Settings, str]) -> None:
    from flows.monitor import monitor_flow

    settings, version = env
    since = datetime.now(UTC)
    log_traffic(settings, NAME, version, generate("baseline", WINDOW, seed=77))
    result = monitor_flow(NAME, window_size=WINDOW)
    assert result.status == "ok" and result.events == []
    assert result.drift is not None and not result.drift.dataset_drift
    assert model_events("mloop.drift.detected", NAME, since, timeout=3) == []


def test_concept_drift_with_labels_emits_quality_degraded(env: tuple[Settings, str]) -> None:
    from flows.monitor import monitor_flow

    settings, version = env
    since = datetime.now(UTC)
    df = generate("concept-drift", WINDOW, seed=8)
    ids = log_traffic(settings, NAME, version, df)
    _feedback(settings, ids, column(df, "target"))
    result = monitor_flow(NAME, window_size=WINDOW)
    assert result.drift is not None and result.report_path is not None
    assert result.drift.quality is not None and result.drift.quality.labelled_rows == WINDOW
    assert result.drift.quality.degraded and "mloop.quality.degraded" in result.events
    assert not result.drift.dataset_drift  # same applicants: only the labels tell
    assert (Path(result.report_path).parent / "quality.html").is_file()
    events = model_events("mloop.quality.degraded", NAME, since)
    assert len(events) == 1 and events[0]["payload"]["degraded_metrics"] == [settings.gate_metric]


def test_retrain_data_from_feedback_then_nothing_new(env: tuple[Settings, str]) -> None:
    """The concept-drift labels of the test before become a new version; a second call finds nothing new."""
    from monitoring.retrain_data import build_retrain_dataset

    settings, _ = env
    before = list_versions(settings, NAME)
    built = build_retrain_dataset(settings, NAME)
    assert built.created and built.stats is not None, built.reason
    assert built.version is not None and built.version.md5 != before[0].md5
    assert (
        built.stats.new_rows == WINDOW and built.version.rows == 3000
    )  # sliding window: same size
    assert list_versions(settings, NAME)[0].md5 == built.version.md5
    again = build_retrain_dataset(settings, NAME)
    assert not again.created and again.version is None
    assert "no new labelled data" in again.reason


def test_no_feedback_means_no_retrain_data(env: tuple[Settings, str]) -> None:
    from monitoring.retrain_data import build_retrain_dataset

    settings, _ = env
    built = build_retrain_dataset(settings, "other-model", dataset=NAME)
    assert not built.created and "no feedback labels" in built.reason


def test_too_few_predictions_skips(env: tuple[Settings, str]) -> None:
    from flows.monitor import MonitorOptions, monitor_flow

    result = monitor_flow(NAME, window_size=10, options=MonitorOptions(min_rows=100))
    assert result.status == "skipped" and result.drift is None and result.events == []


@pytest.fixture
def cli(env: tuple[Settings, str], monkeypatch: pytest.MonkeyPatch):
    """Invoke ``mloop`` in-process; the env vars the command exports are restored afterwards."""
    import os

    from typer.testing import CliRunner

    from mloop.cli.app import app

    for key in env[0].service_env():
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])
        else:
            monkeypatch.delenv(key, raising=False)
    return lambda *args: CliRunner().invoke(app, list(args))


def test_cli_monitor_json(env: tuple[Settings, str], cli) -> None:
    """``mloop monitor --json`` prints one JSON document with the verdict (newest window: concept drift)."""
    import json

    out = cli("monitor", NAME, "--window", str(WINDOW), "--no-publish", "--json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["model_version"] == env[1] and doc["status"] == "degraded", doc["reason"]
    assert doc["events"] == ["mloop.quality.degraded"]
    assert doc["drift"]["window"]["rows"] == WINDOW and doc["report_path"] is None


def test_cli_monitor_unknown_model_is_a_readable_error(cli) -> None:
    out = cli("monitor", "no-such-model", "--json")
    assert out.exit_code != 0
    assert "no-such-model" in out.output and "Traceback" not in out.output

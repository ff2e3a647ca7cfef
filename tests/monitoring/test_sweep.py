"""The monitor sweep on real parts: three models of different shapes (classification with 14 and with
4 features, regression with 6), DVC-versioned data, MLflow on SQLite, the serving prediction log, the
session Prefect server. Then drift on two models retrains both.

One module-wide MLOOP_HOME: the tests run in order, each logging the traffic it checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from mloop.core.frames import write_frame
from mloop.core.generate import generate
from mloop.core.settings import Settings
from tests.helpers import flow_home
from tests.monitoring.helpers import log_traffic, model_events

# the flows and monitoring modules are imported inside the tests, once the home is set
if TYPE_CHECKING:
    from monitoring.sweep import SweepEntry, SweepResult

pytestmark = pytest.mark.integration
SHAPES = {
    "loans": ("classification", None),
    "rates": ("regression", 6),
    "small": ("classification", 4),
}
ROWS = 1200


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, prefect_server) -> Iterator[Settings]:
    """Settings of a home with three champions trained on 3,000 baseline rows each."""
    from mloop.core.datasets import ingest_dataset

    root = tmp_path_factory.mktemp("sweep")
    with flow_home(root) as (settings, _mp):
        from flows.train import train_flow

        for i, (name, (task, features)) in enumerate(SHAPES.items()):
            src = write_frame(
                generate("baseline", 3000, seed=i + 1, task=task, features=features),
                root / f"{name}.parquet",
            )
            ingest_dataset(
                settings, src, dataset=name, target="target", task=task, time_column="event_time"
            )
            assert train_flow(dataset=name).promoted
        yield settings


def _traffic(settings: Settings, name: str, scenario: str, seed: int, labels: bool = False) -> None:
    """Score ``ROWS`` generated rows with ``name``'s champion and log them as the service does (+ labels)."""
    from models.registry import champion_version
    from serving.log.feedback import record_feedback

    task, features = SHAPES[name]
    df = generate(scenario, ROWS, seed=seed, task=task, features=features)
    ids = log_traffic(settings, name, str(champion_version(settings.tracking_uri, name)), df)
    if labels:
        record_feedback(
            settings.state.feedback,
            name,
            pd.DataFrame({"prediction_id": ids, "label": df["target"].to_numpy()}),
        )


def _by_model(result: SweepResult) -> dict[str, SweepEntry]:
    return {e.model_name: e for e in result.models}


def test_sweep_checks_every_model_with_its_own_window_and_publishes_per_model(
    env: Settings,
) -> None:
    from flows.monitor import monitor_sweep_flow
    from monitoring.model_config import update_model_config

    update_model_config(env, "rates", {"window_size": 800})
    update_model_config(env, "small", {"min_rows": ROWS + 1})  # too few predictions: skipped fast
    since = datetime.now(UTC)
    _traffic(env, "loans", "covariate-shift", seed=5)
    _traffic(env, "rates", "baseline", seed=6)
    _traffic(env, "small", "covariate-shift", seed=7)
    result = monitor_sweep_flow()
    got = _by_model(result)
    assert list(got) == ["loans", "rates", "small"] and result.failed == []
    assert got["loans"].status == "drift" and got["loans"].events == ["mloop.drift.detected"]
    assert got["rates"].status == "ok" and got["rates"].events == []
    assert got["small"].status == "skipped" and f"(< {ROWS + 1})" in got["small"].reason
    assert got["rates"].report_path is not None
    checked = json.loads((Path(got["rates"].report_path).parent / "result.json").read_text())
    assert checked["window"]["rows"] == 800  # its own window
    for name in (
        "loans",
        "rates",
    ):  # each model publishes as when checked alone: report, MLflow run, artifact
        report_path = got[name].report_path
        assert report_path is not None
        assert Path(report_path).parent.parent.name == name and got[name].mlflow_run_id
        assert got[name].task_run_id
    assert len(model_events("mloop.drift.detected", "loans", since, timeout=30)) == 1
    assert (
        model_events("mloop.drift.detected", "rates", since, timeout=2) == []
    )  # drift on one: only its event
    assert model_events("mloop.drift.detected", "small", since, timeout=2) == []
    # One cached reference per model: the train flow scored each champion's when it promoted it (the skipped
    # `small` too), and the two checks read theirs from the cache rather than writing new ones.
    references = sorted(
        f.parent.name for f in (env.state.root / "monitoring" / "reference").glob("*/*.parquet")
    )
    assert references == ["loans", "rates", "small"]


def test_sweep_skips_unchanged_models_and_a_failing_model_does_not_stop_the_others(
    env: Settings,
) -> None:
    from flows.monitor import monitor_sweep_flow

    again = _by_model(monitor_sweep_flow())
    assert again["loans"].status == "unchanged" and again["rates"].status == "unchanged"
    assert again["loans"].events == []  # the same window does not re-emit its drift
    _traffic(env, "loans", "baseline", seed=8)
    _traffic(env, "rates", "baseline", seed=9)
    contract = env.project_dir / "data" / "rates" / "contract.yaml"
    saved = contract.read_bytes()
    contract.unlink()
    try:
        result = monitor_sweep_flow()
    finally:
        contract.write_bytes(saved)
    got = _by_model(result)
    assert (
        result.failed == ["rates"] and got["rates"].task_run_id and "rates" in got["rates"].reason
    )
    assert (
        got["loans"].status in ("ok", "drift") and got["loans"].report_path
    )  # checked all the same
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts(limit=200)
    sweep = [a.data for a in artifact if a.key == "monitor-sweep"]
    assert sweep and isinstance(sweep[0], str), sweep  # a markdown artifact's data is its text
    assert "**failed**" in sweep[0] and f"runs/task-run/{got['rates'].task_run_id}" in sweep[0]


def test_drift_on_two_models_retrains_both(env: Settings) -> None:
    """Drift with labels on loans and rates: the sweep emits one drift event per model, and each model's
    retrain (what the ENQUEUE retrain deployment runs for each event) trains; a second drift of the same
    model inside its cooldown does not."""
    from flows.monitor import monitor_sweep_flow
    from flows.retrain import retrain_flow

    _traffic(env, "loans", "covariate-shift", seed=10, labels=True)
    _traffic(env, "rates", "covariate-shift", seed=11, labels=True)
    got = _by_model(monitor_sweep_flow(models=["loans", "rates"]))
    assert (
        "mloop.drift.detected" in got["loans"].events
        and "mloop.drift.detected" in got["rates"].events
    )
    first = retrain_flow(model_name="mloop.model.loans", trigger="drift")
    second = retrain_flow(model_name="mloop.model.rates", trigger="drift")
    assert (first.status, second.status) == ("trained", "trained"), (first.reason, second.reason)
    assert first.trained_version and second.trained_version
    repeat = retrain_flow(model_name="mloop.model.loans", trigger="drift")
    assert repeat.status == "skipped" and repeat.reason.startswith("cooldown")

"""Tables nobody here designed, through the whole loop on real services.

Three tables that scikit-learn ships (no download), each in its own MLOOP_HOME and project:

- ``wine``: 3 classes with string labels, a column name with a slash (``od280/od315_of_diluted_wines``);
- ``diabetes``: regression;
- ``breast_cancer``: binary, every column name has spaces (``mean radius``, ``worst fractal dimension``).

Each goes ingest (contract + DVC) -> train flow (MLflow, gate, champion) -> deploy flow (package to
BentoML, a real ``bentoml serve`` on loopback) -> predict with the table's own column names ->
feedback -> monitor flow (Evidently drift + quality on the logged window) -> lineage of one served
prediction through the CLI. The serving process is stopped by pid at the end of each table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mloop.core.processes import read_pid, stop_pid
from mloop.core.settings import Settings
from tests.e2e.helpers import AUTH, e2e_home

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Table:
    name: str
    frame: pd.DataFrame
    task: str


def _table(name: str) -> Table:
    from sklearn import datasets
    from sklearn.utils import Bunch

    # return_X_y=False: each loader gives the Bunch, not the (X, y) tuple
    if name == "wine":
        bunch = datasets.load_wine(as_frame=True)
        assert isinstance(bunch, Bunch)
        frame = bunch.frame.copy()
        frame["target"] = np.asarray(bunch.target_names)[bunch.target.to_numpy()]  # string labels
        return Table(name, frame, "classification")
    if name == "diabetes":
        bunch = datasets.load_diabetes(as_frame=True, scaled=False)
        assert isinstance(bunch, Bunch)
        return Table(name, bunch.frame, "regression")
    bunch = datasets.load_breast_cancer(as_frame=True)
    assert isinstance(bunch, Bunch)
    return Table("breast-cancer", bunch.frame, "classification")


@dataclass
class Served:
    settings: Settings
    table: Table
    url: str
    md5: str
    version: str


@pytest.fixture(scope="module", params=["wine", "diabetes", "breast_cancer"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, prefect_server
) -> Iterator[Served]:
    from flows.deploy import deploy_flow
    from flows.train import train_flow
    from mloop.core.datasets import ingest_dataset

    table = _table(request.param)
    settings, env = e2e_home(tmp_path_factory.mktemp(f"e2e-{table.name}"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        src = settings.state.tmp / f"{table.name}.csv"
        table.frame.to_csv(src, index=False)
        md5 = ingest_dataset(settings, src, dataset=table.name, target="target").version.md5
        trained = train_flow(dataset=table.name, version=md5)
        assert trained.promoted and trained.champion == trained.version, trained.gate
        try:
            deployed = deploy_flow(name=table.name)
            assert deployed.version == trained.version, deployed
            yield Served(
                settings,
                table,
                f"http://127.0.0.1:{settings.serve_port}",
                md5,
                str(trained.version),
            )
        finally:
            pid = read_pid(settings.state.run, "serve")
            if pid is not None:
                stop_pid(pid, first=15)


def _records(frame: pd.DataFrame) -> list[dict]:
    features = frame.drop(columns=["target"])
    text = features.to_json(orient="records")
    assert text is not None  # no path given: the JSON text itself
    return json.loads(text)


def test_contract_keeps_the_tables_names_and_task(served: Served) -> None:
    from mloop.core.contract import load_contract

    contract = load_contract(served.settings.project_dir, served.table.name)
    assert contract.task == served.table.task
    assert [c.name for c in contract.feature_columns] == [
        c for c in served.table.frame.columns if c != "target"
    ]


def test_served_schema_shows_the_tables_own_column_names(served: Served) -> None:
    docs = httpx.get(f"{served.url}/docs.json", timeout=10).text
    for column in served.table.frame.columns:
        if column != "target":
            assert json.dumps(column)[1:-1] in docs, column


def test_predict_feedback_monitor_and_lineage(served: Served) -> None:
    from flows.monitor import monitor_flow
    from mloop.cli.app import app
    from serving.log.feedback import read_feedback
    from serving.log.predictions import read_predictions

    frame = served.table.frame.sample(frac=1.0, random_state=0).reset_index(drop=True).head(300)
    answers: list[dict] = []
    for start in range(0, len(frame), 50):
        resp = httpx.post(
            f"{served.url}/predict",
            json={"records": _records(frame.iloc[start : start + 50])},
            headers=AUTH,
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        answers.extend(resp.json())
    assert len(answers) == len(frame)
    assert {a["model_version"] for a in answers} == {served.version}
    if (
        served.table.name == "wine"
    ):  # multiclass: every class's probability, the label is a class name
        assert all(set(a["probabilities"]) == {"class_0", "class_1", "class_2"} for a in answers)
        accuracy = np.mean(
            [a["prediction"] == y for a, y in zip(answers, frame["target"], strict=True)]
        )
        assert accuracy > 0.9, accuracy

    labels = [
        {"prediction_id": a["prediction_id"], "label": (y.item() if hasattr(y, "item") else y)}
        for a, y in zip(answers, frame["target"], strict=True)
    ]
    fb = httpx.post(f"{served.url}/feedback", json={"labels": labels}, headers=AUTH, timeout=30)
    assert fb.status_code == 200, fb.text
    assert fb.json()["recorded"] == len(labels) and fb.json()["unknown"] == 0

    state = served.settings.state
    deadline = time.monotonic() + 30  # the service flushes its log about once a second
    while True:  # read at least once, until both are complete or the deadline passes
        logged, labelled = (
            read_predictions(state.predictions, served.table.name),
            read_feedback(state.feedback, served.table.name),
        )
        complete = len(logged) >= len(frame) and len(labelled) >= len(frame)
        if complete or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    assert set(logged["prediction_id"]) >= {a["prediction_id"] for a in answers}
    assert len(labelled) >= len(frame)

    result = monitor_flow(served.table.name, window_size=len(frame))
    assert result.status != "skipped", result.reason
    assert result.drift is not None and result.drift.window.rows == len(frame)
    assert result.drift.quality is not None and result.drift.quality.labelled_rows >= 30
    assert result.report_path, result

    out = CliRunner().invoke(
        app, ["lineage", "--prediction-id", answers[0]["prediction_id"], "--json"]
    )
    assert out.exit_code == 0, out.output
    chain = json.loads(out.stdout)
    assert chain["model_version"] == served.version and chain["dataset_md5"] == served.md5
    assert chain["dataset_name"] == served.table.name and chain["run_id"]

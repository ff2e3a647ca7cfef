"""Features named like the prediction log's own columns, through the whole loop on real services.

scikit-learn's breast-cancer table (no download) with four features renamed ``score``, ``timestamp``,
``label`` and ``prediction``; the target keeps its own name. It goes ingest (contract + DVC) -> train
flow (MLflow, gate, champion) -> deploy flow (a real ``bentoml serve`` on loopback) -> predict ->
feedback -> monitor flow -> retrain flow, which builds a new dataset version from the feedback joined
to the log and trains on it. The log must keep each feature's values apart from the model's output,
its timestamp and the feedback label all the way. The service is stopped by pid at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from mloop.core.processes import read_pid, stop_pid
from mloop.core.settings import Settings
from tests.e2e.helpers import AUTH, e2e_home

pytestmark = pytest.mark.integration
NAME = "clashing"
RENAMED = {
    "mean radius": "score",
    "mean texture": "timestamp",
    "mean perimeter": "label",
    "mean area": "prediction",
}
CLASHING = list(RENAMED.values())


@dataclass
class Served:
    settings: Settings
    frame: pd.DataFrame
    url: str
    version: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, prefect_server) -> Iterator[Served]:
    from sklearn import datasets

    from flows.deploy import deploy_flow
    from flows.train import train_flow
    from mloop.core.datasets import ingest_dataset

    bunch: Any = datasets.load_breast_cancer(as_frame=True)  # a Bunch; the stubs say tuple
    frame = bunch.frame.rename(columns=RENAMED)
    settings, env = e2e_home(tmp_path_factory.mktemp("e2e-clashing"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        src = settings.state.tmp / f"{NAME}.csv"
        frame.to_csv(src, index=False)
        md5 = ingest_dataset(settings, src, dataset=NAME, target="target").version.md5
        trained = train_flow(dataset=NAME, version=md5)
        assert trained.promoted, trained.gate
        try:
            deployed = deploy_flow(name=NAME)
            assert deployed.version == trained.version, deployed
            url = f"http://127.0.0.1:{settings.serve_port}"
            yield Served(settings, frame, url, str(trained.version))
        finally:
            pid = read_pid(settings.state.run, "serve")
            if pid is not None:
                stop_pid(pid, first=15)


def _traffic(frame: pd.DataFrame) -> pd.DataFrame:
    """300 rows of the table, each with the ``score`` of the row before it: values the contract
    accepts, in rows the dataset does not hold yet (so the retrain has new rows to learn from)."""
    rows = frame.sample(n=300, random_state=0).reset_index(drop=True)
    rows["score"] = np.roll(rows["score"].to_numpy(), 1)
    return rows


def _predict_and_label(served: Served, traffic: pd.DataFrame) -> list[dict]:
    records = json.loads(str(traffic.drop(columns=["target"]).to_json(orient="records")))
    answers: list[dict] = []
    for start in range(0, len(records), 100):
        resp = httpx.post(
            f"{served.url}/predict",
            json={"records": records[start : start + 100]},
            headers=AUTH,
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        answers.extend(resp.json())
    labels = [
        {"prediction_id": a["prediction_id"], "label": int(y)}
        for a, y in zip(answers, traffic["target"], strict=True)
    ]
    fb = httpx.post(f"{served.url}/feedback", json={"labels": labels}, headers=AUTH, timeout=30)
    assert fb.status_code == 200, fb.text
    assert fb.json()["recorded"] == len(labels), fb.json()
    return answers


def _logged(served: Served, rows: int) -> pd.DataFrame:
    from serving.log.feedback import read_feedback
    from serving.log.predictions import read_predictions

    state = served.settings.state
    deadline = time.monotonic() + 30  # the service flushes its log about once a second
    while True:
        logged = read_predictions(state.predictions, NAME)
        labelled = read_feedback(state.feedback, NAME)
        if (len(logged) >= rows and len(labelled) >= rows) or time.monotonic() > deadline:
            return logged
        time.sleep(0.5)


def test_serve_feedback_monitor_and_retrain_keep_the_features_apart(served: Served) -> None:
    from flows.monitor import monitor_flow
    from flows.retrain import retrain_flow
    from mloop.core.datasets import read_version
    from serving.log.layout import split_log

    traffic = _traffic(served.frame)
    answers = _predict_and_label(served, traffic)
    assert {a["model_version"] for a in answers} == {served.version}

    logged = _logged(served, len(traffic))
    meta, inputs = split_log(logged)
    by_id = {a["prediction_id"]: i for i, a in enumerate(answers)}
    order = [by_id[pid] for pid in meta["prediction_id"]]
    for name in CLASHING:  # the logged feature is the one sent, not the log's column of that name
        assert np.allclose(inputs[name].to_numpy(), traffic[name].to_numpy()[order]), name
    assert meta["prediction"].tolist() == [answers[i]["prediction"] for i in order]
    assert isinstance(meta["timestamp"].dtype, pd.DatetimeTZDtype)

    checked = monitor_flow(NAME, window_size=len(traffic))
    assert checked.drift is not None, checked.reason
    columns = {c.column: c.is_prediction for c in checked.drift.columns}
    assert all(columns[name] is False for name in CLASHING), columns
    assert columns["log.prediction"] is True
    assert checked.drift.quality is not None and checked.drift.quality.labelled_rows >= 30

    retrained = retrain_flow(NAME, trigger="manual", force=True)
    assert retrained.status == "trained", retrained.reason
    assert retrained.dataset_md5 and retrained.trained_version
    version = read_version(served.settings, NAME, retrained.dataset_md5)
    fed_back = version.merge(traffic, on=list(served.frame.columns), how="inner")
    assert len(fed_back) == len(traffic)  # every labelled row, with the features as sent

"""Multiclass end to end on a real table: scikit-learn's iris with string labels -> ingest (contract +
DVC) -> train flow (MLflow on SQLite, the session Prefect server) promotes v1 with holdout accuracy > 0.9."""

from __future__ import annotations

import pytest

from flows.train import train_flow
from mloop.core.datasets import ingest_dataset
from models import registry as R

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _server(prefect_server) -> None:
    return None


def test_iris_with_string_labels_trains_and_promotes(models_settings) -> None:
    from sklearn.datasets import load_iris
    from sklearn.utils import Bunch

    s, name = models_settings, "iris"
    bunch = load_iris(as_frame=True)
    assert isinstance(bunch, Bunch)  # return_X_y=False: the Bunch, not the (X, y) tuple
    df = bunch.frame.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    df["target"] = bunch.target_names[bunch.target.to_numpy()]  # setosa / versicolor / virginica
    path = s.state.tmp / "iris.parquet"
    df.to_parquet(path, index=False)
    md5 = ingest_dataset(s, path, dataset=name, target="target", task="classification").version.md5

    result = train_flow(dataset=name, version=md5)
    assert result.gate is not None and result.version is not None
    assert result.decision == "promote" and result.promoted and result.champion == result.version, (
        result.gate.summary()
    )
    assert result.metrics["accuracy"] > 0.9 and result.metrics["roc_auc"] > 0.95, result.metrics
    gate = result.gate
    assert gate is not None and gate.reference == "baseline" and gate.metric == "roc_auc"
    assert gate.reference_metrics["roc_auc"] == pytest.approx(0.5)  # the class-prior dummy
    info = R.get_version_info(s.tracking_uri, name, result.version)
    assert info.metrics["accuracy"] == pytest.approx(result.metrics["accuracy"], abs=1e-5)

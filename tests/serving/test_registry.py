"""Serving on the real pipeline: data helper's ingest (DVC), models helper's train flow (MLflow
registry), package from the registry, deploy flow (start, then zero-downtime rollout), and
``mloop lineage`` resolving a served prediction down to the data md5."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from mloop.core.processes import free_port, read_pid, stop_pid
from mloop.core.settings import Settings

pytestmark = pytest.mark.integration
NAME = "loans"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, prefect_server) -> Iterator[dict]:
    """One MLOOP_HOME + project with a trained champion; the service the deploy flow starts is
    stopped by pid at the end."""
    from flows.train import train_flow
    from mloop.core.datasets import ingest_dataset
    from mloop.core.generate import generate
    from tests.helpers import make_project

    root = tmp_path_factory.mktemp("serving-registry")
    project = make_project(root / "project")
    settings = Settings(home=root / "home", project_dir=project, serve_port=free_port())
    settings.state.ensure()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOOP_HOME", str(settings.state.root))
        mp.setenv("MLOOP_PROJECT_DIR", str(project))
        mp.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)
        mp.setenv("MLOOP_SERVE_PORT", str(settings.serve_port))
        mp.setenv("BENTOML_HOME", str(settings.state.bentoml_home))
        src = settings.state.tmp / "baseline.parquet"
        generate("baseline", rows=3000, seed=7).to_parquet(src, index=False)
        md5 = ingest_dataset(settings, src, dataset=NAME).version.md5
        trained = train_flow(dataset=NAME, version=md5)
        assert trained.champion == trained.version, trained
        try:
            yield {"settings": settings, "md5": md5, "version": trained.version}
        finally:
            pid = read_pid(settings.state.run, "serve")
            if pid is not None:
                stop_pid(pid, first=15)


def test_package_from_registry_labels_lineage_and_reuses(stack: dict) -> None:
    from serving.bundle.package import package_model

    s = stack["settings"]
    first = package_model(s, NAME)
    assert first.version == stack["version"] and first.backend == "onnx", first.fallback_reason
    assert first.labels["mloop.dataset_md5"] == stack["md5"]
    assert first.labels["mloop.mlflow_run_id"]
    assert first.bento_tag == f"{NAME}-service:v{first.version}"
    assert first.onnx_max_abs_diff is not None and first.onnx_max_abs_diff <= 1e-5
    bento_root = s.state.bentoml_home / "bentos"
    assert not str(bento_root).startswith(
        str(s.project_dir)
    )  # BENTOML_HOME outside any build context
    again = package_model(s, NAME)
    assert again.created is False and again.model_tag == first.model_tag


def test_deploy_starts_then_rolls_out_and_lineage_resolves_to_the_data_md5(stack: dict) -> None:
    from flows.deploy import deploy_flow
    from flows.promote import promote_flow
    from flows.train import train_flow
    from mloop.cli.app import app
    from models.spec import ModelSpec

    s = stack["settings"]
    url = f"http://127.0.0.1:{s.serve_port}"
    started = deploy_flow(name=NAME)
    assert started.action == "started" and started.version == stack["version"]
    auth = {
        "authorization": f"Bearer {s.bearer_token()}"
    }  # the generated platform secret (no MLOOP_API_TOKEN here)
    resp = httpx.post(f"{url}/predict", json={"records": [_record(s)]}, headers=auth, timeout=10)
    assert resp.status_code == 200, resp.text
    answer = resp.json()[0]
    assert answer["model_version"] == stack["version"]

    # a second version, made champion, is rolled into the same running service
    other = train_flow(
        dataset=NAME,
        version=stack["md5"],
        specs=[ModelSpec(estimator="random_forest", params={"n_estimators": 40, "max_depth": 6})],
        promote=False,
    )
    assert other.version is not None
    promote_flow(name=NAME, version=other.version, reason="serving test")
    rolled = deploy_flow(name=NAME)
    assert rolled.action == "rolled-out" and rolled.previous_version == stack["version"]
    assert httpx.get(f"{url}/model").json()["model_version"] == other.version
    again = deploy_flow(name=NAME)
    assert again.action == "already-serving"

    # lineage of the first served prediction, through the CLI
    deadline = time.monotonic() + 15
    while True:
        out = CliRunner().invoke(
            app, ["lineage", "--prediction-id", answer["prediction_id"], "--json"]
        )
        if out.exit_code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert out.exit_code == 0, out.output
    chain = json.loads(out.stdout)
    assert chain["model_version"] == stack["version"]
    assert chain["dataset_md5"] == stack["md5"]
    assert chain["run_id"] and chain["dataset_name"] == NAME
    assert chain["dvc_pointer"].endswith(".dvc")
    missing = CliRunner().invoke(app, ["lineage", "--prediction-id", "nope"])
    assert missing.exit_code == 3


def _record(s: Settings) -> dict:
    """One request record from the dataset's contract (first row of the generated data)."""
    from mloop.core.contract import load_contract
    from mloop.core.generate import generate

    contract = load_contract(s.project_dir, NAME)
    row = generate("baseline", rows=5, seed=1).iloc[0]
    rec = {}
    for col in contract.feature_columns:
        value = row[col.name]
        if value is None or (isinstance(value, float) and value != value):
            rec[col.name] = None
        elif col.kind == "integer":
            rec[col.name] = int(value)
        elif col.kind == "numeric":
            rec[col.name] = float(value)
        elif col.kind == "boolean":
            rec[col.name] = bool(value)
        else:
            rec[col.name] = str(value)
    return rec

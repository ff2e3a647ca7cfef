"""Train flow on real parts: DVC-versioned data (the data helper's ingest), MLflow on SQLite, the
session Prefect server. Each test uses its own dataset name inside one module-wide MLOOP_HOME."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.train import GateParams, train_flow
from models import registry as R
from models.audit import read_audit
from models.spec import ModelSpec
from tests.models.helpers import ingest_frame, synth_frame

pytestmark = pytest.mark.integration
ROWS = 2500


@pytest.fixture(autouse=True)
def _server(prefect_server) -> None:
    return None


def test_better_promoted_worse_rejected(models_settings) -> None:
    s, name = models_settings, "loans"
    weak = ingest_frame(s, synth_frame(ROWS, seed=1, scramble_feature="income"), name)
    first = train_flow(dataset=name, version=weak)
    assert first.decision == "promote" and first.promoted and first.champion == first.version
    assert first.gate is not None and first.gate.reference == "baseline"

    clean = ingest_frame(s, synth_frame(ROWS, seed=2), name)
    better = train_flow(dataset=name, version=clean)
    assert better.gate is not None
    assert better.decision == "promote", better.gate.summary()
    assert better.gate.reference == "champion" and better.gate.champion_version == first.version
    assert better.champion == better.version

    worse_md5 = ingest_frame(s, synth_frame(ROWS, seed=3, scramble_feature="income"), name)
    worse = train_flow(dataset=name, version=worse_md5)
    assert worse.decision == "reject" and not worse.promoted
    assert worse.champion == better.version
    assert worse.version is not None
    # the rejected challenger stays registered, with its decision recorded
    info = R.get_version_info(s.tracking_uri, name, worse.version)
    assert info.decision == "reject" and "challenger" in info.aliases and info.data_md5 == worse_md5
    assert R.get_version_info(s.tracking_uri, name, "previous-champion").version == first.version
    records = read_audit(s.state.audit, name)
    assert [(r.from_version, r.to_version) for r in records] == [
        (None, first.version),
        (first.version, better.version),
    ]


def test_first_model_must_beat_dummy(models_settings) -> None:
    s, name = models_settings, "coinflips"
    df = synth_frame(ROWS, seed=4)
    df["target"] = (
        __import__("numpy").random.default_rng(0).integers(0, 2, len(df))
    )  # no signal at all
    result = train_flow(dataset=name, version=ingest_frame(s, df, name))
    assert result.decision == "reject" and result.champion is None
    assert result.gate is not None and result.version is not None
    assert result.gate.reference == "baseline"
    assert R.get_version_info(s.tracking_uri, name, result.version).decision == "reject"


def test_same_data_other_seed_is_noise_not_promoted(models_settings) -> None:
    s, name = models_settings, "seeds"
    md5 = ingest_frame(s, synth_frame(ROWS, seed=5), name)
    spec = ModelSpec(estimator="random_forest", params={"n_estimators": 40, "max_depth": 6})
    first = train_flow(dataset=name, version=md5, specs=[spec], seed=1)
    assert first.promoted
    second = train_flow(dataset=name, version=md5, specs=[spec], seed=2)
    assert second.gate is not None
    assert second.version != first.version and second.decision == "reject", second.gate.summary()
    assert second.champion == first.version


def test_slice_regression_blocks(models_settings) -> None:
    s, name = models_settings, "segments"
    v1 = ingest_frame(
        s, synth_frame(4000, seed=6, segment_signals=True, scramble_segment="A"), name
    )
    first = train_flow(dataset=name, version=v1, gate_params=GateParams(min_slice_rows=50))
    assert first.promoted
    v2 = ingest_frame(
        s, synth_frame(4000, seed=7, segment_signals=True, scramble_segment="B"), name
    )
    blocked = train_flow(dataset=name, version=v2, gate_params=GateParams(min_slice_rows=50))
    g = blocked.gate
    assert g is not None
    assert g.gain > 0 and g.ci_low > 0, g.summary()  # better overall ...
    assert blocked.decision == "reject" and any(
        x.blocked and x.level == "B" for x in g.slices
    )  # ... but not on B
    assert blocked.champion == first.version
    tolerant = train_flow(
        dataset=name,
        version=v2,
        gate_params=GateParams(min_slice_rows=50, slice_tolerance=1.0),
        seed=43,
    )  # other seed: a new run (LR ignores it, so the same model)
    assert tolerant.decision == "promote" and tolerant.champion == tolerant.version


def test_retrain_identical_inputs_reuses_force_retrains(models_settings) -> None:
    s, name = models_settings, "idem"
    md5 = ingest_frame(s, synth_frame(ROWS, seed=8), name)
    first = train_flow(dataset=name, version=md5)
    again = train_flow(dataset=name, version=md5)
    assert again.reused and again.version == first.version and again.run_id == first.run_id
    assert [v.version for v in R.list_versions(s.tracking_uri, name)] == [first.version]
    forced = train_flow(dataset=name, version=md5, force=True)
    assert not forced.reused and forced.version != first.version
    assert len(R.list_versions(s.tracking_uri, name)) == 2


def test_run_records_lineage_artifacts_and_skops_format(models_settings) -> None:
    s, name = models_settings, "lineage"
    md5 = ingest_frame(s, synth_frame(ROWS, seed=9), name)
    specs = [ModelSpec(), ModelSpec(estimator="hist_gradient_boosting", params={"max_iter": 30})]
    result = train_flow(dataset=name, version=md5, specs=specs, trigger="test")
    assert len(result.candidates) == 2 and len({c.run_id for c in result.candidates}) == 2
    assert result.run_id is not None and result.version is not None
    client = R.mlflow_client(s.tracking_uri)
    run = client.get_run(result.run_id)
    tags = run.data.tags
    assert tags["mloop.dataset_md5"] == md5 and tags["mloop.trigger"] == "test"
    assert tags["mloop.code_commit"] and tags["mloop.prefect_flow_run_id"]
    assert run.data.params["split_test_size"] == "0.2" and run.data.params["split_seed"] == "42"
    assert run.inputs is not None and run.inputs.dataset_inputs[0].dataset.digest == md5
    files = {f.path for f in client.list_artifacts(result.run_id, "plots")}
    assert {
        "plots/roc.png",
        "plots/pr.png",
        "plots/confusion_matrix.png",
        "plots/calibration.png",
        "plots/feature_importance.png",
    } <= files
    report = json.loads(
        Path(client.download_artifacts(result.run_id, "gate_report.json")).read_text()
    )
    assert report["decision"] == result.decision
    # stored format: skops, no pickle anywhere in the model folder
    folder = R.model_dir(s.tracking_uri, name, result.version)
    assert R.stored_format(folder) == "skops"
    assert (folder / "model.skops").exists() and not list(folder.glob("*.pkl"))
    pipe = R.load_pipeline(s.tracking_uri, name, "champion")
    assert hasattr(pipe, "predict_proba")
    lineage = R.get_lineage(s.tracking_uri, name, result.version)
    assert lineage.dataset_md5 == md5 and lineage.run_id == result.run_id
    assert R.get_version_info(s.tracking_uri, name, result.version).split == (0.2, 42)


def test_failed_run_never_moves_champion_and_is_not_reused(models_settings, monkeypatch) -> None:
    s, name = models_settings, "failing"
    weak = ingest_frame(s, synth_frame(ROWS, seed=12, scramble_feature="income"), name)
    first = train_flow(dataset=name, version=weak)
    assert first.promoted
    clean = ingest_frame(s, synth_frame(ROWS, seed=13), name)

    def broken(*args, **kwargs):
        raise RuntimeError("registry went away")

    monkeypatch.setattr(R, "register_version", broken)
    with pytest.raises(RuntimeError, match="registry went away"):
        train_flow(dataset=name, version=clean)
    monkeypatch.undo()
    assert R.champion_version(s.tracking_uri, name) == first.version
    client = R.mlflow_client(s.tracking_uri)
    exp = client.get_experiment_by_name(name)
    assert exp is not None
    failed = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FAILED'")
    assert len(failed) == 1 and failed[0].data.tags["mloop.dataset_md5"] == clean
    retry = train_flow(dataset=name, version=clean)  # the failed run is not a cache hit
    assert not retry.reused and retry.promoted and retry.champion == retry.version


def test_specs_fit_on_a_dask_cluster(models_settings) -> None:
    """The same flow, with its task runner switched to Dask, fits every spec on the cluster."""
    from distributed import LocalCluster
    from prefect_dask.task_runners import DaskTaskRunner

    from flows.train import task_runner

    assert isinstance(task_runner("local"), DaskTaskRunner)
    assert not isinstance(task_runner(""), DaskTaskRunner)
    s, name = models_settings, "dasked"
    md5 = ingest_frame(s, synth_frame(ROWS, seed=12), name)
    specs = [
        ModelSpec(estimator="logistic_regression"),
        ModelSpec(estimator="random_forest", params={"n_estimators": 20, "max_depth": 4}),
    ]
    # entered as its own name: Cluster.__enter__ is unannotated (pyright reads a coroutine)
    cluster = LocalCluster(
        n_workers=1,
        threads_per_worker=2,
        processes=False,
        dashboard_address=None,  # pyright: ignore[reportArgumentType]  # why: distributed annotates str, but reads None as no dashboard (LocalCluster checks `is not None`)
    )
    with cluster:
        runner = task_runner(cluster.scheduler_address)
        assert isinstance(runner, DaskTaskRunner)
        result = train_flow.with_options(
            task_runner=runner  # pyright: ignore[reportArgumentType]  # why: Prefect types this TaskRunner[PrefectFuture] with an invariant parameter, so Dask's runner (PrefectDaskFuture) never fits; runtime takes it
        )(dataset=name, version=md5, specs=specs)
        # the fits ran as tasks of this cluster's scheduler
        assert {c.spec.estimator for c in result.candidates} == {
            "logistic_regression",
            "random_forest",
        }
        assert all(not c.reused for c in result.candidates)
        assert cluster.scheduler is not None  # processes=False: the scheduler is in this process
        # every task the cluster ran, by Prefect task name
        prefixes = cluster.scheduler.task_prefixes
        assert {"fit", "gate"} <= set(prefixes), dict(prefixes)


def test_a_promotion_leaves_the_model_packaged_and_its_monitor_reference_scored(
    models_settings, monkeypatch
) -> None:
    """With MLOOP_PACKAGE_ON_PROMOTE (a platform's default) the promoted version is packaged for the deploy flow
    it triggers, and its monitor reference is cached exactly as the monitor computes it from the registry and
    DVC; a rejected version gets neither."""
    import pandas as pd

    from mloop.core.contract import load_contract
    from monitoring.checks import MonitorOptions
    from monitoring.reference_cache import cache_path, scored_reference
    from serving.bundle.local_store import model_in_store
    from serving.bundle.package import model_tag, package_model

    s, name, options = models_settings, "prepared", MonitorOptions()
    monkeypatch.setenv("MLOOP_PACKAGE_ON_PROMOTE", "true")
    good = train_flow(dataset=name, version=ingest_frame(s, synth_frame(ROWS, seed=11), name))
    assert good.promoted and good.version is not None
    assert model_in_store(s.state.bentoml_home, model_tag(name, good.version))
    assert not package_model(
        s, name, good.version, build=False
    ).created  # the deploy flow's step reuses it
    path = cache_path(
        s.state.root, name, good.version, good.data_md5, options.seed, options.reference_rows
    )
    cached = pd.read_parquet(path)
    path.unlink()
    fresh = scored_reference(
        s,
        name,
        good.version,
        name,
        good.data_md5,
        load_contract(s.project_dir, name),
        seed=options.seed,
        rows=options.reference_rows,
    )
    assert len(cached) == ROWS
    pd.testing.assert_frame_equal(cached, fresh)

    worse = train_flow(
        dataset=name,
        version=ingest_frame(s, synth_frame(ROWS, seed=12, scramble_feature="income"), name),
    )
    assert worse.decision == "reject" and not worse.promoted and worse.version is not None
    assert not model_in_store(s.state.bentoml_home, model_tag(name, worse.version))
    assert not cache_path(
        s.state.root, name, worse.version, worse.data_md5, options.seed, options.reference_rows
    ).exists()

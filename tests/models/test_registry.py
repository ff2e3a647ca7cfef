"""Registry alias moves on a real MLflow SQLite store: promote, rollback, audit order, the lock
under two racing processes, and the no-pickle loading rule."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mloop.core.errors import MloopError, NotFoundError, NotReadyError
from mloop.core.settings import Settings
from mloop.core.tags import TAG_LAST_CHANGE
from models import registry as R
from models.audit import read_audit


@pytest.fixture
def settings(models_settings: Settings) -> Settings:
    """One SQLite store per module (creating one costs seconds); each test uses its own model name."""
    return models_settings


def _register(settings: Settings, name: str, n: int) -> list[str]:
    return [
        R.register_version(
            settings.tracking_uri,
            name,
            source=str(settings.state.tmp / f"m{i}"),
            run_id="",
            tags={"mloop.metric.roc_auc": str(0.7 + i / 100), "mloop.dataset_md5": f"md5-{i}"},
        ).version
        for i in range(n)
    ]


def test_promote_then_rollback_restores_previous_and_audits_in_order(settings: Settings) -> None:
    uri, name = settings.tracking_uri, "m0"
    v1, v2, _ = _register(settings, name, 3)
    R.promote(uri, settings.state, name, v1, reason="first", actor="alice")
    R.promote(
        uri, settings.state, name, v2, reason="better", actor="bob", gate_metrics={"gain": 0.01}
    )
    assert R.get_version_info(uri, name, "champion").version == v2
    assert R.get_version_info(uri, name, "previous-champion").version == v1
    record = R.rollback(uri, settings.state, name, reason="bad latency", actor="carol")
    assert (record.from_version, record.to_version) == (v2, v1)
    assert R.champion_version(uri, name) == v1
    log = read_audit(settings.state.audit, name)
    assert [(r.action, r.from_version, r.to_version, r.actor) for r in log] == [
        ("promote", None, v1, "alice"),
        ("promote", v1, v2, "bob"),
        ("rollback", v2, v1, "carol"),
    ]
    assert log[1].gate_metrics == {"gain": 0.01} and log[2].reason == "bad latency"
    assert log[0].when <= log[1].when <= log[2].when
    assert "rollback" in R.mlflow_client(uri).get_registered_model(name).tags[TAG_LAST_CHANGE]
    assert R.get_version_info(uri, name, v2).tags["mloop.rolled_back"] == "bad latency"
    with pytest.raises(NotReadyError, match="no previous champion"):
        R.rollback(uri, settings.state, name, reason="again", actor="carol")


def test_list_versions_reports_aliases_metrics_md5(settings: Settings) -> None:
    uri = settings.tracking_uri
    v1, v2 = _register(settings, "m1", 2)
    R.promote(uri, settings.state, "m1", v1, reason="r", actor="a")
    R.set_challenger(uri, settings.state, "m1", v2)
    rows = {v.version: v for v in R.list_versions(uri, "m1")}
    assert rows[v1].aliases == ["champion"] and rows[v2].aliases == ["challenger"]
    assert rows[v2].metrics == {"roc_auc": pytest.approx(0.71)} and rows[v2].data_md5 == "md5-1"
    assert R.list_versions(uri, "nothing") == []


def test_promote_unknown_version_is_refused(settings: Settings) -> None:
    _register(settings, "m2", 1)
    with pytest.raises(NotFoundError):
        R.promote(settings.tracking_uri, settings.state, "m2", "9", reason="r", actor="a")


def test_stale_gate_does_not_move_champion(settings: Settings) -> None:
    uri = settings.tracking_uri
    v1, v2, v3 = _register(settings, "m3", 3)
    R.promote(uri, settings.state, "m3", v1, reason="r", actor="a")
    R.promote(uri, settings.state, "m3", v2, reason="r", actor="a")
    record = R.promote(
        uri, settings.state, "m3", v3, reason="gated against v1", actor="flow", expected_champion=v1
    )
    assert record.outcome == "skipped" and "champion changed" in record.detail
    assert R.champion_version(uri, "m3") == v2
    assert read_audit(settings.state.audit, "m3")[-1].outcome == "skipped"


RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mloop.core.paths import StatePaths
    from models.registry import mlflow_client, promote
    uri, root, version, go, name = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), sys.argv[5]
    mlflow_client(uri).get_registered_model(name)  # imports done, store open
    go.with_name(f"ready-{version}").touch()
    while not go.exists():
        time.sleep(0.01)
    record = promote(uri, StatePaths(root=Path(root)), name, version, reason=f"race {version}", actor=f"proc-{version}")
    print(record.outcome)
    """
)


def test_two_processes_racing_leave_one_champion_and_a_consistent_log(
    settings: Settings, tmp_path: Path
) -> None:
    uri = settings.tracking_uri
    v1, v2, v3 = _register(settings, "m4", 3)
    R.promote(uri, settings.state, "m4", v1, reason="start", actor="a")
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, uri, str(settings.state.root), v, str(go), "m4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for v in (v2, v3)
    ]
    deadline = time.monotonic() + 120
    while (
        not all((tmp_path / f"ready-{v}").exists() for v in (v2, v3))
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    go.touch()  # both are ready: release them at the same moment
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert [o[0].strip() for o in outputs] == ["applied", "applied"]
    log = read_audit(settings.state.audit, "m4")
    assert len(log) == 3 and {r.to_version for r in log[1:]} == {v2, v3}
    # serialized: each change starts from the previous one's result
    assert log[1].from_version == v1 and log[2].from_version == log[1].to_version
    champion = R.champion_version(uri, "m4")
    assert champion == log[2].to_version
    assert R.get_version_info(uri, "m4", "previous-champion").version == log[1].to_version
    aliases = R.mlflow_client(uri).get_registered_model("m4").aliases
    assert str(aliases["champion"]) == champion and list(aliases) == [
        "champion",
        "previous-champion",
    ]


def test_loading_refuses_pickle(tmp_path: Path) -> None:
    from mlflow.sklearn import save_model
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    save_model(model, str(tmp_path / "m5"), serialization_format="cloudpickle", pip_requirements=[])
    assert R.stored_format(tmp_path / "m5") == "cloudpickle"
    with pytest.raises(MloopError, match="only skops"):
        R.load_pipeline_from_dir(tmp_path / "m5")


def test_version_info_aliases_come_with_the_version(settings: Settings) -> None:
    """By number and by alias, a version reports exactly its own aliases (read from the version itself)."""
    uri = settings.tracking_uri
    v1, v2 = _register(settings, "m-aliases", 2)
    R.promote(uri, settings.state, "m-aliases", v1, reason="r", actor="a")
    R.promote(uri, settings.state, "m-aliases", v2, reason="r", actor="a")
    assert R.get_version_info(uri, "m-aliases", v1).aliases == ["previous-champion"]
    assert R.get_version_info(uri, "m-aliases", "champion").aliases == ["champion"]
    R.set_challenger(uri, settings.state, "m-aliases", v2)
    assert R.get_version_info(uri, "m-aliases", v2).aliases == ["challenger", "champion"]


def _stored_model_run(settings: Settings, tmp_path: Path) -> tuple[str, Path]:
    """A run with a ``model`` folder artifact in a local store: (its ``runs:/`` URI, the stored folder)."""
    from models.tracking import ensure_experiment, start_run

    uri = settings.tracking_uri
    exp = ensure_experiment(uri, "m-download", settings.state.mlflow_artifact_root)
    run_id = start_run(uri, exp, run_name="r", tags={})
    source = tmp_path / "model"
    source.mkdir()
    (source / "MLmodel").write_text("flavors: {}\n")
    R.mlflow_client(uri).log_artifacts(run_id, str(source), "model")
    artifact_uri = R.mlflow_client(uri).get_run(run_id).info.artifact_uri
    assert artifact_uri is not None
    stored = Path(artifact_uri.removeprefix("file://")) / "model"
    assert (stored / "MLmodel").is_file()
    return f"runs:/{run_id}/model", stored


def test_artifact_dir_keeps_a_download_in_the_cache_and_reuses_it(
    settings: Settings, tmp_path: Path
) -> None:
    import shutil

    model_uri, stored = _stored_model_run(settings, tmp_path)
    cache = tmp_path / "cache"
    first = R.artifact_dir(model_uri, settings.tracking_uri, cache_root=cache)
    assert first == R.artifact_cache_dir(cache, model_uri, settings.tracking_uri)
    assert (first / "MLmodel").read_text() == "flavors: {}\n"
    assert [p.name for p in cache.iterdir()] == [first.name]  # no staging folder left behind
    shutil.rmtree(stored)  # the store no longer has it: only the cache can answer now
    assert R.artifact_dir(model_uri, settings.tracking_uri, cache_root=cache) == first
    assert (first / "MLmodel").is_file()
    with pytest.raises(Exception):  # noqa: B017 - MLflow's own error type: without the cache it downloads again
        R.artifact_dir(model_uri, settings.tracking_uri)

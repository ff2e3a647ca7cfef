"""BentoML models shared through a real S3 in team mode (issue 13, item 1): serving/bundle/remote_models.py.

One module-scoped infra (:func:`tests.infra_fixture.running_infra`: PostgreSQL + SeaweedFS S3 on loopback),
the team settings in this process's environment for the module only. Home A packages ``loans:v1``; the
export appears under the bucket's ``bentoml/`` prefix; a fresh home B imports it (``ensure_local``) and a
child process with B's BENTOML_HOME loads it and predicts exactly what A's store does, lineage labels
included. Exporting again uploads nothing; a tag S3 does not have is a clear MloopError; an object that
holds another tag is refused; a single machine never reaches S3 (the pure decision functions).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mloop.core.errors import MloopError
from mloop.core.paths import CODE_ROOT, with_code_root
from mloop.core.settings import Settings
from mloop.core.tags import TAG_DATASET_MD5, TAG_MODEL_VERSION, TAG_RUN_ID
from mloop.core.team import ArtifactLayout
from tests.serving.helpers import fit, make_contract

pytest.importorskip("boto3", reason="team mode tests need boto3")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TAG = "loans:v1"
LINEAGE = {
    "run_id": "run-remote-1",
    "dataset_name": "loans",
    "dataset_md5": "a" * 32,
    "code_commit": "c0ffee",
}

PREDICT = """
import json, sys
from pathlib import Path
import bentoml, pandas as pd
from serving.bundle.onnx_model import columns_from_frame, input_kinds, load_predictor, read_contract
model = bentoml.models.get(sys.argv[1])
path = Path(model.path)
out = load_predictor(path).predict(columns_from_frame(pd.read_parquet(sys.argv[2]), list(input_kinds(read_contract(path)))))
print(json.dumps({"tag": str(model.tag), "labels": dict(model.info.labels), "outputs": vars(out)}, default=str))
"""


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A running infra; its settings (secrets: not yielded, never printed) set in this process for the module."""
    from tests.infra_fixture import running_infra

    with (
        running_infra(tmp_path_factory.mktemp("infra")) as found,
        pytest.MonkeyPatch.context() as mp,
    ):
        for key, value in found.env.items():
            mp.setenv(key, value)
        yield


def team_settings(root: Path) -> Settings:
    """Settings of a host with its own MLOOP_HOME and the team settings of the environment."""
    settings = Settings(home=root / "home", project_dir=root)
    settings.state.ensure()
    return settings


@pytest.fixture(scope="module")
def home_a(team: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, pd.DataFrame]:
    """Home A with ``loans:v1`` packaged (model only, no Bento); returns (settings, holdout)."""
    from serving.bundle.package import package_pipeline

    settings = team_settings(tmp_path_factory.mktemp("home-a"))
    pipe, _, hold = fit("logreg", seed=0)
    package_pipeline(
        settings,
        name="loans",
        version="1",
        pipeline=pipe,
        contract=make_contract(),
        holdout=hold,
        lineage=LINEAGE,
        build=False,
    )
    return settings, hold


@pytest.fixture(scope="module")
def on_a(
    home_a: tuple[Settings, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    """The holdout's first 200 rows (a parquet file) and what ``loans:v1`` in A's store predicts for them."""
    settings_a, hold = home_a
    frame = tmp_path_factory.mktemp("frame") / "holdout.parquet"
    hold.head(200).to_parquet(frame)
    return frame, predict_in_child(settings_a, TAG, frame)


def s3(settings: Settings) -> tuple[Any, ArtifactLayout]:
    from serving.bundle.remote_models import _client, remote_layout

    layout = remote_layout(settings)
    assert layout is not None
    return _client(layout), layout


def predict_in_child(settings: Settings, tag: str, frame_path: Path) -> dict[str, Any]:
    """Load ``tag`` with ``bentoml.models.get`` in a child whose BENTOML_HOME is ``settings``' store."""
    env = with_code_root({**os.environ, **settings.service_env()})
    proc = subprocess.run(
        [sys.executable, "-c", PREDICT, tag, str(frame_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(CODE_ROOT),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- pure: single machine


def test_single_machine_never_reaches_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without team settings: no layout, no client, no export, and ensure_local is the store check."""
    import serving.bundle.remote_models as remote
    from serving.bundle.package import _export

    for key in ("MLOOP_DATABASE_URL", "MLOOP_ARTIFACTS_URI", "MLOOP_S3_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    settings = Settings(home=tmp_path / "home", project_dir=tmp_path)

    def no_client(layout: ArtifactLayout) -> Any:
        raise AssertionError("an S3 client was created on a single machine")

    monkeypatch.setattr(remote, "_client", no_client)
    assert remote.remote_layout(settings) is None
    assert remote.ensure_local(settings, TAG) is False
    assert remote.ensure_local(settings, "../../etc:passwd") is False  # not a tag: never a path
    assert remote.export_model(settings, TAG) is False
    assert remote.fetch_model(settings, TAG) is False
    assert remote.remote_exists(settings, TAG) is False
    _export(settings, TAG)


def test_object_keys_are_checked() -> None:
    from serving.bundle.remote_models import object_key, split_tag

    layout = ArtifactLayout(bucket="mloop", prefix="team/a", endpoint_url="http://127.0.0.1:8333")
    assert object_key(layout, "loans:v12") == "team/a/bentoml/loans/v12.bentomodel"
    assert split_tag("loans:v3") == ("loans", "v3")
    for bad in ("loans", "loans:latest", "../x:v1", "a/b:v1", "loans:v1/../v2", ":v1"):
        with pytest.raises(MloopError):
            object_key(layout, bad)


# ----------------------------------------------------------------------------- real S3


def test_packaging_exports_to_s3(home_a: tuple[Settings, pd.DataFrame]) -> None:
    settings, _ = home_a
    client, layout = s3(settings)
    listed = client.list_objects_v2(Bucket=layout.bucket, Prefix=layout.key("bentoml") + "/")
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert keys == [f"{layout.key('bentoml')}/loans/v1.bentomodel"], keys
    assert keys[0].split("/")[-3:] == ["bentoml", "loans", "v1.bentomodel"]


def test_exporting_again_uploads_nothing(
    home_a: tuple[Settings, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.bundle.package import package_pipeline
    from serving.bundle.remote_models import export_model, object_key

    settings, hold = home_a
    client, layout = s3(settings)
    before = client.head_object(Bucket=layout.bucket, Key=object_key(layout, TAG))
    assert export_model(settings, TAG) is False
    pipe, _, _ = fit("logreg", seed=0)
    again = package_pipeline(
        settings,
        name="loans",
        version="1",
        pipeline=pipe,
        contract=make_contract(),
        holdout=hold,
        lineage=LINEAGE,
        build=False,
    )
    assert again.created is False
    after = client.head_object(Bucket=layout.bucket, Key=object_key(layout, TAG))
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])


def test_fresh_home_imports_the_exact_model(
    on_a: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from serving.bundle.local_store import model_in_store
    from serving.bundle.remote_models import ensure_local

    frame, expected = on_a
    settings_b = team_settings(tmp_path_factory.mktemp("home-b"))
    assert not model_in_store(settings_b.state.bentoml_home, TAG)
    assert ensure_local(settings_b, TAG) is True
    assert model_in_store(settings_b.state.bentoml_home, TAG)
    assert ensure_local(settings_b, TAG) is True  # now local: no second import
    on_b = predict_in_child(settings_b, TAG, frame)
    assert on_b["tag"] == TAG
    assert on_b["outputs"] == expected["outputs"]
    assert len(on_b["outputs"]["predictions"]) == 200
    assert on_b["labels"] == expected["labels"]
    assert (
        on_b["labels"][TAG_RUN_ID] == "run-remote-1" and on_b["labels"][TAG_DATASET_MD5] == "a" * 32
    )
    assert on_b["labels"][TAG_MODEL_VERSION] == "1"


def test_missing_model_is_a_clear_error(
    home_a: tuple[Settings, pd.DataFrame], tmp_path: Path
) -> None:
    from serving.bundle.remote_models import ensure_local, fetch_model

    settings = team_settings(tmp_path)
    with pytest.raises(MloopError) as info:
        ensure_local(settings, "loans:v99")
    err = info.value
    assert "loans:v99" in err.what and "neither" in err.what
    assert (
        err.where is not None
        and "bentoml/loans/v99.bentomodel" in err.where
        and str(settings.state.bentoml_home) in err.where
    )
    assert err.fix is not None and "package" in err.fix
    assert fetch_model(settings, "loans:v99") is False  # the deploy path packages instead


def test_object_with_another_tag_is_refused(
    home_a: tuple[Settings, pd.DataFrame], tmp_path: Path
) -> None:
    """An export stored under the wrong key never enters the store as the tag asked for."""
    from serving.bundle.local_store import model_in_store
    from serving.bundle.remote_models import ensure_local, object_key

    settings_a, _ = home_a
    client, layout = s3(settings_a)
    client.copy_object(
        Bucket=layout.bucket,
        Key=object_key(layout, "loans:v2"),
        CopySource={"Bucket": layout.bucket, "Key": object_key(layout, TAG)},
    )
    try:
        settings = team_settings(tmp_path)
        with pytest.raises(MloopError, match="holds model loans:v1, not loans:v2"):
            ensure_local(settings, "loans:v2")
        assert not model_in_store(settings.state.bentoml_home, "loans:v2")
        assert not model_in_store(settings.state.bentoml_home, TAG)
    finally:
        client.delete_object(Bucket=layout.bucket, Key=object_key(layout, "loans:v2"))


def test_service_on_a_fresh_host_serves_the_exported_model(
    home_a: tuple[Settings, pd.DataFrame], on_a: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """``bentoml serve`` of a tag its store lacks imports it from S3 at start and answers with it."""
    import httpx
    from pydantic import SecretStr

    from mloop.core.processes import free_port, stop_pid
    from serving.bundle.local_store import model_in_store
    from serving.control.process_spec import start_service
    from tests.serving.helpers import AUTH, TOKEN, records

    _, hold = home_a
    settings = Settings(home=tmp_path / "home", project_dir=tmp_path, api_token=SecretStr(TOKEN))
    settings.state.ensure()
    assert not model_in_store(settings.state.bentoml_home, TAG)
    proc = start_service(settings, TAG, port=free_port(), name="serve-remote", timeout=120)
    try:
        resp = httpx.post(
            f"{proc.url}/predict", json={"records": records(hold, 20)}, headers=AUTH, timeout=30
        )
        assert resp.status_code == 200, resp.text
        answers = resp.json()
    finally:
        stop_pid(proc.pid, first=15)
    assert model_in_store(settings.state.bentoml_home, TAG)
    expected = on_a[1]["outputs"]["probabilities"][:20]
    assert [a["model_version"] for a in answers] == ["1"] * 20
    assert [a["probability"] for a in answers] == pytest.approx(expected, abs=1e-6)


def test_deploy_on_another_host_imports_rather_than_repackages(
    home_a: tuple[Settings, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``package_model`` (the deploy flow's step) on a host without the model imports A's export: the
    registry is asked for the version only, never for the pipeline or the holdout."""
    from types import SimpleNamespace

    import models.registry
    from serving.bundle.package import package_model

    def never(*args: object, **kwargs: object) -> Any:
        raise AssertionError("repackaged from the registry although S3 has the model")

    monkeypatch.setattr(
        models.registry, "get_version_info", lambda uri, name, version: SimpleNamespace(version=1)
    )
    monkeypatch.setattr(models.registry, "get_lineage", never)
    monkeypatch.setattr(models.registry, "load_pipeline", never)
    packaged = package_model(team_settings(tmp_path), "loans", "1", build=False)
    assert (packaged.model_tag, packaged.created) == (TAG, False)
    assert packaged.labels[TAG_RUN_ID] == "run-remote-1"

"""Package a registered model version for serving: BentoML model (ONNX or skops) + Bento.

``package_model(settings, name, version)``:

1. resolves the version (default: the ``champion`` alias) and its lineage in the MLflow registry;
2. stages the serving artefacts in MLOOP_HOME/tmp: the pipeline converted to ONNX and verified
   against sklearn on the run's holdout to 1e-5 (else the skops pipeline, reason recorded),
   ``contract.json``, and ``mloop.json`` (lineage + sample records with sklearn's expected outputs
   for the rollout smoke test). Any failure to convert or verify the ONNX model falls back to
   sklearn: the reason is logged and stored as ``fallback_reason`` in the model metadata, and the
   backend as the BentoML label ``mloop.serving_backend``;
3. in a child process pointed at ``state.bentoml_home`` (see :mod:`serving.bundle.store`), imports it as
   BentoML model ``<name>:v<version>`` labelled with the lineage, and builds the Bento
   ``<name>-service:v<version>``;
4. in team mode, exports the model to the team's S3 (:mod:`serving.bundle.remote_models`); a deploy on a
   host that did not package imports that exact model from S3 instead of packaging it again.

Cached: BentoML tags are immutable, so a version whose model and Bento are already in the store
is not repackaged (checked on the filesystem, without importing BentoML or MLflow: ~1 ms).

One packager per tag at a time: the train flow packages a version it has just promoted (its fitted
pipeline and holdout are in memory) while the deploy flow it triggered is still starting, and both
take the tag's file lock (``<locks>/package-<name>-v<version>.lock``), so the later one finds the
model in the store instead of converting it again or racing the store's write.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mloop.core.contract import DatasetContract
from mloop.core.entrypoints import SERVING_STORE, python_m
from mloop.core.errors import MloopError
from mloop.core.names import check_name, child_path
from mloop.core.paths import CODE_ROOT, with_code_root
from mloop.core.settings import Settings
from mloop.core.tags import (
    TAG_CODE_COMMIT,
    TAG_DATASET_MD5,
    TAG_DATASET_NAME,
    TAG_DATASET_POINTER_COMMIT,
    TAG_MODEL_NAME,
    TAG_MODEL_VERSION,
    TAG_RUN_ID,
)

log = logging.getLogger(__name__)

SAMPLE_ROWS = 32
LABEL_BACKEND = "mloop.serving_backend"


class PackagedModel(BaseModel):
    """A registry version as it sits in the BentoML store."""

    name: str = Field(description="Registered model name (= dataset name).")
    version: str = Field(description="Registered model version.")
    model_tag: str = Field(description="BentoML model tag (what the service loads).")
    bento_tag: str | None = Field(
        default=None, description="BentoML Bento tag (the deployable artefact)."
    )
    backend: str = Field(description="onnx or sklearn (fallback).")
    fallback_reason: str | None = None
    onnx_max_abs_diff: float | None = Field(
        default=None, description="Largest |ONNX - sklearn| on the holdout."
    )
    created: bool = Field(description="False when everything already existed (nothing rebuilt).")
    labels: dict[str, str] = Field(default_factory=dict)
    seconds: float = 0.0


def bentoml_name(name: str) -> str:
    """A BentoML-safe name (lowercase letters, digits, ``-_.``)."""
    clean = re.sub(r"[^a-z0-9_.-]+", "-", name.lower()).strip("-._")
    if not clean:
        raise MloopError(f"model name {name!r} has no usable characters for a BentoML tag")
    return clean


def model_tag(name: str, version: str | int) -> str:
    return f"{bentoml_name(name)}:v{version}"


def bento_name(name: str) -> str:
    return f"{bentoml_name(name)}-service"


def _model_dir(bentoml_home: Path, tag: str) -> Path:
    name, _, version = tag.partition(":")
    return bentoml_home / "models" / name / version


def model_in_store(bentoml_home: Path, tag: str) -> bool:
    return (_model_dir(bentoml_home, tag) / "model.yaml").is_file()


def bento_in_store(bentoml_home: Path, bento_tag: str) -> bool:
    name, _, version = bento_tag.partition(":")
    return (bentoml_home / "bentos" / name / version / "bento.yaml").is_file()


def stored_model_dir(bentoml_home: Path, tag: str) -> Path:
    """Folder of a model in the store (raises NotFoundError when absent)."""
    from mloop.core.errors import NotFoundError

    path = _model_dir(bentoml_home, tag)
    if not (path / "model.yaml").is_file():
        raise NotFoundError(
            f"model {tag} is not in the BentoML store",
            where=str(bentoml_home),
            fix="run mloop package",
        )
    return path


def _from_store(
    bentoml_home: Path, name: str, version: str, tag: str, seconds: float
) -> PackagedModel:
    from serving.bundle.onnx_model import read_meta

    path = _model_dir(bentoml_home, tag)
    meta = read_meta(path)
    labels = {}
    try:
        import yaml

        labels = dict((yaml.safe_load((path / "model.yaml").read_text()) or {}).get("labels") or {})
    except Exception:
        pass
    btag = f"{bento_name(name)}:v{version}"
    return PackagedModel(
        name=name,
        version=version,
        model_tag=tag,
        bento_tag=btag if bento_in_store(bentoml_home, btag) else None,
        backend=meta.get("backend", "?"),
        fallback_reason=meta.get("fallback_reason"),
        onnx_max_abs_diff=meta.get("onnx_max_abs_diff"),
        created=False,
        labels={str(k): str(v) for k, v in labels.items()},
        seconds=seconds,
    )


def stage_model(
    stage_dir: Path,
    *,
    pipeline: Any,
    contract: DatasetContract,
    holdout: Any,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """Convert + verify + write the serving artefacts into ``stage_dir`` (no BentoML). Returns the metadata."""
    from serving.bundle.onnx_model import convert_pipeline, write_model_dir

    conversion = convert_pipeline(pipeline, contract, holdout)
    sample = holdout.head(SAMPLE_ROWS)
    return write_model_dir(
        stage_dir,
        pipeline=pipeline,
        contract=contract,
        conversion=conversion,
        metadata=metadata,
        sample=sample,
    )


def run_store_job(
    settings: Settings, job: dict[str, Any], timeout: float = 300.0
) -> dict[str, Any]:
    """Run :mod:`serving.bundle.store` in a child process with BENTOML_HOME = ``state.bentoml_home``."""
    env = with_code_root({**os.environ, **settings.service_env()})
    proc = subprocess.run(
        python_m(SERVING_STORE),
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        cwd=str(CODE_ROOT),
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise MloopError(
            f"BentoML {job.get('op', 'packaging')} failed",
            where=f"python -m {SERVING_STORE} (BENTOML_HOME={settings.state.bentoml_home})",
            fix="read the error below; packaging runs offline and needs no network\n"
            + proc.stderr[-2500:],
        )
    last = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return json.loads(last[-1]) if last else {}


def lineage_labels(lineage: dict[str, Any]) -> dict[str, str]:
    """BentoML labels from lineage values (None dropped)."""
    keys = {
        "model_name": TAG_MODEL_NAME,
        "model_version": TAG_MODEL_VERSION,
        "run_id": TAG_RUN_ID,
        "dataset_name": TAG_DATASET_NAME,
        "dataset_md5": TAG_DATASET_MD5,
        "code_commit": TAG_CODE_COMMIT,
        "dataset_pointer_commit": TAG_DATASET_POINTER_COMMIT,
    }
    return {label: str(lineage[k]) for k, label in keys.items() if lineage.get(k) not in (None, "")}


def package_pipeline(
    settings: Settings,
    *,
    name: str,
    version: str,
    pipeline: Any,
    contract: DatasetContract,
    holdout: Any,
    lineage: dict[str, Any] | None = None,
    build: bool = True,
) -> PackagedModel:
    """Package an in-memory fitted pipeline as model ``<name>:v<version>`` (+ Bento when ``build``).

    The registry-free core of :func:`package_model` (the train flow and tests use it directly). Reuses
    what exists; holds the tag's packaging lock.
    """
    from filelock import FileLock

    with FileLock(package_lock_path(settings, name, version), timeout=600):
        return _package_pipeline(
            settings,
            name=name,
            version=str(version),
            pipeline=pipeline,
            contract=contract,
            holdout=holdout,
            lineage=lineage,
            build=build,
        )


def package_lock_path(settings: Settings, name: str, version: str | int) -> Path:
    """``<locks>/package-<name>-v<version>.lock``: one packager per tag (the name is checked first)."""
    settings.state.locks.mkdir(parents=True, exist_ok=True)
    return child_path(
        settings.state.locks, f"package-{check_name(name, 'model')}-v{int(str(version))}.lock"
    )


def _package_pipeline(
    settings: Settings,
    *,
    name: str,
    version: str,
    pipeline: Any,
    contract: DatasetContract,
    holdout: Any,
    lineage: dict[str, Any] | None,
    build: bool,
) -> PackagedModel:
    """:func:`package_pipeline` with the tag's lock held."""
    start = time.perf_counter()
    tag = model_tag(name, version)
    home = settings.state.bentoml_home
    btag = f"{bento_name(name)}:v{version}"
    if model_in_store(home, tag) and (not build or bento_in_store(home, btag)):
        _export(settings, tag)
        return _from_store(home, name, version, tag, time.perf_counter() - start)
    lineage = {**(lineage or {}), "model_name": name, "model_version": version}
    labels = lineage_labels(lineage)
    settings.state.ensure()
    stage = Path(tempfile.mkdtemp(prefix="stage-", dir=settings.state.tmp))
    try:
        if model_in_store(home, tag):  # only the Bento is missing: no need to convert again
            meta: dict[str, Any] = {}
        else:
            meta = stage_model(
                stage, pipeline=pipeline, contract=contract, holdout=holdout, metadata=lineage
            )
            labels[LABEL_BACKEND] = str(
                meta["backend"]
            )  # onnx, or sklearn with metadata fallback_reason
        job = {
            "stage_dir": str(stage),
            "tag": tag,
            "labels": labels,
            "metadata": {
                k: v
                for k, v in meta.items()
                if k in ("backend", "fallback_reason", "onnx_max_abs_diff") and v is not None
            },
            "build": build,
            "bento_name": bento_name(name),
            "version": f"v{version}",
            "code_root": str(CODE_ROOT),
            "tmp_root": str(settings.state.tmp),
        }
        exported = stage / "export.bentomodel" if _team(settings) else None
        if (
            exported is not None
        ):  # the store child writes the export; the upload below skips an existing object
            job["export_path"] = str(exported)
        result = run_store_job(settings, job)
        _export(settings, tag, Path(result["exported"]) if result.get("exported") else exported)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    packaged = _from_store(home, name, version, tag, time.perf_counter() - start)
    packaged.created = bool(result.get("model_created") or result.get("bento_created"))
    if packaged.backend == "sklearn":
        log.warning("model %s serves with sklearn: %s", tag, packaged.fallback_reason)
    return packaged


def package_model(
    settings: Settings, name: str, version: str | None = None, *, build: bool = True
) -> PackagedModel:
    """Package registry version ``version`` of model ``name`` (default: the champion alias).

    Waits for another packager of the same tag (the train flow's, see the module doc) and then reuses
    its model rather than loading the pipeline from the registry again."""
    from filelock import FileLock

    from models.registry import get_lineage, get_version_info, load_pipeline

    info = get_version_info(settings.tracking_uri, name, version or "champion")
    version = str(info.version)
    tag = model_tag(name, version)
    home = settings.state.bentoml_home
    with FileLock(package_lock_path(settings, name, version), timeout=600):
        if _team(
            settings
        ):  # packaged on another host: import that exact model rather than packaging again
            from serving.bundle.remote_models import fetch_model

            fetch_model(settings, tag)
        if model_in_store(home, tag) and (
            not build or bento_in_store(home, f"{bento_name(name)}:v{version}")
        ):
            _export(settings, tag)
            return _from_store(home, name, version, tag, 0.0)
        lineage = get_lineage(settings.tracking_uri, name, version)
        pipeline = load_pipeline(settings.tracking_uri, name, version)
        contract, holdout = _holdout(settings, name, lineage.dataset_md5, lineage.run_id)
        return _package_pipeline(
            settings,
            name=name,
            version=version,
            pipeline=pipeline,
            contract=contract,
            holdout=holdout,
            lineage=lineage.model_dump(),
            build=build,
        )


def _team(settings: Settings) -> bool:
    from mloop.core.team import is_team

    return is_team(settings)


def _export(settings: Settings, tag: str, exported: Path | None = None) -> None:
    """Team mode: make sure ``tag`` is in the team's S3 (:func:`serving.bundle.remote_models.export_model`; a
    failure raises: there is no local fallback). Single machine: nothing (no S3, no boto3)."""
    if not _team(settings):
        return
    from serving.bundle.remote_models import export_model

    if export_model(settings, tag, exported):
        log.info("exported BentoML model %s to the team's S3", tag)


def _holdout(settings: Settings, name: str, md5: str, run_id: str) -> tuple[DatasetContract, Any]:
    """The run's exact holdout: the dataset version's bytes, split with the run's logged params."""
    from mloop.core.contract import load_contract
    from mloop.core.datasets import read_version
    from models.split import split_dataset

    contract = load_contract(settings.project_dir, name)
    df = read_version(settings, name, md5)
    params = _run_params(settings.tracking_uri, run_id)
    test_size = float(params.get("split_test_size", 0.2))
    seed = int(params.get("split_seed", 42))
    _, holdout = split_dataset(df, contract, test_size=test_size, seed=seed)
    return contract, holdout


def _run_params(tracking_uri: str, run_id: str) -> dict[str, str]:
    try:
        from mlflow.tracking import MlflowClient

        return dict(MlflowClient(tracking_uri=tracking_uri).get_run(run_id).data.params)
    except Exception:
        return {}

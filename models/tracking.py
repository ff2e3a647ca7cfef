"""MLflow tracking: experiment per dataset, one run per fitted spec, the model stored with skops.

Everything goes through an ``MlflowClient`` bound to an explicit tracking URI (no global MLflow
state), so capabilities stay testable and several stores can coexist in one process.

What is cached and why: a run carries ``mloop.cache_key`` = hash(data md5, spec, seed, split,
code commit). :func:`find_cached_run` finds a FINISHED run with that key, so training again with
identical inputs reuses the run (and its registered version) instead of fitting and registering a
duplicate. A run is marked FINISHED only after it is fully logged and registered, so a run that
failed or was killed midway is never reused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from mloop.core.tags import TAG_CACHE_KEY, TAG_FLOW_RUN_ID, TAG_REGISTERED_VERSION, tag_value
from models.registry import mlflow_client, run_calls, with_retry
from models.spec import ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

    from mloop.core.lineage import DatasetVersion
    from models.train import FitResult

MODEL_ARTIFACT = "model"
SERIALIZATION = "skops"
MAX_PARAM_VALUE = 6000
"""MLflow's limit on a param value's length (characters)."""


class RunRecord(BaseModel):
    """A logged training run."""

    run_id: str
    experiment_id: str
    artifact_uri: str
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    status: str = "RUNNING"

    @property
    def model_uri(self) -> str:
        return f"{self.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT}"


def cache_key(
    data_md5: str,
    spec: ModelSpec,
    seed: int,
    test_size: float,
    split_seed: int,
    code_commit: str | None,
) -> str:
    """Identity of a training run: same key, same model (the flow reuses the run)."""
    raw = json.dumps(
        {
            "md5": data_md5,
            "spec": spec.key(),
            "seed": seed,
            "test_size": test_size,
            "split_seed": split_seed,
            "code": code_commit or "",
        },
        sort_keys=True,
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def ensure_experiment(tracking_uri: str, name: str, artifact_root: Path | None) -> str:
    """The experiment named after the dataset, created with an explicit artifact location under MLOOP_HOME
    (``artifact_root``; None: the tracking server chooses, e.g. its S3 store in team mode)."""
    client = mlflow_client(tracking_uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location: str | None = None
    if artifact_root is not None:
        folder = (artifact_root / name).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        location = folder.as_uri()
    try:
        return str(with_retry(lambda: client.create_experiment(name, artifact_location=location)))
    except Exception as exc:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise exc
        return str(exp.experiment_id)


def _record(run: Any) -> RunRecord:
    return RunRecord(
        run_id=run.info.run_id,
        experiment_id=str(run.info.experiment_id),
        artifact_uri=run.info.artifact_uri,
        metrics={k: float(v) for k, v in run.data.metrics.items()},
        params=dict(run.data.params),
        tags=dict(run.data.tags),
        status=run.info.status,
    )


def find_cached_run(tracking_uri: str, experiment_id: str, key: str) -> RunRecord | None:
    """The newest FINISHED run with ``mloop.cache_key == key`` (None when there is none)."""
    client = mlflow_client(tracking_uri)
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_CACHE_KEY}` = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return _record(runs[0]) if runs else None


def get_run(tracking_uri: str, run_id: str) -> RunRecord:
    return _record(mlflow_client(tracking_uri).get_run(run_id))


def pip_requirements() -> list[str]:
    """Pinned requirements of a stored pipeline (explicit: inferring them costs ~9 s a model)."""
    from importlib.metadata import version

    return [
        f"{pkg}=={version(pkg)}" for pkg in ("scikit-learn", "skops", "numpy", "pandas", "scipy")
    ]


def start_run(tracking_uri: str, experiment_id: str, *, run_name: str, tags: dict[str, str]) -> str:
    client = mlflow_client(tracking_uri)
    run = with_retry(lambda: client.create_run(experiment_id, run_name=run_name, tags=tags))
    return str(run.info.run_id)


def log_training_run(
    tracking_uri: str,
    run_id: str,
    *,
    params: dict[str, Any],
    metrics: dict[str, float],
    pipeline: Any,
    X_example: pd.DataFrame,
    plot_paths: list[Path],
    dataset_name: str,
    data_md5: str,
    data_source: str,
    data_rows: int,
    work_dir: Path,
    extra_json: dict[str, Any] | None = None,
) -> RunRecord:
    """Log params, metrics, plots, the dataset input (digest = DVC md5) and the skops model to a run."""
    import mlflow.sklearn as mlflow_sklearn
    from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param
    from mlflow.models import infer_signature

    from models.pipeline import TRUSTED_TYPES

    client = mlflow_client(tracking_uri)
    now = int(time.time() * 1000)
    with_retry(
        lambda: client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            params=[Param(k, str(v)[:MAX_PARAM_VALUE]) for k, v in params.items()],
        )
    )
    dataset = Dataset(
        name=dataset_name,
        digest=data_md5,
        source_type="dvc",
        source=json.dumps({"path": data_source, "md5": data_md5}),
        profile=json.dumps({"num_rows": data_rows}),
    )
    # Candidates logged at once insert the same dataset row: the loser of that race hits the unique
    # constraint, and on retry finds the row and links to it.
    with_retry(
        lambda: client.log_inputs(
            run_id, datasets=[DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])]
        ),
        unique_race=True,
    )
    uploads: list[Callable[[], None]] = [
        lambda p=path: client.log_artifact(run_id, str(p), "plots") for path in plot_paths
    ]
    uploads += [
        lambda n=name, o=obj: client.log_dict(run_id, o, n)
        for name, obj in (extra_json or {}).items()
    ]

    model_path = work_dir / MODEL_ARTIFACT
    if model_path.exists():
        shutil.rmtree(model_path)
    example = X_example.head(50)
    signature = infer_signature(example, pipeline.predict(example))
    mlflow_sklearn.save_model(
        pipeline,
        str(model_path),
        serialization_format=SERIALIZATION,
        skops_trusted_types=TRUSTED_TYPES,
        signature=signature,
        input_example=X_example.head(3),
        pip_requirements=pip_requirements(),
    )
    uploads += [
        lambda f=file, d=folder: client.log_artifact(run_id, str(f), d)
        for file, folder in artifact_files(model_path, MODEL_ARTIFACT)
    ]
    run_calls(tracking_uri, uploads)  # one round trip per file: several at once to a remote server
    shutil.rmtree(model_path, ignore_errors=True)
    return _record(client.get_run(run_id))


def artifact_files(folder: Path, artifact_path: str) -> list[tuple[Path, str]]:
    """Every file under ``folder`` with the artifact folder it goes to (``artifact_path``, plus its
    sub-folder): what ``MlflowClient.log_artifacts(run_id, folder, artifact_path)`` uploads. Pure."""
    return [
        (file, "/".join((artifact_path, *file.parent.relative_to(folder).parts)))
        for file in sorted(folder.rglob("*"))
        if file.is_file()
    ]


def log_fitted_run(
    tracking_uri: str,
    run_id: str,
    result: FitResult,
    *,
    params: dict[str, Any],
    task: str,
    info: DatasetVersion,
    X_holdout: pd.DataFrame,
    y_holdout: np.ndarray,
    tmp_root: Path,
) -> RunRecord:
    """:func:`log_training_run` for a fitted candidate, with its plots, evaluation and feature importance."""
    from models.evaluate import binary_labels, permutation_importance
    from models.plots import classification_plots, regression_plots
    from models.target import is_multiclass_scores

    with tempfile.TemporaryDirectory(dir=tmp_root) as tmp:
        work = Path(tmp)
        importances = permutation_importance(
            result.pipeline, X_holdout, y_holdout, task, seed=0, max_rows=1000
        )
        if task == "classification":  # multiclass: raw labels in the pipeline's class order
            labels = y_holdout if is_multiclass_scores(result.scores) else binary_labels(y_holdout)
            plots = classification_plots(
                labels,
                result.scores,
                importances,
                work / "plots",
                getattr(result.pipeline, "classes_", None),
            )
        else:
            plots = regression_plots(y_holdout, result.scores, importances, work / "plots")
        return log_training_run(
            tracking_uri,
            run_id,
            params=params,
            metrics=result.evaluation.metrics,
            pipeline=result.pipeline,
            X_example=X_holdout,
            plot_paths=plots,
            dataset_name=info.name,
            data_md5=info.md5,
            data_source=info.path,
            data_rows=info.rows,
            work_dir=work,
            extra_json={
                "evaluation.json": result.evaluation.model_dump(mode="json"),
                "feature_importance.json": importances,
            },
        )


def log_json(tracking_uri: str, run_id: str, obj: Any, artifact_file: str) -> None:
    mlflow_client(tracking_uri).log_dict(run_id, obj, artifact_file)


def set_run_tags(tracking_uri: str, run_id: str, tags: dict[str, str]) -> None:
    """Set several run tags in one store transaction."""
    from mlflow.entities import RunTag

    client = mlflow_client(tracking_uri)
    with_retry(
        lambda: client.log_batch(run_id, tags=[RunTag(k, tag_value(v)) for k, v in tags.items()])
    )


def finish_run(tracking_uri: str, run_id: str, status: str = "FINISHED") -> None:
    """Mark the run terminated (FINISHED makes it eligible for the cache, FAILED/KILLED never)."""
    client = mlflow_client(tracking_uri)
    with_retry(lambda: client.set_terminated(run_id, status=status))


OPEN_STATUSES = ("RUNNING", "SCHEDULED")
"""MLflow run statuses of a run that has not ended."""


def fail_open_runs(tracking_uri: str, flow_run_id: str) -> list[str]:
    """Mark FAILED every run still open (RUNNING/SCHEDULED) that the Prefect flow run ``flow_run_id`` started.

    A flow run whose process died (Crashed) never finished its MLflow runs: they would stay RUNNING
    forever. FAILED makes them never cacheable and never a champion. Returns the run ids it marked.
    """
    from mlflow.entities import ViewType

    if not flow_run_id or "'" in flow_run_id:
        raise ValueError(f"not a flow-run id: {flow_run_id!r}")
    client = mlflow_client(tracking_uri)
    experiments = [
        e.experiment_id
        for e in with_retry(lambda: client.search_experiments(view_type=ViewType.ALL))
    ]
    if not experiments:
        return []
    runs = with_retry(
        lambda: client.search_runs(
            experiments,
            filter_string=f"tags.`{TAG_FLOW_RUN_ID}` = '{flow_run_id}'",
            run_view_type=ViewType.ALL,
            max_results=1000,
        )
    )
    failed = [r.info.run_id for r in runs if r.info.status in OPEN_STATUSES]
    for run_id in failed:
        finish_run(tracking_uri, run_id, status="FAILED")
    return failed


class OpenRuns:
    """The MLflow runs a train run has started and not finished yet.

    :meth:`finish` marks runs FINISHED (complete, hence a cache hit later). Leaving the ``with``
    block with runs still open (an error midway) marks them FAILED: never cacheable, never champion.
    """

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.run_ids: list[str] = []

    def start(self, experiment_id: str, *, run_name: str, tags: dict[str, str]) -> str:
        """Start a run and keep it open."""
        run_id = start_run(self.tracking_uri, experiment_id, run_name=run_name, tags=tags)
        self.run_ids.append(run_id)
        return run_id

    def finish(self, keep: str | None = None) -> None:
        """Finish every open run except ``keep``."""
        for run_id in [r for r in self.run_ids if r != keep]:
            finish_run(self.tracking_uri, run_id)
            self.run_ids.remove(run_id)

    def __enter__(self) -> OpenRuns:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for run_id in self.run_ids:
            try:
                finish_run(self.tracking_uri, run_id, status="FAILED")
            except Exception:
                pass
        self.run_ids.clear()


def registered_version(tracking_uri: str, run_id: str) -> str | None:
    """The registry version a run was registered as (its ``mloop.registered_version`` tag), if any."""
    return get_run(tracking_uri, run_id).tags.get(TAG_REGISTERED_VERSION)

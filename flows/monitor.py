"""Monitor flow: prediction-log window vs the champion's training data -> drift/quality verdict -> events.

Steps: resolve the model version (champion by default) and its lineage (dataset name + md5) ->
read that exact dataset version and sample it deterministically (seeded) -> score the sample with
the same model (reference predictions, for prediction drift) -> read the window of the prediction
log (newest ``window_size`` rows, optionally only since a time) -> Evidently drift check ->
quality vs the champion's holdout metrics when feedback labels exist for the window -> HTML
report under MLOOP_HOME/reports, MLflow monitoring run, Evidently workspace snapshot, Prefect
markdown artifact -> ``mloop.drift.detected`` / ``mloop.quality.degraded`` events.

Nothing is cached: every run re-reads the log, since the window moves. Tasks run in-process
(DataFrames are passed directly); the only retries are on the I/O steps that can hit a busy
SQLite (MLflow). Evidently is imported inside the check, so importing this module stays cheap.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from mloop.core import events
from mloop.core.contract import DatasetContract
from mloop.core.errors import MloopError
from mloop.core.settings import Settings
from monitoring.drift import DriftOptions, DriftResult

LABEL_COLUMN = "label"


class MonitorOptions(BaseModel):
    """How the monitor compares the window with the reference."""

    reference_rows: int = Field(
        default=50_000, ge=100, description="Sample the reference (training) data to at most this many rows (seeded)."
    )
    max_rows: int = Field(
        default=50_000, ge=100, description="Evidently sees at most this many rows per side (seeded)."
    )
    seed: int = Field(default=0, description="Seed of every sample.")
    min_rows: int = Field(default=100, ge=1, description="Fewer predictions in the window: skip the check.")
    quality_tolerance: float = Field(
        default=0.05, ge=0, description="Largest accepted drop of the gate metric vs the champion's holdout."
    )
    min_labels: int = Field(default=30, ge=1, description="Fewer feedback labels in the window: no quality verdict.")
    publish: bool = Field(default=True, description="Write the HTML report, MLflow run and Evidently snapshot.")


class MonitorResult(BaseModel):
    """What one monitor run found and did."""

    model_name: str
    model_version: str | None
    status: Literal["ok", "drift", "degraded", "drift+degraded", "skipped"]
    reason: str
    drift: DriftResult | None = None
    report_path: str | None = None
    mlflow_run_id: str | None = None
    workspace_snapshot_id: str | None = None
    events: list[str] = Field(default_factory=list, description="Names of the events emitted.")
    window_versions: list[str] = Field(default_factory=list, description="Model versions that served the window.")


@task(name="resolve-model", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def resolve_model(settings: Settings, model_name: str, version: str) -> tuple[Any, Any]:
    """The registered version (metrics = holdout metrics) and its lineage (dataset name + md5)."""
    from models.registry import get_lineage, get_version_info

    info = get_version_info(settings.tracking_uri, model_name, version)
    lineage = get_lineage(settings.tracking_uri, model_name, info.version)
    return info, lineage


@task(name="reference-data", cache_policy=NO_CACHE)
def reference_data(
    settings: Settings, model_name: str, model_version: str, dataset: str, md5: str, options: MonitorOptions
) -> tuple[pd.DataFrame, DatasetContract]:
    """The champion's training data version (exact bytes), sampled (seeded), with the model's predictions."""
    from mloop.core.contract import load_contract
    from mloop.core.datasets import read_version
    from monitoring.window import sample_rows

    contract = load_contract(settings.project_dir, dataset)
    df = sample_rows(read_version(settings, dataset, md5), options.reference_rows, options.seed)
    return add_predictions(settings, model_name, model_version, df, contract), contract


def add_predictions(
    settings: Settings, model_name: str, model_version: str, df: pd.DataFrame, contract: DatasetContract
) -> pd.DataFrame:
    """``df`` with the columns the service logs (prediction + probability or score), from the same model."""
    from models.pipeline import prepare_features
    from models.registry import load_pipeline

    pipe = load_pipeline(settings.tracking_uri, model_name, model_version)
    X = prepare_features(df, contract)
    out = df.copy()
    if contract.task == "classification" and hasattr(pipe, "predict_proba"):
        proba = pipe.predict_proba(X)
        classes = list(pipe.classes_)
        out["prediction"] = [classes[i] for i in proba.argmax(axis=1)]
        out["probability"] = proba[:, -1]
    else:
        pred = pipe.predict(X)
        out["prediction"] = pred
        out["score"] = pred
    return out


@task(name="read-window", cache_policy=NO_CACHE)
def read_window(
    settings: Settings, model_name: str, window_size: int, since: datetime | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The newest ``window_size`` logged predictions (at/after ``since``) and the feedback labels."""
    from serving.predlog import read_feedback, read_predictions

    window = read_predictions(settings.state.predictions, model_name, last_n=window_size, since=since)
    feedback = read_feedback(settings.state.feedback, model_name)
    return window, feedback


@task(name="check", cache_policy=NO_CACHE)
def run_checks(
    reference: pd.DataFrame,
    window: pd.DataFrame,
    feedback: pd.DataFrame,
    contract: DatasetContract,
    *,
    model_name: str,
    model_version: str,
    baseline_metrics: dict[str, float],
    gate_metric: str,
    drift_share_threshold: float,
    options: MonitorOptions,
) -> tuple[DriftResult, Any, Any]:
    """Drift (Evidently) and, with enough labels, quality; returns the result and both snapshots."""
    from monitoring.drift import drift_report
    from monitoring.quality import check_quality, quality_report

    drift_options = DriftOptions(
        drift_share_threshold=drift_share_threshold, max_rows=options.max_rows, seed=options.seed
    )
    result, snapshot = drift_report(
        reference, window, contract, options=drift_options, model_name=model_name, model_version=model_version,
        time_column="timestamp",
    )
    quality_snapshot = None
    if not feedback.empty and "prediction_id" in window.columns:
        labelled = window.merge(feedback[["prediction_id", LABEL_COLUMN]], on="prediction_id", how="inner")
        score = next((c for c in ("probability", "score") if c in labelled.columns), None)
        quality = check_quality(
            labelled,
            contract.task,
            baseline_metrics,
            tolerance=options.quality_tolerance,
            min_rows=options.min_labels,
            label_column=LABEL_COLUMN,
            score_column=score if contract.task == "classification" else None,
            only=[gate_metric] if gate_metric else None,
        )
        result = result.model_copy(update={"quality": quality})
        if quality is not None and options.publish:
            quality_snapshot = quality_report(
                labelled, contract.task, label_column=LABEL_COLUMN,
                score_column=score if contract.task == "classification" else None,
            )
    return result, snapshot, quality_snapshot


@task(name="publish", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def publish(
    settings: Settings, result: DriftResult, snapshot: Any, quality_snapshot: Any, flow_run_id: str | None
) -> tuple[str, str | None, str | None]:
    """HTML reports (drift.html, quality.html) + result.json, MLflow monitoring run, Evidently workspace snapshot."""
    from monitoring.reports import (
        add_to_workspace,
        log_monitoring_run,
        report_folder,
        write_report,
    )

    folder = report_folder(settings.state.reports, result.model_name or "model", result.model_version)
    html = write_report(result, snapshot, folder, [quality_snapshot] if quality_snapshot is not None else None)
    run_id = log_monitoring_run(
        settings.tracking_uri,
        result.model_copy(update={"report_path": str(html)}),
        folder,
        artifact_root=settings.state.mlflow_artifacts,
        flow_run_id=flow_run_id,
    )
    snap_id = None
    if snapshot is not None:
        snap_id = add_to_workspace(
            settings.state.evidently_workspace, result.model_name or "model", snapshot,
            name=f"v{result.model_version} {folder.name}",
        )
    return str(html), run_id, snap_id


def drift_payload(result: DriftResult) -> dict[str, Any]:
    w = result.window
    return {
        "model_name": result.model_name,
        "model_version": result.model_version,
        "drift_share": round(result.drift_share, 4),
        "drift_share_threshold": result.drift_share_threshold,
        "drifted_columns": result.drifted_columns,
        "report_path": result.report_path,
        "window": {
            "rows": w.rows,
            "start": w.start.isoformat() if w.start else None,
            "end": w.end.isoformat() if w.end else None,
        },
    }


def quality_payload(result: DriftResult) -> dict[str, Any]:
    q = result.quality
    assert q is not None
    return {
        "model_name": result.model_name,
        "model_version": result.model_version,
        "degraded_metrics": q.degraded_metrics,
        "metrics": {k: round(v, 4) for k, v in q.metrics.items()},
        "baseline": {k: round(v, 4) for k, v in q.baseline.items()},
        "tolerance": q.tolerance,
        "labelled_rows": q.labelled_rows,
        "report_path": result.report_path,
    }


@flow(name="monitor")
def monitor_flow(
    model_name: str,
    window_size: int = 5000,
    since: datetime | None = None,
    version: str = "champion",
    options: MonitorOptions | None = None,
) -> MonitorResult:
    """Check the newest predictions of a model for data drift and quality loss; emit events.

    Args:
        model_name: Registered model (== dataset) name.
        window_size: Check the newest N logged predictions.
        since: Only predictions at/after this time (UTC); empty = no time limit.
        version: Model version or alias whose training data is the reference (default: champion).
        options: Sampling, seeds, quality tolerance, minimum rows, publishing.
    """
    from prefect.artifacts import create_markdown_artifact
    from prefect.runtime import flow_run

    from monitoring.reports import markdown_summary

    logger = get_run_logger()
    options = options or MonitorOptions()
    settings = Settings()
    settings.state.ensure()
    info, lineage = resolve_model(settings, model_name, version)
    window, feedback = read_window(settings, model_name, window_size, since)
    versions = sorted({str(v) for v in window["model_version"].dropna().unique()}) if "model_version" in window else []
    if len(window) < options.min_rows:
        reason = f"{len(window)} predictions in the window (< {options.min_rows}): nothing to compare"
        logger.info(reason)
        create_markdown_artifact(
            key=_artifact_key(model_name), markdown=f"# Drift check: {model_name}\n\nSkipped: {reason}."
        )
        return MonitorResult(model_name=model_name, model_version=info.version, status="skipped", reason=reason,
                             window_versions=versions)
    if not lineage.dataset_md5:
        raise MloopError(
            f"model {model_name} v{info.version} has no dataset md5 in its lineage",
            where="MLflow model version tags",
            fix="train the model with `mloop train` so the version records its dataset",
        )
    reference, contract = reference_data(settings, model_name, info.version, lineage.dataset_name,
                                         lineage.dataset_md5, options)
    result, snapshot, quality_snapshot = run_checks(
        reference, window, feedback, contract,
        model_name=model_name, model_version=info.version, baseline_metrics=info.metrics,
        gate_metric=settings.gate_metric if contract.task == "classification" else "r2",
        drift_share_threshold=settings.drift_share_threshold, options=options,
    )
    run_id = str(flow_run.get_id() or "") or None
    html = mlflow_run = snap_id = None
    if options.publish:
        html, mlflow_run, snap_id = publish(settings, result, snapshot, quality_snapshot, run_id)
        result = result.model_copy(update={"report_path": html})
    create_markdown_artifact(
        key=_artifact_key(model_name),
        markdown=markdown_summary(
            result, report_link=html and f"file://{html}", mlflow_link=mlflow_run and _mlflow_link(settings, mlflow_run)
        ),
        description=f"drift check of {model_name} v{info.version}",
    )
    emitted: list[str] = []
    resource = events.model_resource(model_name)
    version_label = {"mloop.model_version": str(info.version)}
    if result.dataset_drift:
        events.emit(events.DRIFT_DETECTED, resource, drift_payload(result), **version_label)
        emitted.append(events.DRIFT_DETECTED)
    degraded = result.quality is not None and result.quality.degraded
    if degraded:
        events.emit(events.QUALITY_DEGRADED, resource, quality_payload(result), **version_label)
        emitted.append(events.QUALITY_DEGRADED)
    status: Literal["ok", "drift", "degraded", "drift+degraded"] = (
        "drift+degraded" if result.dataset_drift and degraded
        else "drift" if result.dataset_drift else "degraded" if degraded else "ok"
    )
    reason = (
        f"{len(result.drifted_columns)}/{len(result.columns)} columns drifted (share {result.drift_share:.2f}, "
        f"threshold {result.drift_share_threshold:.2f})"
        + ("" if result.quality is None else
           f"; quality {'degraded: ' + ', '.join(result.quality.degraded_metrics) if degraded else 'ok'}"
           f" on {result.quality.labelled_rows} labels")
    )
    logger.info("monitor %s v%s: %s", model_name, info.version, reason)
    return MonitorResult(
        model_name=model_name,
        model_version=info.version,
        status=status,
        reason=reason,
        drift=result,
        report_path=html,
        mlflow_run_id=mlflow_run,
        workspace_snapshot_id=snap_id,
        events=emitted,
        window_versions=versions,
    )


def _artifact_key(model_name: str) -> str:
    clean = "".join(c if c.isalnum() else "-" for c in model_name.lower()).strip("-")
    return f"drift-{clean}"[:100]


def _mlflow_link(settings: Settings, run_id: str) -> str:
    """URL of the monitoring run in the local MLflow UI (``mloop up`` serves it on settings.mlflow_port)."""
    from mlflow import MlflowClient

    experiment = MlflowClient(settings.tracking_uri).get_run(run_id).info.experiment_id
    return f"http://{settings.host}:{settings.mlflow_port}/#/experiments/{experiment}/runs/{run_id}"

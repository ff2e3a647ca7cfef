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
The work itself lives in ``monitoring/`` (scoring, checks, verdict, reports).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mloop.core import events
from mloop.core.artifacts import artifact_key
from mloop.core.contract import DatasetContract
from mloop.core.names import ModelName
from mloop.core.settings import Settings
from mloop.core.tags import TAG_MODEL_VERSION
from monitoring.checks import MonitorOptions, check_window
from monitoring.drift import DriftResult
from monitoring.scoring import LABEL_COLUMN, add_predictions
from monitoring.verdict import MonitorResult

__all__ = ["LABEL_COLUMN", "MonitorOptions", "MonitorResult", "add_predictions", "monitor_flow"]


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


@task(name="read-window", cache_policy=NO_CACHE)
def read_window(
    settings: Settings, model_name: str, window_size: int, since: datetime | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The newest ``window_size`` logged predictions (at/after ``since``) and the feedback labels."""
    from serving.predlog import read_feedback, read_predictions

    window = read_predictions(settings.state.predictions, model_name, last_n=window_size, since=since)
    feedback = read_feedback(settings.state.feedback, model_name)
    return window, feedback


run_checks = task(name="check", cache_policy=NO_CACHE)(check_window)
"""Drift (Evidently) and, with enough labels, quality; returns the result and both snapshots."""


@task(name="publish", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def publish(
    settings: Settings, result: DriftResult, snapshot: Any, quality_snapshot: Any, flow_run_id: str | None
) -> tuple[str, str | None, str | None]:
    """HTML reports (drift.html, quality.html) + result.json, MLflow monitoring run, Evidently workspace snapshot."""
    from monitoring.reports import publish_check

    return publish_check(settings.state, settings.tracking_uri, result, snapshot, quality_snapshot, flow_run_id)


@flow(name="monitor")
def monitor_flow(
    model_name: ModelName,
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

    from monitoring import verdict
    from monitoring.checks import quality_metric, reference_version

    logger = get_run_logger()
    options = options or MonitorOptions()
    settings = Settings()
    settings.state.ensure()
    info, lineage = resolve_model(settings, model_name, version)
    window, feedback = read_window(settings, model_name, window_size, since)
    versions = verdict.window_versions(window)
    if (skipped := verdict.skip_reason(len(window), options.min_rows)) is not None:
        return _skipped(model_name, info.version, skipped, versions)
    dataset, md5 = reference_version(lineage)
    reference, contract = reference_data(settings, model_name, info.version, dataset, md5, options)
    result, snapshot, quality_snapshot = run_checks(
        reference, window, feedback, contract, model_name=model_name, model_version=info.version,
        baseline_metrics=info.metrics, gate_metric=quality_metric(contract.task, settings.gate_metric),
        drift_share_threshold=settings.drift_share_threshold, options=options,
    )
    html = mlflow_run = snap_id = None
    if options.publish:
        flow_run_id = str(flow_run.get_id() or "") or None
        html, mlflow_run, snap_id = publish(settings, result, snapshot, quality_snapshot, flow_run_id)
        result = result.model_copy(update={"report_path": html})
    create_markdown_artifact(
        key=artifact_key("drift", model_name), markdown=_summary(settings, result, html, mlflow_run),
        description=f"drift check of {model_name} v{info.version}",
    )
    emitted = _emit(model_name, info.version, result)
    logger.info("monitor %s v%s: %s", model_name, info.version, verdict.reason(result))
    return MonitorResult(
        model_name=model_name, model_version=info.version, status=verdict.status(result),
        reason=verdict.reason(result), drift=result, report_path=html, mlflow_run_id=mlflow_run,
        workspace_snapshot_id=snap_id, events=emitted, window_versions=versions,
    )


def _summary(settings: Settings, result: DriftResult, html: str | None, mlflow_run: str | None) -> str:
    """The markdown artifact: the check's summary with links to the HTML report and the MLflow run."""
    from monitoring.reports import markdown_summary, mlflow_run_link

    mlflow_link = None
    if mlflow_run:
        mlflow_link = mlflow_run_link(settings.tracking_uri, settings.host, settings.mlflow_port, mlflow_run)
    return markdown_summary(result, report_link=html and f"file://{html}", mlflow_link=mlflow_link)


def _skipped(model_name: str, model_version: str, reason: str, versions: list[str]) -> MonitorResult:
    """Too few predictions to compare: say so (log, artifact) and check nothing."""
    from prefect.artifacts import create_markdown_artifact

    from monitoring.verdict import skipped_markdown

    get_run_logger().info(reason)
    create_markdown_artifact(key=artifact_key("drift", model_name), markdown=skipped_markdown(model_name, reason))
    return MonitorResult(model_name=model_name, model_version=model_version, status="skipped", reason=reason,
                         window_versions=versions)


def _emit(model_name: str, model_version: str, result: DriftResult) -> list[str]:
    """Emit the check's events on ``mloop.model.<name>`` (label ``mloop.model_version``); their names."""
    from monitoring.verdict import monitor_events

    emitted = []
    for event, payload in monitor_events(result):
        events.emit(event, events.model_resource(model_name), payload, **{TAG_MODEL_VERSION: str(model_version)})
        emitted.append(event)
    return emitted

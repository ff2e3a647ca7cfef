"""Monitor flow: prediction-log window vs the champion's training data -> drift/quality verdict -> events.

Steps: resolve the model version (champion by default) and its lineage (dataset name + md5) ->
read that exact dataset version and sample it deterministically (seeded) -> score the sample with
the same model (reference predictions, for prediction drift) -> read the window of the prediction
log (newest ``window_size`` rows, optionally only since a time) -> Evidently drift check ->
quality vs the champion's holdout metrics when feedback labels exist for the window -> HTML
report under MLOOP_HOME/reports, MLflow monitoring run, Evidently workspace snapshot, Prefect
markdown artifact -> ``mloop.drift.detected`` / ``mloop.quality.degraded`` events.

The window size and minimum rows default to the model's own values (``mloop monitor configure``,
else MLOOP_MONITOR_WINDOW_SIZE / MLOOP_MONITOR_MIN_ROWS). Every run re-reads the log, since the
window moves; only the scored reference sample is cached (``monitoring.reference_cache``: it changes
only with the model version, dataset md5, seed and sample size). Tasks run in-process (DataFrames
are passed directly); the only retries are on the I/O steps that can hit a busy SQLite (MLflow).
Evidently is imported inside the check, so importing this module stays cheap. The work itself
lives in ``monitoring/`` (scoring, checks, verdict, reports).

The sweep (``monitor-sweep``, :func:`monitor_sweep_flow`) runs the same steps
(:func:`check_one_model`) for every served model (every registered model with a champion), a few at a
time in threads, each model in its own ``check-model`` task run with the steps nested under it (not
a subflow per model: a flow run's setup cost about 3 s of thread time per model, more than half of a
20-model sweep). Each model gets its own reports, MLflow run, artifact and events, exactly as when
it is checked alone; one that fails is listed as failed and the others go on. A model with nothing new since its last check
(same champion, same newest prediction, same number of labels) is skipped as ``unchanged``. The
sweep builds Evidently's full report (HTML, workspace snapshot) only for a model whose check finds
drift or quality loss: the others are scored with the same Evidently stat tests, methods and
thresholds, without the report's widgets, which are most of a check's time (``full_reports`` asks
for every report).
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
from monitoring.sweep import SweepEntry, SweepResult
from monitoring.verdict import MonitorResult, MonitorStatus

__all__ = [
    "LABEL_COLUMN",
    "MonitorOptions",
    "MonitorResult",
    "SweepEntry",
    "SweepResult",
    "add_predictions",
    "monitor_flow",
    "monitor_sweep_flow",
]


@task(name="resolve-model", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def resolve_model(settings: Settings, model_name: str, version: str) -> tuple[Any, Any]:
    """The registered version (metrics = holdout metrics) and its lineage (dataset name + md5)."""
    from models.registry import get_lineage, get_version_info

    info = get_version_info(settings.tracking_uri, model_name, version)
    lineage = get_lineage(settings.tracking_uri, model_name, info.version)
    return info, lineage


@task(name="reference-data", cache_policy=NO_CACHE)
def reference_data(
    settings: Settings,
    model_name: str,
    model_version: str,
    dataset: str,
    md5: str,
    options: MonitorOptions,
) -> tuple[pd.DataFrame, DatasetContract]:
    """The champion's training data version (exact bytes), sampled (seeded), with the model's predictions;
    cached per (model, version, dataset md5, seed, sample size) under MLOOP_HOME."""
    from mloop.core.contract import load_contract
    from monitoring.reference_cache import scored_reference

    contract = load_contract(settings.project_dir, dataset)
    return scored_reference(
        settings,
        model_name,
        model_version,
        dataset,
        md5,
        contract,
        seed=options.seed,
        rows=options.reference_rows,
    ), contract


@task(name="read-window", cache_policy=NO_CACHE)
def read_window(
    settings: Settings, model_name: str, window_size: int, since: datetime | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The newest ``window_size`` logged predictions (at/after ``since``) and the feedback labels. In team mode
    the window's parts are read from S3, one task per part on Dask when MLOOP_DASK_ADDRESS is set."""
    from mloop.core.partitions import partition_mapper
    from serving.log.feedback import read_feedback
    from serving.log.predictions import read_predictions
    from serving.log.remote_parts import remote_log

    remote = remote_log(settings)  # team mode: the parts in S3; else None (local files)
    with partition_mapper("" if remote is None else None) as map_parts:
        window = read_predictions(
            settings.state.predictions,
            model_name,
            last_n=window_size,
            since=since,
            remote=remote,
            map_parts=map_parts,
        )
    feedback = read_feedback(settings.state.feedback, model_name, remote=remote)
    return window, feedback


@task(name="model-config", cache_policy=NO_CACHE)
def window_limits(
    settings: Settings,
    model_name: str,
    window_size: int | None,
    min_rows: int | None,
    fingerprint: str | None = None,
) -> tuple[int, int, str]:
    """(window size, minimum rows, log fingerprint): the values asked for, else the model's own (else the
    global settings), and the digest of its log files before they are read (see ``monitoring.sweep``;
    ``fingerprint`` when the caller took it already, e.g. the sweep's pre-check: one listing, not two)."""
    from monitoring.model_config import resolve_config

    config = resolve_config(settings, model_name)
    return (
        window_size or config.window_size,
        min_rows or config.min_rows,
        fingerprint or _fingerprint(settings, model_name),
    )


def _fingerprint(settings: Settings, model_name: str) -> str:
    """:func:`monitoring.sweep.log_fingerprint` of the model's local or (team mode) S3 log parts."""
    from monitoring.sweep import log_fingerprint
    from serving.log.remote_parts import remote_log

    return log_fingerprint(
        settings.state.predictions, settings.state.feedback, model_name, remote_log(settings)
    )


run_checks = task(name="check", cache_policy=NO_CACHE)(check_window)
"""Drift (Evidently) and, with enough labels, quality; returns the result and both snapshots."""


@task(name="publish", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def publish(
    settings: Settings,
    result: DriftResult,
    snapshot: Any,
    quality_snapshot: Any,
    flow_run_id: str | None,
) -> tuple[str, str | None, str | None]:
    """HTML reports (drift.html, quality.html) + result.json, MLflow monitoring run, Evidently workspace snapshot."""
    from monitoring.reports import publish_check

    return publish_check(
        settings.state, settings.tracking_uri, result, snapshot, quality_snapshot, flow_run_id
    )


@flow(name="monitor")
def monitor_flow(
    model_name: ModelName,
    window_size: int | None = None,
    since: datetime | None = None,
    version: str = "champion",
    options: MonitorOptions | None = None,
    skip_unchanged: bool = False,
) -> MonitorResult:
    """Check the newest predictions of a model for data drift and quality loss; emit events.

    Args:
        model_name: Registered model (== dataset) name.
        window_size: Check the newest N logged predictions; empty = the model's window (`mloop monitor configure`).
        since: Only predictions at/after this time (UTC); empty = no time limit.
        version: Model version or alias whose training data is the reference (default: champion).
        options: Sampling, seeds, quality tolerance, minimum rows (empty = the model's), publishing.
        skip_unchanged: Skip when no prediction or label arrived since the last check of this version.
    """
    from prefect.runtime import flow_run

    return check_one_model(
        Settings(),
        model_name,
        window_size=window_size,
        since=since,
        version=version,
        options=options or MonitorOptions(),
        skip_unchanged=skip_unchanged,
        run_id=str(flow_run.get_id() or "") or None,
    )


def check_one_model(
    settings: Settings,
    model_name: str,
    *,
    window_size: int | None,
    since: datetime | None,
    version: str,
    options: MonitorOptions,
    skip_unchanged: bool,
    run_id: str | None,
    fingerprint: str | None = None,
) -> MonitorResult:
    """The monitor's steps for one model, as tasks of the calling run: the ``monitor`` flow's whole body,
    and one model's part of a sweep (inside its ``check-model`` task, so a sweep of many models pays no
    subflow per model). ``run_id`` is the flow run recorded on the MLflow monitoring run; ``fingerprint`` the
    log fingerprint when the caller took it already (:func:`window_limits`)."""
    from prefect.artifacts import create_markdown_artifact

    from monitoring import sweep, verdict
    from monitoring.checks import quality_metric, reference_version

    settings.state.ensure()
    window_size, min_rows, fingerprint = window_limits(
        settings, model_name, window_size, options.min_rows, fingerprint
    )
    info, lineage = resolve_model(settings, model_name, version)
    window, feedback = read_window(settings, model_name, window_size, since)
    versions = verdict.window_versions(window)
    if (skipped := verdict.skip_reason(len(window), min_rows)) is not None:
        return _skipped(model_name, info.version, skipped, versions)
    mark, same = sweep.compare_mark(
        settings.state.root, model_name, window, len(feedback), info.version
    )
    if skip_unchanged and same:
        return _skipped(model_name, info.version, same, versions, status="unchanged")
    dataset, md5 = reference_version(lineage)
    reference, contract = reference_data(settings, model_name, info.version, dataset, md5, options)
    result, snapshot, quality_snapshot = run_checks(
        reference,
        window,
        feedback,
        contract,
        model_name=model_name,
        model_version=info.version,
        baseline_metrics=info.metrics,
        gate_metric=quality_metric(contract.task, settings.gate_metric),
        drift_share_threshold=settings.drift_share_threshold,
        options=options,
    )
    html = mlflow_run = snap_id = None
    if options.publish:
        html, mlflow_run, snap_id = publish(settings, result, snapshot, quality_snapshot, run_id)
        result = result.model_copy(update={"report_path": html})
    create_markdown_artifact(
        key=artifact_key("drift", model_name),
        markdown=_summary(settings, result, html, mlflow_run),
        description=f"drift check of {model_name} v{info.version}",
    )
    emitted = _emit(model_name, info.version, result)
    sweep.write_mark(
        settings.state.root, model_name, mark.model_copy(update={"log_fingerprint": fingerprint})
    )
    get_run_logger().info("monitor %s v%s: %s", model_name, info.version, verdict.reason(result))
    return MonitorResult(
        model_name=model_name,
        model_version=info.version,
        status=verdict.status(result),
        reason=verdict.reason(result),
        drift=result,
        report_path=html,
        mlflow_run_id=mlflow_run,
        workspace_snapshot_id=snap_id,
        events=emitted,
        window_versions=versions,
    )


@task(name="check-model", cache_policy=NO_CACHE, task_run_name="check-{model_name}")
def check_model(
    settings: Settings,
    model_name: str,
    champion: str,
    skip_unchanged: bool,
    full_reports: bool = False,
    sweep_run_id: str | None = None,
) -> SweepEntry:
    """One model of a sweep: the monitor's steps as nested tasks of this task run (no subflow: a flow run
    per model cost the sweep about 3 s of thread time per model), summed up; a failure is an entry, not an
    error. Each model still gets its own report, MLflow run, ``drift-<model>`` artifact and events.

    A model whose champion and log files are as at its last check is not run at all (``unchanged``).
    Unless ``full_reports``, only a model whose check finds drift or quality loss gets the Evidently
    report (``MonitorOptions.full_report="on-finding"``): the others are scored with the same stat tests."""
    import time

    from prefect.runtime import task_run

    from monitoring import sweep

    started = time.perf_counter()
    task_run_id = str(task_run.get_id() or "") or None
    fingerprint = None
    if skip_unchanged:
        fingerprint = _fingerprint(settings, model_name)
        if same := sweep.unchanged_since_mark(
            sweep.read_mark(settings.state.root, model_name), champion, fingerprint
        ):
            return SweepEntry(
                model_name=model_name,
                model_version=champion,
                status="unchanged",
                reason=same,
                task_run_id=task_run_id,
                seconds=round(time.perf_counter() - started, 2),
            )
    options = MonitorOptions(full_report="always" if full_reports else "on-finding")
    try:
        result = check_one_model(
            settings,
            model_name,
            window_size=None,
            since=None,
            version="champion",
            options=options,
            skip_unchanged=skip_unchanged,
            run_id=sweep_run_id,
            fingerprint=fingerprint,
        )
    except Exception as exc:
        get_run_logger().warning("check of %s failed: %s", model_name, exc)
        reason = getattr(exc, "what", None) or f"{type(exc).__name__}: {exc}"
        return SweepEntry(
            model_name=model_name,
            status="failed",
            reason=str(reason)[:500],
            task_run_id=task_run_id,
            seconds=round(time.perf_counter() - started, 2),
        )
    return SweepEntry(
        model_name=model_name,
        model_version=result.model_version,
        status=result.status,
        reason=result.reason,
        events=result.events,
        task_run_id=task_run_id,
        report_path=result.report_path,
        mlflow_run_id=result.mlflow_run_id,
        seconds=round(time.perf_counter() - started, 2),
    )


@flow(name="monitor-sweep")
def monitor_sweep_flow(
    models: list[ModelName] | None = None,
    workers: int | None = None,
    skip_unchanged: bool = True,
    full_reports: bool = False,
) -> SweepResult:
    """Check every served model (every registered model with a champion) with its own window and minimum.

    Args:
        models: Only these models; empty = every model with a champion.
        workers: Models checked at once (threads); empty = MLOOP_MONITOR_SWEEP_WORKERS.
        skip_unchanged: Skip a model with no new prediction or label since its last check.
        full_reports: Build the Evidently report of every model; off = only of a model whose check finds
            drift or quality loss (the others are scored with the same stat tests, several times faster).
    """
    import time

    from prefect.runtime import flow_run

    from monitoring.sweep import select_models
    from serving.control.fleet import champion_versions

    started = time.perf_counter()
    settings = Settings()
    settings.state.ensure()
    sweep_run_id = str(flow_run.get_id() or "") or None
    # every served model: each registered model with a champion
    champions = champion_versions(settings)
    selected, unknown = select_models(champions, models)
    if unknown:
        get_run_logger().warning("not served (no champion): %s", ", ".join(unknown))
    checks = [
        {
            "settings": settings,
            "model_name": n,
            "champion": champions[n],
            "skip_unchanged": skip_unchanged,
            "full_reports": full_reports,
            "sweep_run_id": sweep_run_id,
        }
        for n in selected
    ]
    entries = _check_all(checks, workers or settings.monitor_sweep_workers)
    result = SweepResult(
        models=entries, unknown=unknown, seconds=round(time.perf_counter() - started, 2)
    )
    _publish_sweep(settings, result)
    return result


def _check_all(checks: list[dict[str, Any]], workers: int) -> list[SweepEntry]:
    """Run :func:`check_model` for each set of parameters, ``workers`` at once (threads), in order."""
    from prefect.task_runners import ThreadPoolTaskRunner

    if not checks:
        return []
    with ThreadPoolTaskRunner(max_workers=min(workers, len(checks))) as runner:
        futures = [runner.submit(check_model, params) for params in checks]
        return [f.result() for f in futures]


def _publish_sweep(settings: Settings, result: SweepResult) -> None:
    """The sweep's markdown artifact (one row a model, with links) and its summary log line."""
    from prefect.artifacts import create_markdown_artifact

    from monitoring.sweep import SWEEP_ARTIFACT_KEY, sweep_markdown

    entries = result.models
    create_markdown_artifact(
        key=SWEEP_ARTIFACT_KEY,
        markdown=sweep_markdown(result, _links(settings, entries)),
        description=f"monitor sweep of {len(entries)} models",
    )
    get_run_logger().info(
        "sweep of %d models in %.1f s: %d failed, %d with events",
        len(entries),
        result.seconds,
        len(result.failed),
        sum(1 for e in entries if e.events),
    )


def _links(settings: Settings, entries: list[SweepEntry]) -> dict[str, dict[str, str]]:
    """Per model: its check-model task run in the Prefect UI (its steps, logs and artifact), its HTML report,
    its MLflow run."""
    from mloop.core.service_urls import connect_host
    from monitoring.reports import mlflow_run_link

    prefect_ui = f"http://{connect_host(settings.host)}:{settings.prefect_port}"
    out: dict[str, dict[str, str]] = {}
    for e in entries:
        links: dict[str, str] = {}
        if e.task_run_id:
            links["check"] = f"{prefect_ui}/runs/task-run/{e.task_run_id}"
        if e.report_path:
            links["report"] = f"file://{e.report_path}"
        if e.mlflow_run_id:
            try:
                links["MLflow run"] = mlflow_run_link(
                    settings.tracking_uri, settings.host, settings.mlflow_port, e.mlflow_run_id
                )
            except Exception:
                pass
        out[e.model_name] = links
    return out


def _summary(
    settings: Settings, result: DriftResult, html: str | None, mlflow_run: str | None
) -> str:
    """The markdown artifact: the check's summary with links to the HTML report and the MLflow run."""
    from monitoring.reports import markdown_summary, mlflow_run_link

    mlflow_link = None
    if mlflow_run:
        mlflow_link = mlflow_run_link(
            settings.tracking_uri, settings.host, settings.mlflow_port, mlflow_run
        )
    return markdown_summary(result, report_link=html and f"file://{html}", mlflow_link=mlflow_link)


def _skipped(
    model_name: str,
    model_version: str,
    reason: str,
    versions: list[str],
    status: MonitorStatus = "skipped",
) -> MonitorResult:
    """Too few (or no new) predictions to compare: say so (log, artifact) and check nothing."""
    from prefect.artifacts import create_markdown_artifact

    from monitoring.verdict import skipped_markdown

    get_run_logger().info(reason)
    create_markdown_artifact(
        key=artifact_key("drift", model_name), markdown=skipped_markdown(model_name, reason)
    )
    return MonitorResult(
        model_name=model_name,
        model_version=model_version,
        status=status,
        reason=reason,
        window_versions=versions,
    )


def _emit(model_name: str, model_version: str, result: DriftResult) -> list[str]:
    """Emit the check's events on ``mloop.model.<name>`` (label ``mloop.model_version``); their names."""
    from monitoring.verdict import monitor_events

    emitted = []
    for event, payload in monitor_events(result):
        events.emit(
            event,
            events.model_resource(model_name),
            payload,
            **{TAG_MODEL_VERSION: str(model_version)},
        )
        emitted.append(event)
    return emitted

"""Publishing a drift/quality check: HTML report, MLflow monitoring run, Evidently workspace, markdown.

I/O edge of the monitoring capability. Every function gets its paths/URIs as arguments; nothing is
cached (each check writes new files and a new run). Heavy libraries are imported inside functions.

Layout: ``<reports>/<model>/<UTC timestamp>-v<version>/drift.html`` plus ``result.json`` (the typed
result), one folder per check so older reports stay browsable. The model name follows the one name
rule and the folder must stay under ``<reports>`` (:func:`mloop.core.names.child_path`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.core.names import check_name, child_path
from mloop.core.tags import (
    TAG_DATASET_DRIFT,
    TAG_FLOW_RUN_ID,
    TAG_LAST_MONITORING_RUN,
    TAG_MODEL_NAME,
    TAG_MODEL_VERSION,
    TAG_MONITORING,
)
from monitoring.drift import DriftResult

if TYPE_CHECKING:  # pragma: no cover
    from evidently.core.report import Snapshot
    from mlflow import MlflowClient

    from mloop.core.paths import StatePaths

MONITORING_EXPERIMENT = "mloop-monitoring"
WORKSPACE_PROJECT_PREFIX = "mloop-"


def report_folder(
    reports_root: Path, model_name: str, model_version: str | None, when: datetime | None = None
) -> Path:
    """A new, unique folder for one check's report files (not created); raises MloopError for a model
    name that breaks the rule or a version that would leave ``reports_root``."""
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return child_path(
        reports_root, check_name(model_name, "model"), f"{stamp}-v{model_version or 'unknown'}"
    )


def write_report(
    result: DriftResult,
    snapshot: Snapshot | None,
    folder: Path,
    extra_snapshots: list[Snapshot] | None = None,
) -> Path:
    """Write ``drift.html`` (the Evidently report) and ``result.json``; returns the HTML path.

    ``extra_snapshots`` (e.g. a classification-quality report) are saved next to it as
    ``quality.html``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    html = folder / "drift.html"
    if snapshot is not None:
        snapshot.save_html(str(html))
    else:  # screened (no finding, see MonitorOptions.full_report) or every column null on one side
        html.write_text(summary_html(result))
    for extra in extra_snapshots or []:
        extra.save_html(str(folder / "quality.html"))
    result = result.model_copy(update={"report_path": str(html)})
    (folder / "result.json").write_text(result.model_dump_json(indent=2))
    return html


def summary_html(result: DriftResult) -> str:
    """A plain HTML page of the check's column scores, for a check without an Evidently report."""
    from html import escape

    why = (
        "Scored with Evidently's stat tests (the report's methods and thresholds) and nothing was found, so no "
        "Evidently report was built. <code>mloop monitor check MODEL</code> builds the full report."
        if not result.full_report
        else "No column could go through Evidently (all null on one side)."
    )
    rows = "".join(
        f"<tr><td>{escape(c.column)}</td><td>{escape(c.method)}</td><td>{c.score:.4f}</td><td>{c.threshold:g}</td>"
        f"<td>{'yes' if c.drifted else 'no'}</td></tr>"
        for c in result.columns
    )
    title = escape(f"Drift check: {result.model_name or '?'} v{result.model_version or '?'}")
    return (
        f"<html><head><meta charset='utf-8'><title>{title}</title></head><body><h1>{title}</h1><p>{why}</p>"
        f"<p>Drift share {result.drift_share:.2f} (threshold {result.drift_share_threshold:.2f}); window "
        f"{result.window.rows} rows.</p><table border='1'><tr><th>column</th><th>method</th><th>score</th>"
        f"<th>threshold</th><th>drifted</th></tr>{rows}</table></body></html>"
    )


def markdown_summary(
    result: DriftResult, report_link: str | None = None, mlflow_link: str | None = None
) -> str:
    """A short markdown table for a Prefect artifact: verdict, window, drifted columns, quality."""
    verdict = "**DRIFT**" if result.dataset_drift else "no dataset drift"
    w = result.window
    lines = [
        f"# Drift check: {result.model_name or '?'} v{result.model_version or '?'}",
        "",
        f"{verdict}: {len(result.drifted_columns)}/{len(result.columns)} columns drifted "
        f"(share {result.drift_share:.2f}, threshold {result.drift_share_threshold:.2f}).",
        f"Window: {w.rows} rows ({w.start} to {w.end}); reference {w.reference_rows} rows"
        + (
            f"; sampled {w.sampled_rows}/{w.sampled_reference_rows} (seed {w.seed})"
            if w.sampled_rows < w.rows
            else ""
        )
        + ".",
        "",
        "| column | method | score | threshold | drifted |",
        "|---|---|---|---|---|",
    ]
    ordered = sorted(result.columns, key=lambda c: (not c.drifted, -c.score))
    for c in ordered[:12]:
        name = f"{c.column} (prediction)" if c.is_prediction else c.column
        verdict = (
            "no"
            if not c.drifted
            else "yes"
            if not c.null_surge
            else (f"yes (nulls {c.null_share_reference:.0%} -> {c.null_share_current:.0%})")
        )
        lines.append(f"| {name} | {c.method} | {c.score:.4f} | {c.threshold:g} | {verdict} |")
    if len(ordered) > 12:
        lines.append(f"| ... {len(ordered) - 12} more | | | | |")
    if result.quality is not None:
        q = result.quality
        lines += [
            "",
            f"Quality on {q.labelled_rows} labelled rows: {'**DEGRADED**' if q.degraded else 'ok'} "
            f"(tolerance {q.tolerance:g}).",
            "",
            "| metric | current | champion holdout | drop |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {c.metric} | {c.current:.4f} | {c.baseline:.4f} | {c.drop:+.4f} |"
            for c in q.comparisons
        ]
    if not result.full_report:
        lines += [
            "",
            "Screened with Evidently's stat tests, nothing found: no Evidently report was built "
            "(`mloop monitor check` builds it).",
        ]
    if report_link or result.report_path:
        lines += [
            "",
            f"Report: [{report_link or result.report_path}]({report_link or result.report_path})",
        ]
    if mlflow_link:
        lines.append(f"MLflow monitoring run: {mlflow_link}")
    return "\n".join(lines)


def log_monitoring_run(
    tracking_uri: str,
    result: DriftResult,
    report_folder_path: Path,
    *,
    artifact_root: Path | None,
    flow_run_id: str | None = None,
) -> str:
    """Log the check as an MLflow run in experiment ``mloop-monitoring``; returns the run id.

    The run carries the model name/version tags (``mloop.model_name``/``mloop.model_version``),
    metrics (drift share, drifted count, per-column scores, quality), and the report folder as
    artifacts. The model version gets a tag ``mloop.last_monitoring_run`` pointing back to it.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp_id = _monitoring_experiment(client, artifact_root)
    tags: dict[str, str] = {
        TAG_MONITORING: "drift",
        TAG_DATASET_DRIFT: str(result.dataset_drift).lower(),
    }
    if result.model_name:
        tags[TAG_MODEL_NAME] = result.model_name
    if result.model_version:
        tags[TAG_MODEL_VERSION] = str(result.model_version)
    if flow_run_id:
        tags[TAG_FLOW_RUN_ID] = flow_run_id
    run = client.create_run(
        exp_id, run_name=f"monitor-{result.model_name}-v{result.model_version}", tags=tags
    )
    run_id = run.info.run_id
    metrics: dict[str, float] = {
        "drift_share": result.drift_share,
        "drifted_columns": float(len(result.drifted_columns)),
        "window_rows": float(result.window.rows),
    }
    for col in result.columns:
        metrics[f"drift_score.{_safe(col.column)}"] = col.score
    if result.quality is not None:
        for name, value in result.quality.metrics.items():
            metrics[f"quality.{name}"] = value
        metrics["quality_degraded"] = float(result.quality.degraded)
    from mlflow.entities import Metric, Param

    now = int(datetime.now(UTC).timestamp() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        params=[
            Param("num_method", result.options.num_method),
            Param("cat_method", result.options.cat_method),
            Param("threshold", str(result.options.threshold)),
            Param("drift_share_threshold", str(result.drift_share_threshold)),
            Param("max_rows", str(result.options.max_rows)),
            Param("seed", str(result.options.seed)),
        ],
    )
    client.log_artifacts(run_id, str(report_folder_path), artifact_path="report")
    client.set_terminated(run_id)
    if result.model_name and result.model_version:
        try:
            client.set_model_version_tag(
                result.model_name, str(result.model_version), TAG_LAST_MONITORING_RUN, run_id
            )
        except Exception:
            pass
    return run_id


def _monitoring_experiment(client: MlflowClient, artifact_root: Path | None) -> str:
    """The id of experiment ``mloop-monitoring``, created on first use (artifacts under
    ``artifact_root/monitoring``; None: where the tracking server chooses, team mode's S3 store)."""
    exp = client.get_experiment_by_name(MONITORING_EXPERIMENT)
    if exp is not None:
        return str(exp.experiment_id)
    location: str | None = None
    if artifact_root is not None:
        folder = (artifact_root / "monitoring").resolve()
        folder.mkdir(parents=True, exist_ok=True)
        location = folder.as_uri()
    try:
        return str(client.create_experiment(MONITORING_EXPERIMENT, artifact_location=location))
    except Exception:  # created concurrently by another check
        exp = client.get_experiment_by_name(MONITORING_EXPERIMENT)
        if exp is None:
            raise
        return str(exp.experiment_id)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in name)


def add_to_workspace(
    workspace: Path, model_name: str, snapshot: Snapshot, name: str | None = None
) -> str:
    """Add a snapshot to the Evidently workspace project ``mloop-<model>``; returns the snapshot id.

    The project (and a dashboard: drifted-column share over time and per check) is created on first
    use, so ``evidently ui --workspace <workspace>`` shows drift over time.
    """
    check_name(model_name, "model")
    from filelock import FileLock

    workspace.mkdir(parents=True, exist_ok=True)
    with FileLock(
        str(workspace / f".mloop-{model_name}.lock"), timeout=60
    ):  # one project per model, even in a sweep
        return _add_snapshot(_snapshot_workspace(workspace), model_name, snapshot, name)


def _snapshot_workspace(workspace: Path) -> Any:
    """Evidently's local ``Workspace`` on its file state only.

    ``Workspace.__init__`` also builds a dataset manager that reads and parses every snapshot of
    every project in the folder (measured: 8-10 s with 80 snapshots, and it grows with every check of
    every model). Adding a snapshot without its data (``include_data=False``), finding and creating a
    project and saving its dashboard use only the file state (``LocalState``), so that is all this opens.
    """
    from evidently.ui.storage.local.base import LocalState
    from evidently.ui.workspace import Workspace

    class _StateOnlyWorkspace(Workspace):
        def __init__(self, path: str) -> None:
            self.path = path
            self.state = LocalState(path)

    return _StateOnlyWorkspace(str(workspace))


def _add_snapshot(ws: Any, model_name: str, snapshot: Snapshot, name: str | None) -> str:
    """Add ``snapshot`` to the project ``mloop-<model>`` of ``ws``, creating it (and its dashboard) first."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import counter_panel, line_plot_panel, text_panel

    project_name = WORKSPACE_PROJECT_PREFIX + model_name
    found = ws.search_project(project_name)
    if found:
        project = found[0]
    else:
        project = ws.create_project(
            project_name, description=f"mloop drift checks of model {model_name}"
        )
        share = PanelMetric(
            legend="share of drifted columns",
            metric="evidently:metric_v2:DriftedColumnsCount",
            metric_labels={"value_type": "share"},
        )
        project.dashboard.add_panel(text_panel(title=f"mloop drift: {model_name}"))
        project.dashboard.add_panel(
            counter_panel(
                title="Share of drifted columns (last check)",
                values=[share],
                aggregation="last",
                size="half",
            )
        )
        project.dashboard.add_panel(
            line_plot_panel(title="Share of drifted columns over time", values=[share])
        )
    ref = ws.add_run(project.id, snapshot, include_data=False, name=name)
    return str(ref.id)


def publish_check(
    state: StatePaths,
    tracking_uri: str,
    result: DriftResult,
    snapshot: Snapshot | None,
    quality_snapshot: Snapshot | None,
    flow_run_id: str | None = None,
) -> tuple[str, str, str | None]:
    """Everything a check publishes under MLOOP_HOME: the HTML reports (drift.html, quality.html) and
    result.json, the MLflow monitoring run, the Evidently workspace snapshot.

    Returns (HTML path, MLflow run id, workspace snapshot id or None without a drift snapshot).
    """
    folder = report_folder(state.reports, result.model_name or "model", result.model_version)
    html = write_report(
        result, snapshot, folder, [quality_snapshot] if quality_snapshot is not None else None
    )
    run_id = log_monitoring_run(
        tracking_uri,
        result.model_copy(update={"report_path": str(html)}),
        folder,
        artifact_root=state.mlflow_artifact_root,
        flow_run_id=flow_run_id,
    )
    snap_id = None
    if snapshot is not None:
        snap_id = add_to_workspace(
            state.evidently_workspace,
            result.model_name or "model",
            snapshot,
            name=f"v{result.model_version} {folder.name}",
        )
    return str(html), run_id, snap_id


def mlflow_run_link(tracking_uri: str, host: str, port: int, run_id: str) -> str:
    """URL of a run in the local MLflow UI (``mloop up`` serves it on ``host:port``)."""
    from mlflow import MlflowClient

    experiment = MlflowClient(tracking_uri).get_run(run_id).info.experiment_id
    return f"http://{host}:{port}/#/experiments/{experiment}/runs/{run_id}"


def result_json(result: DriftResult) -> dict[str, Any]:
    return json.loads(result.model_dump_json())

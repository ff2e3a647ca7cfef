"""One monitoring check of a prediction window: drift vs the reference and, with labels, quality.

Pure apart from CPU (Evidently is imported inside): takes DataFrames and options, returns the
typed result and the Evidently snapshots to publish.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from mloop.core.contract import DatasetContract
from mloop.core.errors import MloopError
from mloop.core.lineage import ModelLineage
from monitoring.drift import DriftResult

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from evidently.core.report import Snapshot

QUALITY_METRIC_REGRESSION = "r2"


class MonitorOptions(BaseModel):
    """How the monitor compares the window with the reference."""

    reference_rows: int = Field(
        default=50_000,
        ge=100,
        description="Sample the reference (training) data to at most this many rows (seeded).",
    )
    max_rows: int = Field(
        default=50_000,
        ge=100,
        description="Evidently sees at most this many rows per side (seeded).",
    )
    seed: int = Field(default=0, description="Seed of every sample.")
    min_rows: int | None = Field(
        default=None,
        ge=1,
        description="Fewer predictions in the window: skip the check (empty = the model's minimum, MLOOP_MONITOR_MIN_ROWS).",
    )
    quality_tolerance: float = Field(
        default=0.05,
        ge=0,
        description="Largest accepted drop of the gate metric vs the champion's holdout.",
    )
    min_labels: int = Field(
        default=30, ge=1, description="Fewer feedback labels in the window: no quality verdict."
    )
    publish: bool = Field(
        default=True, description="Write the HTML report, MLflow run and Evidently snapshot."
    )
    full_report: Literal["always", "on-finding"] = Field(
        default="always",
        description="always: every check builds Evidently's full report (HTML, workspace snapshot); on-finding: "
        "the columns are scored with the same Evidently stat tests first, and only a check that finds drift or "
        "quality loss builds the full report (the monitor sweep's default: a check with no finding costs a "
        "fraction of one with the report).",
    )


def quality_metric(task: str, gate_metric: str) -> str:
    """The metric quality is judged on: the gate metric for classification, r2 for regression."""
    return gate_metric if task == "classification" else QUALITY_METRIC_REGRESSION


def reference_version(lineage: ModelLineage) -> tuple[str, str]:
    """(dataset name, md5) the model was trained on: the reference of its drift check."""
    if not lineage.dataset_md5:
        raise MloopError(
            f"model {lineage.model_name} v{lineage.model_version} has no dataset md5 in its lineage",
            where="MLflow model version tags",
            fix="train the model with `mloop train` so the version records its dataset",
        )
    return lineage.dataset_name, lineage.dataset_md5


def check_window(
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
) -> tuple[DriftResult, Snapshot | None, Snapshot | None]:
    """Drift (Evidently) and, with enough labels, quality; the result, the drift snapshot and the
    quality snapshot (None unless quality was judged and ``options.publish``). ``reference`` and
    ``window`` are in the prediction log's layout (:mod:`serving.log.layout`; the scored reference of
    :func:`monitoring.scoring.predict_frame`, the window of :func:`serving.log.predictions.read_predictions`).

    With ``options.full_report == "on-finding"`` the drift scores come from the screen first (the same
    Evidently stat tests without the report, :func:`monitoring.drift.screen_scores`); the snapshots are
    built only when the screen or the quality check finds something, so a check with no finding
    publishes its scores and a summary page but no Evidently report."""
    from functools import partial

    from monitoring.drift import PREDICTION_COLUMNS, DriftOptions, drift_report
    from monitoring.quality import check_quality, quality_report
    from monitoring.scoring import LABEL_COLUMN, labelled_window, score_column
    from monitoring.window import check_frame

    drift_options = DriftOptions(
        drift_share_threshold=drift_share_threshold, max_rows=options.max_rows, seed=options.seed
    )
    current, names = check_frame(window)  # features by their names, the log's columns apart
    drift = partial(
        drift_report,
        check_frame(reference)[0],
        current,
        contract,
        options=drift_options,
        model_name=model_name,
        model_version=model_version,
        time_column=names["timestamp"],
        prediction_columns=[names[c] for c in PREDICTION_COLUMNS],
    )
    screen_first = options.full_report == "on-finding" or not options.publish
    result, snapshot = drift(report=not screen_first)
    labelled = labelled_window(window, feedback)
    quality = None
    score = None
    if labelled is not None:
        score = score_column(labelled, contract.task)
        quality = check_quality(
            labelled,
            contract.task,
            baseline_metrics,
            tolerance=options.quality_tolerance,
            min_rows=options.min_labels,
            label_column=LABEL_COLUMN,
            score_column=score,
            only=[gate_metric] if gate_metric else None,
        )
        result = result.model_copy(update={"quality": quality})
    finding = result.dataset_drift or (quality is not None and quality.degraded)
    full = options.publish and (not screen_first or finding)
    if (
        full and screen_first
    ):  # the screen found something: the full report, for the people who look at it
        reported, snapshot = drift(report=True)
        result = reported.model_copy(
            update={"quality": quality, "seconds": result.seconds + reported.seconds}
        )
    quality_snapshot = None
    if quality is not None and full and labelled is not None:
        quality_snapshot = quality_report(
            labelled, contract.task, label_column=LABEL_COLUMN, score_column=score
        )
    return result, snapshot, quality_snapshot

"""Ingest flow: contract check -> DVC version -> ``mloop.dataset.versioned`` event.

Thin orchestration over :func:`mloop.core.datasets.ingest_dataset`. Nothing is cached: an ingest has
side effects (DVC cache, remote, version index) and is already idempotent by content (identical
bytes return the existing version and write nothing). Transient failures (I/O, remote) are
retried once; a contract rejection is not retried, since the same bytes would fail again.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mloop.core import events
from mloop.core.artifacts import artifact_key
from mloop.core.contract import ValidationReport
from mloop.core.datasets import DataRejected, IngestResult, ingest_dataset
from mloop.core.errors import MloopError
from mloop.core.lineage import DatasetVersion
from mloop.core.names import DatasetName
from mloop.core.settings import Settings


def _retry_transient(task, task_run, state) -> bool:
    """Retry only errors that are not the user's (a rejected file fails the same way twice)."""
    try:
        state.result()
    except MloopError:
        return False
    except Exception:
        return True
    return False


@task(
    name="version-dataset",
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=_retry_transient,
    cache_policy=NO_CACHE,
)
def version_dataset(
    settings: Settings,
    path: str,
    dataset: str,
    target: str | None,
    task_kind: Literal["classification", "regression"] | None,
    time_column: str | None,
) -> IngestResult:
    """Validate ``path`` (a file, or ``s3://bucket/key`` in team mode) against the contract and version it
    (not cached: it writes state)."""
    return ingest_dataset(
        settings, path, dataset=dataset, target=target, task=task_kind, time_column=time_column
    )


def version_markdown(result: IngestResult) -> str:
    v = result.version
    status = (
        "new version" if result.created else "identical to an existing version (nothing written)"
    )
    lines = [
        f"# Dataset `{v.name}`: {status}",
        "",
        "| field | value |",
        "|---|---|",
        f"| md5 | `{v.md5}` |",
        f"| rows | {v.rows:,} |",
        f"| columns | {len(v.columns)} |",
        f"| file | `{v.path}` ({v.size:,} bytes) |",
        f"| created at | {v.created_at.isoformat()} |",
        f"| pointer commit | {v.git_commit or '-'} |",
        f"| source | `{v.source}` |",
        f"| contract | `{result.contract_path}`{' (inferred now: review and commit it)' if result.contract_created else ''} |",
        "",
        f"Retrieve these exact bytes: `mloop data get {v.name} --version {v.md5} --out FILE`",
    ]
    return "\n".join(lines)


def rejection_markdown(report: ValidationReport, path: str) -> str:
    lines = [
        f"# Dataset `{report.dataset}`: rejected",
        "",
        f"`{path}`: {report.rows:,} rows, {len(report.failures)} failed rule(s). Nothing was versioned.",
        "",
        "| rule | column | rows | share | limit | examples |",
        "|---|---|---|---|---|---|",
    ]
    for f in report.failures:
        share = f"{f.share:.2%}" if f.share is not None else "-"
        limit = f"{f.limit:.2%}" if f.limit is not None else "-"
        examples = ", ".join(f.examples).replace("|", "\\|")
        lines.append(
            f"| {f.rule} | {f.column or '-'} | {f.rows:,} | {share} | {limit} | {examples} |"
        )
    return "\n".join(lines)


@flow(name="ingest", flow_run_name="ingest-{dataset}")
def ingest_flow(
    path: str,
    dataset: DatasetName,
    target: str | None = None,
    task: Literal["classification", "regression"] | None = None,
    time_column: str | None = None,
) -> DatasetVersion:
    """Check a CSV/parquet file against the dataset's contract and version it with DVC.

    The first ingest of a dataset infers its contract (data/<dataset>/contract.yaml). A new
    version emits ``mloop.dataset.versioned``; identical content returns the existing version
    without an event.

    Args:
        path: CSV or parquet file to ingest (absolute, or relative to the flow's working dir); in team mode also
            s3://bucket/key, so the run does not depend on the worker's host.
        dataset: Dataset name (letters, digits, '-', '_', '.'); also the registered model name.
        target: Label column (first ingest only; default "target").
        task: classification or regression (first ingest only; inferred from the target if empty).
        time_column: Event-time column (first ingest only; default: the only datetime column).
    """
    settings = Settings()
    try:
        result = version_dataset(settings, path, dataset, target, task, time_column)
    except DataRejected as exc:
        create_markdown_artifact(
            key=artifact_key("dataset", dataset),
            markdown=rejection_markdown(exc.report, path),
            description=f"Ingest of {dataset} rejected",
        )
        raise
    version = result.version
    create_markdown_artifact(
        key=artifact_key("dataset", dataset),
        markdown=version_markdown(result),
        description=f"Dataset {dataset} {version.md5}",
    )
    if result.created:
        events.emit(
            events.DATASET_VERSIONED,
            events.dataset_resource(version.name),
            {
                "dataset": version.name,
                "md5": version.md5,
                "rows": version.rows,
                "path": version.path,
                "git_commit": version.git_commit,
            },
        )
    return version

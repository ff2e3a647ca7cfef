"""``mloop infra import-home``: copy what a single-machine MLOOP_HOME holds into team mode's shared stores.

A single-machine home keeps the dataset bytes in a local DVC remote, the prediction log and feedback
labels in local parquet parts, and its records (audit log, retrain ledger, dataset version index) in
JSON-lines files. Team mode keeps the same things in S3 and PostgreSQL, in the same layout and the same
row JSON (docs/team-mode.md), so they can be copied as they are:

- ``dvc-remote/files/md5/..`` -> ``s3://bucket/prefix/dvc/files/md5/..`` (DVC's remote layout is the same on
  a folder and on S3, so a team host pulls these versions by md5);
- ``predictions/<model>/date=../part-*.parquet`` and ``feedback/<model>/part-*.parquet`` -> the same
  relative keys under ``prefix/predictions`` and ``prefix/feedback`` (where the team's monitors read);
- each key's rows of ``audit``, ``retrain`` and ``datasets`` -> the PostgreSQL tables, in file order.

It is safe to run twice: an object already in the bucket is not uploaded again, and a key (a model or a
dataset) that already has rows in PostgreSQL is left alone and reported, so no row is ever doubled and
team-mode history is never interleaved with imported history. The source home is only read.

Not copied, because no tool here can (the docs say what to do instead): MLflow runs and the model registry
(versions, aliases: the champion), Prefect's run history, BentoML's local store, reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

from pydantic import BaseModel, Field, RootModel

from mloop.core.errors import MloopError, NotFoundError, NotReadyError
from mloop.core.paths import StatePaths
from mloop.core.s3 import s3_error
from mloop.core.shared import FileRecords, Kind, SharedRecords
from mloop.core.team import ArtifactLayout

RECORD_KINDS: tuple[Kind, ...] = get_args(Kind)
LogKind = Literal["predictions", "feedback"]
NOT_MOVED: tuple[str, ...] = (
    "MLflow runs and the model registry (registered versions, champion aliases): re-train in team mode",
    "Prefect run history, logs and artifacts (deployments and automations: `mloop up` re-creates them)",
    "the BentoML store (models are re-packaged and exported to S3 when a champion is deployed)",
    "reports/, evidently/, notifications and the other local folders of the source home",
)


class ObjectStore(Protocol):
    """The two S3 operations an import needs (a boto3 client in :class:`S3Store`)."""

    def keys(self, prefix: str) -> set[str]:
        """Every object key under ``prefix``."""
        ...

    def upload(self, path: Path, key: str) -> None:
        """Put the file ``path`` at ``key`` (whole or not at all)."""


@dataclass(frozen=True)
class S3Store:
    """:class:`ObjectStore` over a boto3 client and one bucket."""

    client: Any
    bucket: str

    def keys(self, prefix: str) -> set[str]:
        found: set[str] = set()
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{prefix}/"
            ):
                found.update(item["Key"] for item in page.get("Contents", []))
        except Exception as exc:  # botocore's errors: no S3 answers, refused keys, no bucket
            raise _s3_error(exc, f"list s3://{self.bucket}/{prefix}/") from None
        return found

    def upload(self, path: Path, key: str) -> None:
        try:
            self.client.upload_file(str(path), self.bucket, key)
        except Exception as exc:
            raise _s3_error(exc, f"upload {path} to s3://{self.bucket}/{key}") from None


def _s3_error(exc: Exception, doing: str) -> MloopError:
    return s3_error(
        exc,
        doing,
        fix="check the S3 endpoint answers, the bucket exists and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY may "
        "write it; then run the import again (what is in the bucket already is not uploaded twice)",
    )


class _Row(RootModel[dict[str, Any]]):
    """A stored row, as JSON: what :meth:`SharedRecords.append` takes (it serialises a pydantic model)."""


class ImportStep(BaseModel):
    """What one part of the import did (or, with ``dry_run``, would do)."""

    what: str = Field(description="e.g. 'dvc objects', 'predictions parts', 'audit rows of loans'.")
    copied: int = 0
    already_there: int = Field(
        default=0,
        description="Objects in the bucket already, or rows a key already has in PostgreSQL.",
    )
    note: str = ""


class ImportReport(BaseModel):
    """The result of ``mloop infra import-home``."""

    source: str
    dry_run: bool
    steps: list[ImportStep] = Field(default_factory=list)
    not_moved: list[str] = Field(default_factory=lambda: list(NOT_MOVED))


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def copy_objects(
    files: Iterable[Path], root: Path, store: ObjectStore, prefix: str, what: str, *, dry_run: bool
) -> ImportStep:
    """Upload each file under ``root`` to ``prefix/<its path relative to root>`` unless that key exists."""
    existing = store.keys(prefix)
    step = ImportStep(what=what)
    for path in files:
        key = f"{prefix}/{path.relative_to(root).as_posix()}"
        if key in existing:
            step.already_there += 1
            continue
        if not dry_run:
            store.upload(path, key)
        step.copied += 1
    return step


def copy_records(
    source: FileRecords, target: SharedRecords, kind: Kind, *, dry_run: bool
) -> list[ImportStep]:
    """Append each key's rows of ``kind`` to ``target`` in order; a key that has rows there already is skipped."""
    steps: list[ImportStep] = []
    for key in source.keys(kind):
        rows = source.read(kind, key, str)
        step = ImportStep(what=f"{kind} rows of {key}")
        there = len(target.read(kind, key, str))
        if there:
            step.already_there = there
            step.note = f"{key} already has {there} rows in team mode: its {len(rows)} file rows were not copied"
        else:
            for text in rows:
                if not dry_run:
                    target.append(kind, key, _Row.model_validate_json(text))
                step.copied += 1
        steps.append(step)
    return steps


def import_home(
    source: Path,
    records: SharedRecords,
    store: ObjectStore,
    layout: ArtifactLayout,
    *,
    dry_run: bool = False,
) -> ImportReport:
    """Copy the DVC remote, the prediction log and labels, and the records of the home ``source``."""
    from mloop.core.processes import read_pid
    from serving.log.remote_parts import local_parts

    state = StatePaths(root=source)
    if not source.is_dir():
        raise NotFoundError(
            "the home to import is not a folder",
            where=str(source),
            fix="give the single-machine MLOOP_HOME to import",
        )
    if (
        read_pid(state.run, "prefect-server") is not None
        or read_pid(state.run, "serve") is not None
    ):
        raise NotReadyError(
            "a platform still runs on the home to import (its service may still write prediction parts)",
            where=str(source),
            fix=f"stop it first: MLOOP_HOME={source} mloop down",
        )
    report = ImportReport(source=str(source), dry_run=dry_run)
    report.steps.append(
        copy_objects(
            _files(state.dvc_remote),
            state.dvc_remote,
            store,
            layout.key("dvc"),
            "dvc objects",
            dry_run=dry_run,
        )
    )
    logs: tuple[tuple[LogKind, Path], ...] = (
        ("predictions", state.predictions),
        ("feedback", state.feedback),
    )
    for kind, root in logs:
        parts = local_parts(kind, root)
        report.steps.append(
            copy_objects(parts, root, store, layout.key(kind), f"{kind} parts", dry_run=dry_run)
        )
    files = FileRecords.from_state(state)
    for kind in RECORD_KINDS:
        report.steps.extend(copy_records(files, records, kind, dry_run=dry_run))
    return report

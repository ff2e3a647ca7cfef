"""Append-only audit log of registry alias changes: ``<state.audit>/<model>.jsonl``.

One JSON line per attempted change (applied or skipped), written while the registry lock is held,
so the file order is the order in which changes happened. In team mode the log is a table of the
team's PostgreSQL instead (pass ``records``, :func:`mloop.core.shared.shared_records`), read in insertion order. Only appended (fsynced); the one rewrite
is :mod:`mloop.core.jsonl` setting a torn or unparseable line aside into ``<model>.jsonl.torn``. The
model name is checked by the one name rule (:func:`mloop.core.names.check_name`) and the path must
stay inside the audit folder, so no name can write elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from mloop.core.jsonl import append_jsonl, read_jsonl
from mloop.core.names import check_name, child_path
from mloop.core.shared import SharedRecords


class AuditRecord(BaseModel):
    """One alias change (or a refused attempt)."""

    when: datetime = Field(default_factory=lambda: datetime.now(UTC))
    model_name: str
    action: Literal["promote", "rollback"]
    from_version: str | None = Field(
        description="Champion before the change (None: there was none)."
    )
    to_version: str | None = Field(description="Champion after the change.")
    reason: str
    actor: str = Field(description="Who asked: a user name, or 'flow:<flow run name>'.")
    flow_run_id: str | None = None
    outcome: Literal["applied", "skipped"] = "applied"
    detail: str = ""
    gate_metrics: dict[str, float] = Field(default_factory=dict)


def audit_path(audit_dir: Path, model_name: str) -> Path:
    """``<audit_dir>/<model>.jsonl``; raises MloopError for a name that breaks the rule."""
    return child_path(audit_dir, f"{check_name(model_name, 'model')}.jsonl")


def append_audit(
    audit_dir: Path, record: AuditRecord, *, records: SharedRecords | None = None
) -> Path:
    """Append one record (one write of a whole line, then fsync). Returns the log's path (in team mode,
    with ``records``, the row goes to the shared table and the path is where the file would be)."""
    path = audit_path(audit_dir, record.model_name)
    if records is not None:
        records.append("audit", record.model_name, record)
        return path
    audit_dir.mkdir(parents=True, exist_ok=True)
    append_jsonl(
        path,
        record.model_dump_json(),
        what=f"audit log of {record.model_name}",
        fsync=True,
        mode=0o644,
    )
    return path


def read_audit(
    audit_dir: Path, model_name: str, *, records: SharedRecords | None = None
) -> list[AuditRecord]:
    """Every record, oldest first (empty when the model has none); from ``records`` when given (team mode)."""
    path = audit_path(audit_dir, model_name)
    if records is not None:
        return records.read("audit", model_name, AuditRecord.model_validate_json)
    return read_jsonl(path, AuditRecord.model_validate_json, what=f"audit log of {model_name}").rows

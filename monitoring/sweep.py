"""The monitor sweep: which models to check, what changed since their last check, how the sweep reads.

Pure apart from two small edges, :func:`read_mark` / :func:`write_mark` (one JSON file per model under
``MLOOP_HOME/monitoring/marks``: what the last completed check looked at). The sweep flow
(``flows/monitor.py``) checks each selected model with the per-model monitor flow.

"Unchanged" is the sweep's cheap skip: the same champion version, the same newest logged
prediction and the same number of feedback labels as the last completed check means the check
would only repeat its verdict (and its events), so it is not run again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field, ValidationError

from mloop.core.names import check_name, child_path

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from serving.log.remote_parts import RemoteLog

SWEEP_ARTIFACT_KEY = "monitor-sweep"
SweepStatus = Literal["ok", "drift", "degraded", "drift+degraded", "skipped", "unchanged", "failed"]


def select_models(
    champions: Mapping[str, str], requested: Iterable[str] | None
) -> tuple[list[str], list[str]]:
    """(models to check, requested names that have no champion): every champion when ``requested`` is None."""
    if requested is None:
        return sorted(champions), []
    wanted = list(dict.fromkeys(requested))
    return [n for n in wanted if n in champions], [n for n in wanted if n not in champions]


class WindowMark(BaseModel):
    """What one completed check looked at: enough to tell whether anything new arrived since."""

    model_version: str
    rows: int
    newest_timestamp: datetime | None = None
    newest_prediction_id: str | None = None
    feedback_rows: int = 0
    log_fingerprint: str | None = Field(
        default=None,
        description="Digest of the model's prediction and label files when the check read them.",
    )
    checked_at: datetime | None = None


def window_mark(window: pd.DataFrame, feedback_rows: int, model_version: str) -> WindowMark:
    """The mark of a window (pure)."""
    newest_ts = newest_id = None
    if len(window) and "timestamp" in window.columns:
        last = window.iloc[-1]
        newest_ts = (
            last["timestamp"].to_pydatetime()
            if hasattr(last["timestamp"], "to_pydatetime")
            else None
        )
        newest_id = str(last["prediction_id"]) if "prediction_id" in window.columns else None
    return WindowMark(
        model_version=str(model_version),
        rows=len(window),
        newest_timestamp=newest_ts,
        newest_prediction_id=newest_id,
        feedback_rows=feedback_rows,
    )


def unchanged_reason(previous: WindowMark | None, current: WindowMark) -> str | None:
    """Why the check can be skipped (nothing new since ``previous``), or None when it must run."""
    if previous is None:
        return None
    same = (
        previous.model_version == current.model_version
        and previous.newest_prediction_id == current.newest_prediction_id
        and previous.newest_timestamp == current.newest_timestamp
        and previous.feedback_rows == current.feedback_rows
    )
    return _nothing_new(previous) if same else None


def compare_mark(
    state_root: Path, model_name: str, window: pd.DataFrame, feedback_rows: int, model_version: str
) -> tuple[WindowMark, str | None]:
    """The window's mark, and why it may be skipped (None: something is new since the last check)."""
    mark = window_mark(window, feedback_rows, model_version)
    return mark, unchanged_reason(read_mark(state_root, model_name), mark)


def log_fingerprint(
    predictions_dir: Path, feedback_dir: Path, model_name: str, remote: RemoteLog | None = None
) -> str:
    """Digest of the names, sizes and mtimes of the model's prediction-log and feedback parts: cheap (no
    parquet is read) and it changes whenever a prediction or a label is added (parts are append-only).
    With ``remote`` (team mode) the parts are the objects in S3 (one listing each)."""
    import hashlib

    from serving.log.feedback import feedback_parts
    from serving.log.predictions import prediction_files

    digest = hashlib.sha256()
    if remote is not None:
        for part in remote.prediction_parts(model_name) + remote.feedback_parts(
            check_name(model_name, "model")
        ):
            digest.update(f"{part.path}\0{part.size}\0{part.mtime_ns}\n".encode())
        return digest.hexdigest()
    files = prediction_files(predictions_dir, model_name) + feedback_parts(
        feedback_dir / check_name(model_name, "model")
    )
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def unchanged_since_mark(
    previous: WindowMark | None, champion_version: str, fingerprint: str
) -> str | None:
    """The sweep's pre-check, before any flow run: same champion and same log files as the last check."""
    if (
        previous is None
        or previous.log_fingerprint != fingerprint
        or previous.model_version != champion_version
    ):
        return None
    return _nothing_new(previous)


def _nothing_new(previous: WindowMark) -> str:
    """The skip reason of a model with nothing new since ``previous`` (same version by then)."""
    when = (
        previous.checked_at.isoformat(timespec="seconds")
        if previous.checked_at
        else "an earlier run"
    )
    return (
        f"no new predictions or labels since the last check of v{previous.model_version} ({when})"
    )


def mark_path(state_root: Path, model_name: str) -> Path:
    """``<MLOOP_HOME>/monitoring/marks/<name>.json`` for a name that follows the name rule."""
    return child_path(
        state_root / "monitoring" / "marks", check_name(model_name, "model") + ".json"
    )


def read_mark(state_root: Path, model_name: str) -> WindowMark | None:
    """The mark of the model's last completed check (None: none yet, or an unreadable file: check again)."""
    try:
        return WindowMark.model_validate_json(mark_path(state_root, model_name).read_bytes())
    except (OSError, ValidationError):
        return None


def write_mark(state_root: Path, model_name: str, mark: WindowMark) -> None:
    """Record the mark of a completed check (atomic write; ``checked_at`` now unless set)."""
    from datetime import UTC

    from mloop.core.files import write_atomic

    if mark.checked_at is None:
        mark = mark.model_copy(update={"checked_at": datetime.now(UTC)})
    path = mark_path(state_root, model_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, mark.model_dump_json().encode())


class SweepEntry(BaseModel):
    """One model's outcome in a sweep."""

    model_name: str
    model_version: str | None = None
    status: SweepStatus
    reason: str
    events: list[str] = Field(default_factory=list)
    task_run_id: str | None = Field(
        default=None, description="The model's check-model task run in the sweep."
    )
    report_path: str | None = None
    mlflow_run_id: str | None = None
    seconds: float = 0.0


class SweepResult(BaseModel):
    """What one sweep found, per model."""

    models: list[SweepEntry] = Field(default_factory=list)
    unknown: list[str] = Field(
        default_factory=list, description="Requested models without a champion."
    )
    seconds: float = 0.0

    def by_status(self, *statuses: str) -> list[str]:
        return [e.model_name for e in self.models if e.status in statuses]

    @property
    def failed(self) -> list[str]:
        return self.by_status("failed")


def sweep_markdown(result: SweepResult, links: Mapping[str, Mapping[str, str]]) -> str:
    """The sweep's markdown artifact: one row per model with its verdict and links (``links[model]``:
    label -> URL, e.g. the model's flow run, report and MLflow run)."""
    counts: dict[str, int] = {}
    for entry in result.models:
        counts[entry.status] = counts.get(entry.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no served models"
    lines = [
        f"# Monitor sweep: {len(result.models)} models in {result.seconds:.1f} s",
        "",
        summary + ".",
        "",
        "| model | version | status | reason | events | links |",
        "|---|---|---|---|---|---|",
    ]
    for e in result.models:
        status = (
            f"**{e.status}**"
            if e.status in ("drift", "degraded", "drift+degraded", "failed")
            else e.status
        )
        link_text = (
            " · ".join(f"[{label}]({url})" for label, url in links.get(e.model_name, {}).items())
            or "-"
        )
        reason = e.reason.replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| `{e.model_name}` | {e.model_version or '-'} | {status} | {reason} | "
            f"{', '.join(e.events) or '-'} | {link_text} |"
        )
    if result.unknown:
        lines += [
            "",
            "Requested but not served (no champion): "
            + ", ".join(f"`{n}`" for n in result.unknown),
        ]
    return "\n".join(lines) + "\n"

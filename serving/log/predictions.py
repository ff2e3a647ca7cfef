"""The prediction log (the feedback store is :mod:`serving.log.feedback`; their part files, :mod:`serving.log.parts`).

Layout (append-only parquet, readable with plain pandas):

- ``<predictions_dir>/<model>/date=YYYY-MM-DD/part-<utc time>-<pid>-<seq>.parquet``: one row per
  answered record: ``prediction_id, timestamp (UTC), model_name, model_version``,
  ``prediction`` and ``probability`` (classification) or ``score`` (regression), and every input
  feature as ``input.<name>``, apart from the log's own columns whatever its name (parts written
  before, with the inputs under their own names, still read: see :mod:`serving.log.layout`).
- ``<feedback_dir>/<model>/part-<utc time>-<uuid>.parquet``: ``prediction_id, label, timestamp``
  (one label per id: the first; see :mod:`serving.log.feedback` for the trust rule and
  ``<feedback_dir>/<model>/conflicts/part-*.jsonl``).
- ``<predictions_dir or feedback_dir>/<model>/dead-letter/part-*.jsonl`` (+ ``part-*.reason.txt``):
  rows that could not be written as parquet (a value parquet cannot hold, a write that kept
  failing), one JSON object per row, set aside so that logging goes on. Readers of the log skip
  them; the ``on_dead_letter`` callback (the service's ``mloop_predlog_dead_letter_total``
  counter) counts them.

Files are written to a dot-named temporary file and renamed, so a reader never sees half a file.
A part that cannot be read all the same (truncated by a disk fault, garbage bytes) is skipped by
every reader, moved to ``corrupt/`` beside it (with a ``.reason.txt``; never deleted), warned about
and counted (:func:`count_corrupt`).

Parquet writing is off the request path: :class:`PredictionLogger.log` appends the batch to the
write-ahead journal (one ``os.write`` of one JSON line, see :mod:`serving.log.journal`) and to an
in-memory list, under a lock; a background thread turns the pending batches into one parquet file
when ``flush_rows`` rows are pending or every ``flush_seconds``, then deletes the journal segments
those batches were in. :meth:`PredictionLogger.close` (called from the service's ``on_shutdown``
hook) flushes what is left. A worker killed without SIGTERM leaves its segments behind:
:func:`compact_journal` turns the segments of dead writers into parquet parts (idempotently: the
part is named after the segment, and ids already in the writer's own parts are left out), at
service start and in every reader (:func:`prediction_files`, :func:`find_prediction`), so every
answered prediction is in the log after SIGTERM and after SIGKILL alike. With ``journal=False``
(``MLOOP_PREDLOG_JOURNAL=0``) only the in-memory buffer is kept (the pre-journal behaviour).

Team mode (``MLOOP_ARTIFACTS_URI`` set; pass ``remote=serving.log.remote_parts.remote_log(settings)``): every
finished part is also uploaded to S3 under the same relative path (the logger's thread after each flush,
the feedback store after each label part; a failed upload keeps the part local and is retried at the
next flush, the periodic rescan or a restart), and the readers given ``remote`` read the objects in S3
instead of the local folders, so the monitor runs on any host. See :mod:`serving.log.remote_parts`.

A batch is never retried forever: rows that cannot become a parquet table are set aside at once
(the same rows would fail again), and a write that fails (disk, permissions) is retried on the
next ``max_attempts - 1`` flushes, then its batches are set aside too.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serving.log.journal import (
    JOURNAL_DIR,
    Journal,
    batch_line,
    dead_segments,
    parse_segment_name,
    read_segment,
)
from serving.log.layout import current_layout, input_column, marked
from serving.log.parts import (
    DeadLetterHook,
    part_name,
    read_part,
    read_parts,
    set_aside,
    set_aside_part,
    write_atomic,
)

if TYPE_CHECKING:
    from mloop.core.partitions import Mapper
    from serving.log.remote_parts import RemoteLog, Shipper

log = logging.getLogger(__name__)

BASE_COLUMNS = ["prediction_id", "timestamp", "model_name", "model_version"]


def new_prediction_ids(n: int) -> list[str]:
    """``n`` fresh prediction ids (128 random bits as hex, like uuid4: unique across processes and
    restarts); one ``os.urandom`` call per batch."""
    raw = os.urandom(16 * n).hex()
    return [raw[32 * i : 32 * (i + 1)] for i in range(n)]


@dataclass
class _Batch:
    ids: list[str]
    timestamp: datetime
    model_name: str
    model_version: str
    features: dict[str, list[Any]]
    predictions: list[Any]
    values: list[float] | None
    value_name: str  # "probability" or "score"
    attempts: int = 0  # failed writes so far

    def rows(self) -> list[dict[str, Any]]:
        """The batch as log rows (for a dead-letter part)."""
        out = []
        for i, pid in enumerate(self.ids):
            row: dict[str, Any] = {
                "prediction_id": pid,
                "timestamp": self.timestamp.isoformat(),
                "model_name": self.model_name,
                "model_version": self.model_version,
            }
            row.update({input_column(name): values[i] for name, values in self.features.items()})
            row["prediction"] = self.predictions[i] if i < len(self.predictions) else None
            row[self.value_name] = (
                self.values[i] if self.values is not None and i < len(self.values) else None
            )
            out.append(row)
        return out


class PredictionLogger:
    """Buffered, append-only writer of prediction records (thread-safe)."""

    def __init__(
        self,
        predictions_dir: Path,
        *,
        flush_rows: int = 5000,
        flush_seconds: float = 1.0,
        max_attempts: int = 3,
        on_dead_letter: DeadLetterHook | None = None,
        journal: bool = True,
        remote: RemoteLog | None = None,
        ship_rescan_seconds: float = 60.0,
    ) -> None:
        self.root = Path(predictions_dir)
        self.shipper: Shipper | None = None
        if remote is not None:  # team mode: every part also goes to S3 (serving.log.remote_parts)
            from serving.log.remote_parts import Shipper

            self.shipper = Shipper(remote, "predictions", self.root)
        self.ship_rescan_seconds = ship_rescan_seconds
        self._unshipped: list[Path] = []
        self._rescan_at = (
            0.0  # monotonic time of the next scan for parts not shipped (0: at the first flush)
        )
        self.journal = Journal(self.root) if journal else None
        self._segments: list[
            Path
        ] = []  # closed journal segments whose batches are not all written yet
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_attempts = max_attempts
        self.on_dead_letter = on_dead_letter
        self.rows_dead_lettered = 0
        self._pending: list[_Batch] = []
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self.rows_written = 0
        import pyarrow.parquet  # noqa: F401 - import now (~0.7 s), not in the first flush under load

        self._thread = threading.Thread(target=self._run, name="mloop-predlog", daemon=True)
        self._thread.start()

    def log(
        self,
        *,
        ids: list[str],
        model_name: str,
        model_version: str,
        features: dict[str, list[Any]],
        predictions: list[Any],
        values: list[float] | None,
        value_name: str = "probability",
    ) -> None:
        """Journal one batch of answered records (one ``os.write``) and queue it for the parquet writer.

        Call it BEFORE the answer is sent. Raises :class:`serving.log.journal.JournalError` when the
        journal cannot be written (disk full, permissions): the batch is then not logged, and its
        answer must not be sent (write-ahead: no answer without its log line)."""
        batch = _Batch(
            ids,
            datetime.now(UTC),
            model_name,
            model_version,
            features,
            predictions,
            values,
            value_name,
        )
        line = (
            batch_line(
                ids,
                batch.timestamp,
                model_name,
                model_version,
                features,
                predictions,
                values,
                value_name,
                self.journal.dumps,
            )
            if self.journal is not None
            else b""
        )
        with self._lock:  # journal and queue together: a flush takes exactly the batches of the segments it closes
            if self.journal is not None:
                self.journal.append(model_name, line)
            self._pending.append(batch)
            self._pending_rows += len(ids)
            full = self._pending_rows >= self.flush_rows
        if full:
            self._wake.set()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("prediction log flush failed; will retry")
                time.sleep(self.flush_seconds)

    def flush(self) -> int:
        """Write everything pending now; returns the number of rows written."""
        with self._write_lock:
            with self._lock:
                batches, self._pending, self._pending_rows = self._pending, [], 0
                if self.journal is not None:
                    self._segments.extend(self.journal.rotate())
            if not batches:
                self._drop_segments()
                self._ship([])
                return 0
            written = 0
            new_parts: list[Path] = []
            failed: list[_Batch] = []
            error: Exception | None = None
            for (model, day), items in _groups(batches).items():
                try:
                    written += self._write_group(model, day, items, new_parts)
                except Exception as exc:
                    error = exc
                    for b in items:
                        b.attempts += 1
                        if b.attempts < self.max_attempts:
                            failed.append(b)
                        else:
                            self._dead_letter(
                                b, f"write failed {b.attempts} times: {type(exc).__name__}: {exc}"
                            )
            self.rows_written += written
            if failed:
                with self._lock:  # put them back in front, in order
                    self._pending = failed + self._pending
                    self._pending_rows += sum(len(b.ids) for b in failed)
            else:  # every batch taken so far is in a part or set aside: their segments can go
                self._drop_segments()
            self._ship(new_parts)
            if error is not None:
                raise error
            return written

    def _drop_segments(self) -> None:
        segments, self._segments = self._segments, []
        Journal.remove(segments)

    def _write_group(
        self, model: str, day: str, items: list[_Batch], new_parts: list[Path] | None = None
    ) -> int:
        """Write one model/day group as one part (see :func:`_write_batches`); its paths go to ``new_parts``."""
        folder = self.root / model / f"date={day}"

        def next_path() -> Path:
            path = folder / part_name()
            if new_parts is not None:
                new_parts.append(path)
            return path

        return _write_batches(items, next_path, self._dead_letter)

    def _ship(self, new_parts: list[Path], *, rescan: bool = False) -> None:
        """Team mode: upload the parts just written, the ones an earlier upload left behind and, at the first
        flush, every ``ship_rescan_seconds`` and at close, any local part not recorded as shipped (a restart's
        or the journal compaction's). Never raises: the local part stays until its upload succeeds."""
        if self.shipper is None:
            return
        todo = self._unshipped + [p for p in new_parts if p not in self._unshipped]
        if rescan or time.monotonic() >= self._rescan_at:
            self._rescan_at = time.monotonic() + self.ship_rescan_seconds
            todo += [p for p in self.shipper.unshipped() if p not in todo]
        self._unshipped = self.shipper.ship(todo) if todo else []

    def _dead_letter(self, batch: _Batch, reason: str) -> None:
        self.rows_dead_lettered += len(batch.ids)
        set_aside(
            self.root / batch.model_name,
            batch.rows(),
            reason,
            "predictions",
            batch.model_name,
            self.on_dead_letter,
        )

    def close(self, timeout: float = 10.0) -> int:
        """Stop the flusher and write what is pending (idempotent). Returns rows written now."""
        before = self.rows_written
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)
        for _ in range(self.max_attempts):  # after max_attempts failed writes a batch is set aside
            try:
                self.flush()
                break
            except Exception:
                log.exception("prediction log flush failed at shutdown")
        if self.journal is not None:
            with self._write_lock, self._lock:
                self._segments.extend(self.journal.close())
                if not self._pending:  # else the segments stay: compacted once this process is gone
                    self._drop_segments()
        with self._write_lock:
            self._ship([], rescan=True)
        return self.rows_written - before


def _write_batches(
    items: list[_Batch], next_path: Callable[[], Path], dead_letter: Callable[[_Batch, str], None]
) -> int:
    """Write ``items`` as one part (at ``next_path()``); rows that cannot become a table are set
    aside (each batch on its own, so one bad batch costs only its own rows). Returns rows written."""
    try:
        tables = [_table(items)]
    except Exception:
        good = []
        for b in items:
            try:
                _table([b])
                good.append(b)
            except Exception as exc:
                dead_letter(b, f"cannot convert to parquet: {type(exc).__name__}: {exc}")
        try:
            tables = [_table(good)] if good else []
        except Exception:
            tables = [_table([b]) for b in good]
    for table in tables:
        write_atomic(table, next_path())
    return sum(t.num_rows for t in tables)


# ----------------------------------------------------------------------------- journal compaction

COMPACT_LOCK = ".compact.lock"
COMPACT_LOCK_TIMEOUT_S = 60.0


def _batch_from_journal(row: dict[str, Any]) -> _Batch:
    """A journal line (see :func:`serving.log.journal.batch_line`) as a batch; raises on a malformed one."""
    values = row.get("values")
    return _Batch(
        ids=[str(i) for i in row["ids"]],
        timestamp=datetime.fromisoformat(str(row["ts"])),
        model_name=str(row["model_name"]),
        model_version=str(row["model_version"]),
        features={str(k): list(v) for k, v in dict(row["features"]).items()},
        predictions=list(row["predictions"]),
        values=list(values) if values is not None else None,
        value_name=str(row.get("value_name") or "probability"),
    )


def _without(batch: _Batch, known: set[str]) -> _Batch | None:
    """``batch`` without the rows whose id is in ``known`` (None when none is left). Pure."""
    keep = [i for i, pid in enumerate(batch.ids) if pid not in known]
    if len(keep) == len(batch.ids):
        return batch
    if not keep:
        return None

    def pick(values: list[Any]) -> list[Any]:
        return [values[i] for i in keep if i < len(values)]

    return _Batch(
        ids=pick(batch.ids),
        timestamp=batch.timestamp,
        model_name=batch.model_name,
        model_version=batch.model_version,
        features={k: pick(v) for k, v in batch.features.items()},
        predictions=pick(batch.predictions),
        values=pick(batch.values) if batch.values is not None else None,
        value_name=batch.value_name,
    )


def _writer_ids(day_dir: Path, pid: int) -> set[str]:
    """The prediction ids already in the parts process ``pid`` (or a compaction of its segments)
    wrote in one day folder: a segment's rows may be there already if its writer died between
    renaming the part and deleting the segment."""
    ids: set[str] = set()
    if not day_dir.is_dir():
        return ids
    for part in day_dir.glob(f"part-*-{pid}-*.parquet"):
        frame = read_part(part, "prediction log", columns=["prediction_id"])
        if frame is not None:
            ids.update(frame["prediction_id"].astype(str))
    return ids


def _compaction_path(day_dir: Path, stem: str) -> Path:
    """``part-journal-<segment>-<k>.parquet`` with the first free ``k`` (never overwrites a part)."""
    for k in itertools.count():
        path = day_dir / f"part-journal-{stem}-{k}.parquet"
        if not path.exists():
            return path
    raise AssertionError("unreachable")


def _compact_segment(model_dir: Path, segment: Path, hook: DeadLetterHook | None) -> int:
    name = parse_segment_name(segment.name)
    if name is None or not segment.exists():
        return 0
    model_name = model_dir.name
    batches: list[_Batch] = []
    for row in read_segment(segment):
        try:
            batches.append(_batch_from_journal(row))
        except (KeyError, TypeError, ValueError) as exc:  # a line that parses but is not a batch
            rows = [row] if isinstance(row, dict) else [{"line": str(row)}]
            set_aside(
                model_dir,
                rows,
                f"unreadable journal line in {segment.name}: {exc}",
                "predictions",
                model_name,
                hook,
            )
    written = 0

    def dead_letter(batch: _Batch, reason: str) -> None:
        set_aside(model_dir, batch.rows(), reason, "predictions", model_name, hook)

    for (_model, day), items in _groups(batches).items():
        day_dir = model_dir / f"date={day}"
        known = _writer_ids(day_dir, name.pid)
        left = [b for b in (_without(b, known) for b in items) if b is not None]
        if left:
            written += _write_batches(
                left, lambda d=day_dir: _compaction_path(d, segment.stem), dead_letter
            )
    segment.unlink(missing_ok=True)
    if written:
        log.warning(
            "prediction journal %s of a dead writer compacted: %d rows", segment.name, written
        )
    return written


def compact_journal(model_dir: Path, on_dead_letter: DeadLetterHook | None = None) -> int:
    """Turn the journal segments of dead writers in one model's log folder into parquet parts.

    Idempotent and safe to run from several processes (a file lock in the journal folder): rows
    whose id is already in a part of the same writer are left out, so a crash between writing a part
    and deleting its segment never duplicates a row. Segments of live writers are left alone (their
    logger flushes them). Returns the rows written.
    """
    folder = Path(model_dir) / JOURNAL_DIR
    segments = dead_segments(folder)
    if not segments:
        return 0
    from filelock import FileLock

    written = 0
    with FileLock(str(folder / COMPACT_LOCK), timeout=COMPACT_LOCK_TIMEOUT_S):
        for segment in segments:
            written += _compact_segment(Path(model_dir), segment, on_dead_letter)
    return written


def compact_journals(predictions_dir: Path, on_dead_letter: DeadLetterHook | None = None) -> int:
    """:func:`compact_journal` for every model under ``predictions_dir`` (run at service start)."""
    root = Path(predictions_dir)
    if not root.is_dir():
        return 0
    return sum(
        compact_journal(d, on_dead_letter)
        for d in sorted(root.iterdir())
        if (d / JOURNAL_DIR).is_dir()
    )


def _compact_quietly(model_dirs: list[Path]) -> None:
    """Compaction for a reader: a failure (read-only folder, lock timeout) is warned about, never raised."""
    for model_dir in model_dirs:
        if not (model_dir / JOURNAL_DIR).is_dir():
            continue
        try:
            compact_journal(model_dir)
        except Exception as exc:
            log.warning("could not compact the prediction journal of %s: %s", model_dir, exc)


def _groups(batches: list[_Batch]) -> dict[tuple[str, str], list[_Batch]]:
    groups: dict[tuple[str, str], list[_Batch]] = {}
    for b in batches:
        groups.setdefault((b.model_name, b.timestamp.strftime("%Y-%m-%d")), []).append(b)
    return groups


def _table(items: list[_Batch]) -> Any:
    """One arrow table of the log rows of ``items`` (raises when a value cannot be held)."""
    import pyarrow as pa

    cols: dict[str, list[Any]] = {c: [] for c in BASE_COLUMNS}
    feature_names: list[str] = []
    for b in items:
        for name in b.features:
            if name not in feature_names:
                feature_names.append(name)
    value_names = sorted({b.value_name for b in items})
    for name in ["prediction", *value_names]:
        cols[name] = []
    inputs: dict[str, list[Any]] = {input_column(name): [] for name in feature_names}
    for b in items:
        n = len(b.ids)
        cols["prediction_id"].extend(b.ids)
        cols["timestamp"].extend([b.timestamp] * n)
        cols["model_name"].extend([b.model_name] * n)
        cols["model_version"].extend([b.model_version] * n)
        for name in feature_names:
            inputs[input_column(name)].extend(b.features.get(name, [None] * n))
        cols["prediction"].extend(b.predictions)
        for vn in value_names:
            cols[vn].extend(
                b.values if (vn == b.value_name and b.values is not None) else [None] * n
            )
    cols.update(
        inputs
    )  # apart from the log's own columns whatever their names (serving.log.layout)
    return marked(pa.table({k: _arrow_array(k, v) for k, v in cols.items()}))


def _arrow_array(name: str, values: list[Any]) -> Any:
    import pyarrow as pa

    if name == "timestamp":
        return pa.array(values, type=pa.timestamp("us", tz="UTC"))
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types in one column: keep them as text
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def prediction_files(
    predictions_dir: Path, model_name: str, since: datetime | None = None
) -> list[Path]:
    """Parquet parts of ``model_name`` (optionally only day partitions on/after ``since``), after
    compacting the journal segments of dead writers (:func:`compact_journal`)."""
    root = Path(predictions_dir) / model_name
    if not root.is_dir():
        return []
    _compact_quietly([root])
    files = []
    for day_dir in sorted(root.glob("date=*")):
        if since is not None and day_dir.name[5:] < since.astimezone(UTC).strftime("%Y-%m-%d"):
            continue
        files.extend(sorted(p for p in day_dir.glob("part-*.parquet")))
    return files


def read_predictions(
    predictions_dir: Path,
    model_name: str,
    *,
    last_n: int | None = None,
    since: datetime | None = None,
    remote: RemoteLog | None = None,
    map_parts: Mapper | None = None,
) -> Any:
    """The logged predictions of ``model_name`` as a DataFrame, oldest first.

    Columns: prediction_id, timestamp (UTC), model_name, model_version, prediction, probability or
    score, and each input feature as ``input.<name>`` (parts of the old layout too; see
    :mod:`serving.log.layout`, whose :func:`~serving.log.layout.split_log` gives the inputs their names). ``since`` keeps rows at/after that time (naive = UTC);
    ``last_n`` keeps the newest n rows. Empty frame with the base columns when nothing is logged.
    With ``remote`` (team mode, :func:`serving.log.remote_parts.remote_log`) the parts are read from S3: with
    ``last_n`` only the parts that can hold the newest rows (from their footers), each read by a task of
    ``map_parts`` when given (e.g. on Dask, :mod:`mloop.core.partitions`).
    """
    import pandas as pd

    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    if remote is not None:
        parts = remote.prediction_parts(model_name, since)
        if last_n is not None:
            parts = remote.newest(parts, last_n, "prediction log", map_parts)
        df = remote.read_parts(parts, "prediction log", map_parts, log_layout=True)
    else:
        df = read_parts(
            prediction_files(predictions_dir, model_name, since), "prediction log", log_layout=True
        )
    if df is None:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in BASE_COLUMNS})
    df = df.sort_values("timestamp", kind="stable").reset_index(drop=True)
    if since is not None:
        df = df[df["timestamp"] >= pd.Timestamp(since)].reset_index(drop=True)
    if last_n is not None:
        df = df.tail(last_n).reset_index(drop=True)
    return df


def find_prediction(predictions_dir: Path, prediction_id: str) -> dict[str, Any] | None:
    """The log row of one prediction id, searched across every model (newest files first); inputs as
    ``input.<name>`` keys (:mod:`serving.log.layout`)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = Path(predictions_dir)
    if root.is_dir():
        _compact_quietly(sorted(root.iterdir()))
    files = sorted(
        root.glob("*/date=*/part-*.parquet"), key=lambda p: (p.parent.name, p.name), reverse=True
    )
    for f in files:
        try:
            table = pq.read_table(f)
        except FileNotFoundError:
            continue
        except PermissionError:
            raise  # not corruption: the operator must fix the permissions
        except (pa.ArrowInvalid, OSError) as exc:  # truncated, empty or garbage bytes
            set_aside_part(f, exc, "prediction log")
            continue
        hit = table.filter(pc.equal(table["prediction_id"], prediction_id))  # pyright: ignore[reportAttributeAccessIssue]  # why: pyarrow.compute makes its functions at import, pyright cannot see them
        if hit.num_rows:
            return current_layout(hit.slice(0, 1)).to_pylist()[0]
    return None

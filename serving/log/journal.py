"""The write-ahead journal of the prediction log: answered predictions on disk before the answer leaves.

The prediction log (:mod:`serving.log.predictions`) turns answered batches into parquet parts off the request
path, about once a second. A worker killed without SIGTERM would lose that buffer, although its
clients hold the prediction ids. So every batch is first appended to a journal segment, in the
request, before the answer is sent:

- ``<predictions_dir>/<model>/journal/<pid>-<start>-<seq>.jsonl``: one JSON line per answered
  batch (``ids``, ``ts``, ``model_name``, ``model_version``, ``features`` by column,
  ``predictions``, ``values``, ``value_name``), written with ONE ``os.write`` on an ``O_APPEND``
  descriptor and no fsync: the line survives the process (it is in the page cache), not the machine.
  ``pid`` and ``start`` (the process's start time, in 1/100 s) name the writer, so a reused pid is
  not taken for the dead writer.
- Each flush of the log closes the segments of the batches it takes (:meth:`Journal.rotate`); once
  their parquet parts are renamed into place the segments are deleted (:meth:`Journal.remove`).
- Segments whose writer is gone (:func:`writer_alive`) are compacted into parquet parts by
  :func:`serving.log.predictions.compact_journal` (at service start and by the log readers). A line that does
  not parse (a torn write) is set aside in ``<segment>.torn`` by :func:`mloop.core.jsonl.read_jsonl`.

No BentoML import, no global state: one :class:`Journal` per :class:`serving.log.predictions.PredictionLogger`.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOURNAL_DIR = "journal"
SEGMENT_SUFFIX = ".jsonl"


class JournalError(OSError):
    """A batch could not be written to the journal: its answer must not be sent."""


def _stdlib_dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=str).encode()


def _fast_dumps() -> Callable[[Any], bytes]:
    """orjson (it comes with Prefect) when importable, else stdlib json. A value orjson refuses (an
    integer beyond 64 bits) falls back to stdlib json for that line, so a batch is never refused here."""
    try:
        import orjson
    except ImportError:
        return _stdlib_dumps
    opts = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    fast = orjson.dumps

    def dumps(obj: Any) -> bytes:
        try:
            return fast(obj, default=str, option=opts)
        except TypeError:
            return _stdlib_dumps(obj)

    return dumps


def process_start(pid: int) -> int | None:
    """When process ``pid`` started, in 1/100 s since the epoch (None: no such process). The pid and
    this together name a process: a pid reused later has another start."""
    import psutil

    try:
        return round(psutil.Process(pid).create_time() * 100)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


@dataclass(frozen=True)
class SegmentName:
    """``<pid>-<start>-<seq>.jsonl`` parsed."""

    pid: int
    start: int
    seq: int

    @property
    def writer(self) -> str:
        """``<pid>-<start>``: the writing process."""
        return f"{self.pid}-{self.start}"

    def file_name(self) -> str:
        return f"{self.pid}-{self.start}-{self.seq:06d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> SegmentName | None:
    """The parts of a segment file name; None for any other file. Pure."""
    if not name.endswith(SEGMENT_SUFFIX) or name.startswith("."):
        return None
    parts = name[: -len(SEGMENT_SUFFIX)].split("-")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return SegmentName(int(parts[0]), int(parts[1]), int(parts[2]))


def writer_alive(name: SegmentName) -> bool:
    """Whether the process that writes segment ``name`` still runs (same pid AND same start; a
    zombie counts as gone)."""
    import psutil

    try:
        proc = psutil.Process(name.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return round(proc.create_time() * 100) == name.start
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def dead_segments(folder: Path) -> list[Path]:
    """The segments in ``folder`` whose writer is gone, oldest first."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        name = parse_segment_name(path.name)
        if name is not None and not writer_alive(name):
            found.append((name.writer, name.seq, path))
    return [p for *_, p in sorted(found)]


def read_segment(path: Path) -> list[dict[str, Any]]:
    """The batches of one segment, in order; a line that does not parse is set aside (``.torn``)."""
    from mloop.core.jsonl import read_jsonl

    return [
        row
        for row in read_jsonl(path, json.loads, what="prediction journal").rows
        if isinstance(row, dict)
    ]


def batch_line(
    ids: list[str],
    timestamp: Any,
    model_name: str,
    model_version: str,
    features: dict[str, list[Any]],
    predictions: list[Any],
    values: list[float] | None,
    value_name: str,
    dumps: Callable[[Any], bytes],
) -> bytes:
    """One journal line (with its newline) for an answered batch."""
    return (
        dumps(
            {
                "ids": ids,
                "ts": timestamp,
                "model_name": model_name,
                "model_version": model_version,
                "features": features,
                "predictions": predictions,
                "values": values,
                "value_name": value_name,
            }
        )
        + b"\n"
    )


class Journal:
    """Append-only segments of one writing process, one open segment per model (thread-safe)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.pid = os.getpid()
        self.start = process_start(self.pid) or 0
        self._seq = itertools.count()
        self._open: dict[str, tuple[int, Path]] = {}
        self._lock = threading.Lock()
        self.dumps = _fast_dumps()

    def _segment(self, model_name: str) -> tuple[int, Path]:
        current = self._open.get(model_name)
        if current is not None:
            return current
        folder = self.root / model_name / JOURNAL_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / SegmentName(self.pid, self.start, next(self._seq)).file_name()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._open[model_name] = (fd, path)
        return fd, path

    def append(self, model_name: str, line: bytes) -> None:
        """Write ``line`` to the model's open segment in one ``os.write`` (a short write is completed).
        Raises :class:`JournalError`; the segment is then closed (a later line never glues onto a
        fragment) and kept for the flush that takes its earlier lines."""
        with self._lock:
            try:
                fd, _path = self._segment(model_name)
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
            except OSError as exc:
                self._close(model_name)
                raise JournalError(f"prediction journal write failed: {exc}") from exc

    def _close(self, model_name: str) -> Path | None:
        current = self._open.pop(model_name, None)
        if current is None:
            return None
        try:
            os.close(current[0])
        except OSError:
            pass
        return current[1]

    def rotate(self) -> list[Path]:
        """Close every open segment and return their paths (the next append opens new ones). Call it
        together with taking the pending batches, so the segments hold exactly those batches."""
        with self._lock:
            return [p for p in (self._close(m) for m in list(self._open)) if p is not None]

    @staticmethod
    def remove(paths: list[Path]) -> None:
        """Delete closed segments whose batches are in parquet parts (or set aside) now."""
        for path in paths:
            path.unlink(missing_ok=True)

    def close(self) -> list[Path]:
        """Close the open segments (their paths are returned: the caller removes them once flushed)."""
        return self.rotate()

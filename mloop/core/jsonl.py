"""JSON-lines files that survive torn writes: read what parses, set the rest aside, append whole lines.

Every JSONL file of mloop (the dataset version index, the audit logs, the retrain ledger, the
notifications) is read and appended through this module:

- :func:`read_jsonl` parses line by line and keeps the lines that parse. A line that does not (a
  torn last line from a crash mid-write, garbage in the middle) is never dropped: under the file's
  lock it is appended to ``<file>.torn`` (one JSON record with the time, the reason and the raw
  text) and the file is rewritten atomically without it, with a warning in the log. The read still
  answers with every good row; the count of lines set aside is returned and kept in the side file.
- :func:`append_jsonl` writes one whole line in one write, flushed, and fsynced when asked (the
  files whose loss matters: ledger, audit, version index). A torn last line is repaired first (a
  line that parses only lacks its newline; anything else is set aside), so an append never glues
  onto a fragment.

The lock is ``<file>.rw.lock`` (not ``<file>.lock``, which callers such as the retrain ledger hold
around a read-decide-append; distinct files keep the two from deadlocking each other).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from filelock import FileLock

from mloop.core.files import write_atomic

log = logging.getLogger(__name__)

T = TypeVar("T")
TORN_SUFFIX = ".torn"
LOCK_SUFFIX = ".rw.lock"
LOCK_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class BadLine:
    """One line that did not parse: its 1-based number, raw bytes and why."""

    number: int
    raw: bytes
    reason: str


@dataclass
class JsonlRead(Generic[T]):
    """What :func:`read_jsonl` found: the parsed rows (file order) and the lines set aside now."""

    rows: list[T] = field(default_factory=list)
    set_aside: int = 0


def torn_path(path: Path) -> Path:
    """The side file collecting the lines set aside from ``path``."""
    return path.with_name(path.name + TORN_SUFFIX)


def _lock(path: Path) -> FileLock:
    return FileLock(str(path.with_name(path.name + LOCK_SUFFIX)), timeout=LOCK_TIMEOUT_S)


def parse_lines(
    data: bytes, parse: Callable[[str], T]
) -> tuple[list[T], list[bytes], list[BadLine]]:
    """Split ``data`` into lines and parse each (pure): (rows, raw good lines, bad lines).

    Blank lines are skipped. A line is bad when it is not UTF-8 or ``parse`` raises ValueError
    (``json.JSONDecodeError`` and pydantic's ``ValidationError`` both are).
    """
    rows: list[T] = []
    good: list[bytes] = []
    bad: list[BadLine] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            rows.append(parse(raw.decode("utf-8")))
        except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError, ValidationError
            reason = (
                str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            )
            bad.append(BadLine(number, raw, f"{type(exc).__name__}: {reason}"))
            continue
        good.append(raw)
    return rows, good, bad


def _torn_record(path: Path, bad: BadLine, what: str, now: datetime) -> str:
    return (
        json.dumps(
            {
                "set_aside_at": now.isoformat(),
                "file": path.name,
                "what": what,
                "line_number": bad.number,
                "reason": bad.reason,
                "line": bad.raw.decode("utf-8", errors="replace"),
            }
        )
        + "\n"
    )


def _set_aside(path: Path, bad: list[BadLine], what: str) -> None:
    """Append ``bad`` to the side file (fsynced: it is the only copy from now on) and warn."""
    now = datetime.now(UTC)
    data = "".join(_torn_record(path, b, what, now) for b in bad).encode()
    fd = os.open(torn_path(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    for b in bad:
        log.warning(
            "%s: line %d of %s set aside in %s (%s)",
            what,
            b.number,
            path,
            torn_path(path).name,
            b.reason,
        )


def _rewrite(path: Path, good: list[bytes]) -> None:
    """Replace ``path`` with ``good`` lines atomically (temporary file, fsync, rename; mode kept)."""
    write_atomic(path, b"".join(line + b"\n" for line in good), mode=path.stat().st_mode & 0o777)


def read_jsonl(path: Path, parse: Callable[[str], T] = json.loads, *, what: str) -> JsonlRead[T]:
    """Every row of ``path`` that ``parse`` accepts, in file order (empty when the file is absent).

    Lines that do not parse are moved to ``<path>.torn`` and the file is rewritten without them,
    under the file's lock (the file is read again under it, so a concurrent append is never lost).
    If the repair itself fails (read-only disk) the good rows are still returned, with a warning.
    ``what`` names the file in the warnings (``dataset index``, ``retrain ledger``...).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return JsonlRead()
    rows, _good, bad = parse_lines(data, parse)
    if not bad:
        return JsonlRead(rows)
    try:
        with _lock(path):
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                return JsonlRead()
            rows, good, bad = parse_lines(data, parse)
            if bad:
                _set_aside(path, bad, what)
                _rewrite(path, good)
    except OSError as exc:  # includes filelock.Timeout: answer with the good rows anyway
        log.warning(
            "%s: %d bad line(s) in %s could not be set aside: %s", what, len(bad), path, exc
        )
    return JsonlRead(rows, len(bad))


def count_set_aside(path: Path) -> int:
    """How many lines of ``path`` were ever set aside (lines of its ``.torn`` side file)."""
    try:
        return sum(1 for line in torn_path(Path(path)).read_bytes().split(b"\n") if line.strip())
    except FileNotFoundError:
        return 0


def _repair_tail(path: Path, fd: int, what: str) -> None:
    """If ``path`` (open as ``fd``) does not end with a newline, end its last line: a fragment that
    parses as JSON gets its newline, anything else is set aside and cut off. Call under the lock."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1  # 0 when the file is one fragment
    tail = data[cut:]
    try:
        json.loads(tail.decode("utf-8"))
    except ValueError as exc:
        _set_aside(
            path,
            [BadLine(data.count(b"\n") + 1, tail, f"torn last line: {type(exc).__name__}")],
            what,
        )
        os.ftruncate(fd, cut)
        return
    os.write(fd, b"\n")


def append_jsonl(
    path: Path, row: dict[str, Any] | str, *, what: str, fsync: bool, mode: int = 0o600
) -> None:
    """Append ``row`` (a dict, or one line of JSON text without its newline) as one whole line.

    One ``write`` of the line (O_APPEND), then fsync when ``fsync`` is true (for files whose loss
    matters). Under the file's lock; a torn last line is repaired first (see :func:`_repair_tail`).
    """
    path = Path(path)
    text = row if isinstance(row, str) else json.dumps(row, default=str)
    if "\n" in text:
        raise ValueError("a JSONL row must be one line")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock(path):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, mode)
        try:
            _repair_tail(path, fd, what)
            os.write(fd, (text + "\n").encode())
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

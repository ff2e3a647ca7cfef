"""Part files of the append-only logs (the prediction log and the feedback store).

Both logs are folders of immutable part files: this module names them (:func:`part_name`), writes them
atomically (a dot-named temporary file, then a rename: a reader never sees half a file), reads them
(:func:`read_part`, :func:`read_parts`), and sets aside what cannot be written (``dead-letter/``,
:func:`set_aside`) or read (``corrupt/``, :func:`set_aside_part`; never deleted, counted by
:func:`count_corrupt`). :mod:`serving.log.predictions` and :mod:`serving.log.feedback` build on it.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEAD_LETTER_DIR = "dead-letter"
CORRUPT_DIR = "corrupt"
_SEQ = itertools.count()
DeadLetterHook = Callable[[str, str, int, str], None]
"""``(log, model_name, rows, reason)`` with log ``predictions`` or ``feedback``."""


def part_name(suffix: str = ".parquet") -> str:
    """A new part's file name: UTC time, pid, a per-process sequence and random bits (never reused)."""
    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"part-{now}-{os.getpid()}-{next(_SEQ):06d}-{uuid.uuid4().hex[:6]}{suffix}"


def write_jsonl_part(folder: Path, rows: list[dict[str, Any]]) -> Path:
    """``rows`` as a new ``<folder>/part-*.jsonl`` (written to a temporary name, then renamed; values
    JSON cannot hold become text)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / part_name(".jsonl")
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text("".join(json.dumps(row, default=str) + "\n" for row in rows))
    os.replace(tmp, path)
    return path


def write_dead_letter(model_dir: Path, rows: list[dict[str, Any]], reason: str) -> Path:
    """Set ``rows`` aside as ``<model_dir>/dead-letter/part-*.jsonl`` with a ``.reason.txt`` next to
    it. Returns the jsonl path."""
    path = write_jsonl_part(model_dir / DEAD_LETTER_DIR, rows)
    path.with_suffix(".reason.txt").write_text(reason + "\n")
    return path


def write_atomic(table: Any, path: Path) -> None:
    """``table`` as a snappy parquet file at ``path``, written to a temporary name and renamed."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    pq.write_table(table, tmp, compression="snappy")
    os.replace(tmp, path)


def set_aside(
    model_dir: Path,
    rows: list[dict[str, Any]],
    reason: str,
    kind: str,
    model_name: str,
    hook: DeadLetterHook | None,
) -> None:
    """Dead-letter ``rows`` (logged, counted by ``hook``); never raises: logging must go on."""
    log.error("%s log: %d rows of %s set aside: %s", kind, len(rows), model_name, reason)
    try:
        write_dead_letter(model_dir, rows, reason)
    except Exception:
        log.exception(
            "could not write the dead-letter part for %s; %d rows dropped", model_name, len(rows)
        )
    if hook is not None:
        try:
            hook(kind, model_name, len(rows), reason)
        except Exception:
            log.exception("dead-letter hook failed")


def set_aside_part(path: Path, exc: BaseException, what: str) -> Path | None:
    """Move an unreadable parquet part into ``corrupt/`` beside it (out of every part glob, never
    deleted) with a ``.reason.txt``, and warn. Returns where it went (None: it was gone already or
    could not be moved; the reader skips it either way)."""
    folder = path.parent / CORRUPT_DIR
    target = folder / path.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        target.with_name(target.name + ".reason.txt").write_text(f"{type(exc).__name__}: {exc}\n")
    except FileNotFoundError:
        return None  # another reader moved it first
    except OSError as move_exc:
        log.warning(
            "%s part %s is unreadable (%s) and could not be moved aside: %s",
            what,
            path,
            exc,
            move_exc,
        )
        return None
    log.warning("%s part %s is unreadable (%s); moved to %s", what, path.name, exc, target)
    return target


def read_part(
    path: Path, what: str, columns: list[str] | None = None, *, log_layout: bool = False
) -> Any:
    """One parquet part as a DataFrame; None when it is unreadable (then set aside, see
    :func:`set_aside_part`) or gone. A readable part without one of ``columns`` still raises.
    ``log_layout``: a prediction-log part, given the current layout (old parts too, see
    :func:`serving.log.layout.current_layout`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from serving.log.layout import current_layout

    try:
        table = pq.read_table(path, columns=columns)
    except FileNotFoundError:
        return None
    except PermissionError:
        raise  # not corruption: the operator must fix the permissions
    except (pa.ArrowInvalid, OSError) as exc:  # truncated, empty or garbage bytes
        if columns is not None and readable(path):
            raise
        set_aside_part(path, exc, what)
        return None
    return (current_layout(table) if log_layout else table).to_pandas()


def readable(path: Path) -> bool:
    """Whether the part's footer and schema can be read (a missing column is not corruption)."""
    import pyarrow.parquet as pq

    try:
        pq.read_schema(path)
    except Exception:
        return False
    return True


def count_corrupt(model_dir: Path) -> int:
    """How many parts of one model's log folder were set aside as unreadable (every ``corrupt/``)."""
    root = Path(model_dir)
    return sum(1 for _ in root.glob(f"**/{CORRUPT_DIR}/*.parquet")) if root.is_dir() else 0


def read_parts(files: list[Path], what: str = "prediction log", *, log_layout: bool = False) -> Any:
    """The readable, non-empty parts of ``files`` as one DataFrame; None when there is none.
    ``log_layout`` as :func:`read_part`."""
    import pandas as pd

    frames = [read_part(f, what, log_layout=log_layout) for f in files]
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True)

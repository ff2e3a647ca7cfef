"""Feedback you can trust: ground-truth labels only for predictions the model made, first label wins.

Labels steer the loop (retraining data, quality monitoring), so the store accepts a label only when

1. **the prediction id is known**: this model's service issued it recently (:class:`RecentIds`, a
   bounded in-memory index the service fills on every answer, because the prediction log is written
   asynchronously), or the model's prediction log holds it (:func:`logged_ids` reads only the
   ``prediction_id`` column of the parquet parts, newest first). An unknown id is counted and refused;
2. **the id has no label yet**. A second label is never an overwrite: an equal one is a harmless
   *duplicate* (ignored, counted); a different one is a *conflict*, written with both labels, the
   time and the request to ``<feedback_dir>/<model>/conflicts/part-*.jsonl`` and otherwise ignored.
   :func:`read_feedback` keeps the first label per id and never reads conflicts.

The check and the write are one critical section: a thread lock (the service runs several request
threads) and a file lock in the model's feedback folder (``mloop feedback`` writes from another
process). :class:`FeedbackStore` keeps an incremental index of the labels already written (parts are
immutable, so only new parts are read on each call): about 150 bytes per labelled id.

In team mode the labels other hosts wrote are in S3. The store lists a model's label parts there on its
first write and again only when a write has new labels to accept and its view is older than
``remote_refresh_seconds`` (default :data:`REMOTE_REFRESH_SECONDS`), never on every request: a label
another host wrote within that window is not seen as a conflict here, and the readers still keep the
first label per id (cross-host first-label-wins was best effort already: no lock spans hosts).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.core.jsonl import read_jsonl
from mloop.core.names import check_name, child_path
from serving.log.parts import (
    DeadLetterHook,
    part_name,
    read_part,
    read_parts,
    readable,
    set_aside,
    set_aside_part,
    write_atomic,
    write_jsonl_part,
)
from serving.log.predictions import prediction_files

if TYPE_CHECKING:
    from serving.log.remote_parts import RemoteLog, Shipper

log = logging.getLogger(__name__)

CONFLICTS_DIR = "conflicts"
LOCK_FILE = ".feedback.lock"
REJECTED_LIST_MAX = 100
"""At most this many rejected ids (with reasons) are listed in an answer; the counts are complete."""
RECENT_IDS_DEFAULT = 1_000_000
REMOTE_REFRESH_SECONDS = 30.0
"""Team mode: how old a store's view of the label parts in S3 may get before a write lists them again."""
_HEX = frozenset("0123456789abcdef")


def _key(prediction_id: str) -> int | None:
    """An id mloop issued (32 lowercase hex digits) as a 128-bit int (44 bytes, not an 81-byte str)."""
    if len(prediction_id) != 32 or not _HEX.issuperset(prediction_id):
        return None
    return int(prediction_id, 16)


class RecentIds:
    """The prediction ids a service issued recently, per model, bounded (thread-safe).

    Per model, ``capacity`` ids in ``generations`` sets: when the newest set is full the oldest is
    dropped, so between ``capacity * (generations - 1) / generations`` and ``capacity`` of the
    newest ids are kept (about 80 MB at one million).
    """

    def __init__(self, capacity: int = RECENT_IDS_DEFAULT, generations: int = 8) -> None:
        self.generation_size = max(1, capacity // generations)
        self._max_generations = max(1, generations)
        self._by_model: dict[str, list[set[int]]] = {}
        self._lock = threading.Lock()

    def add(self, model_name: str, ids: Iterable[str]) -> None:
        """Remember ``ids`` as issued by ``model_name`` (cheap: an int conversion and a set insert each)."""
        keys = [k for k in map(_key, ids) if k is not None]
        with self._lock:
            gens = self._by_model.setdefault(model_name, [set()])
            for key in keys:
                newest = gens[-1]
                if len(newest) >= self.generation_size:
                    newest = set()
                    gens.append(newest)
                    if len(gens) > self._max_generations:
                        gens.pop(0)
                newest.add(key)

    def known(self, model_name: str, ids: Iterable[str]) -> set[str]:
        """The ids among ``ids`` that ``model_name`` issued and are still in memory."""
        with self._lock:
            gens = list(self._by_model.get(model_name, ()))
        found = set()
        for pid in ids:
            key = _key(pid)
            if key is not None and any(key in g for g in gens):
                found.add(pid)
        return found

    def __len__(self) -> int:
        with self._lock:
            return sum(len(g) for gens in self._by_model.values() for g in gens)


def logged_ids(
    predictions_dir: Path, model_name: str, wanted: Iterable[str], remote: RemoteLog | None = None
) -> set[str]:
    """The ids among ``wanted`` that ``model_name``'s prediction log holds.

    Reads only the ``prediction_id`` column, newest part first, and stops once every id is found. With
    ``remote`` (team mode) the parts in S3 that are not local (another host's) are searched too.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    missing = set(wanted)
    found: set[str] = set()
    if not missing:
        return found
    for path in reversed(prediction_files(predictions_dir, model_name)):
        try:
            column = pq.read_table(path, columns=["prediction_id"]).column("prediction_id")
        except FileNotFoundError:
            continue
        except (
            OSError,
            KeyError,
            pa.ArrowInvalid,
        ) as exc:  # a part without the column, or unreadable
            if not readable(path):
                set_aside_part(path, exc, "prediction log")
            log.warning(
                "prediction log part %s skipped while checking feedback ids: %s", path.name, exc
            )
            continue
        values = pa.array(list(missing), type=pa.string())
        hits = pc.filter(column, pc.is_in(column.cast(pa.string()), value_set=values))  # pyright: ignore[reportAttributeAccessIssue]  # why: pyarrow.compute makes its functions at import, pyright cannot see them
        if len(hits):
            new = set(hits.to_pylist())
            found |= new
            missing -= new
            if not missing:
                break
    if missing and remote is not None:
        found |= _remote_logged_ids(predictions_dir, model_name, missing, remote)
    return found


def _remote_logged_ids(
    predictions_dir: Path, model_name: str, missing: set[str], remote: RemoteLog
) -> set[str]:
    """:func:`logged_ids` over the S3 parts whose name is not among the local parts (newest first)."""
    local = {p.name for p in prediction_files(predictions_dir, model_name)}
    found: set[str] = set()
    try:
        parts = [p for p in remote.prediction_parts(model_name) if p.name not in local]
    except OSError as exc:  # the store is down: only the local log vouches for ids now
        log.warning(
            "could not list %s's prediction log in S3 to check feedback ids: %s", model_name, exc
        )
        return found
    for part in reversed(parts):
        try:
            frame = remote.read_part(part, "prediction log", columns=["prediction_id"])
        except Exception as exc:
            log.warning(
                "prediction log part %s skipped while checking feedback ids: %s", part.name, exc
            )
            continue
        if frame is None:
            continue
        new = missing & set(frame["prediction_id"].astype(str))
        found |= new
        missing -= new
        if not missing:
            break
    return found


@dataclass
class FeedbackResult:
    """What one batch of labels did. ``rejected`` lists up to :data:`REJECTED_LIST_MAX` ids that were
    not recorded, each with its reason (``unknown``, ``conflict``, ``duplicate``, ``set_aside``)."""

    model_name: str
    recorded: int = 0
    duplicates: int = 0
    conflicts: int = 0
    unknown: int = 0
    set_aside: int = 0
    rejected: list[dict[str, str]] = field(default_factory=list)
    rejected_truncated: bool = False

    def reject(self, prediction_id: str, reason: str) -> None:
        if len(self.rejected) < REJECTED_LIST_MAX:
            self.rejected.append({"prediction_id": prediction_id, "reason": reason})
        else:
            self.rejected_truncated = True

    def answer(self) -> dict[str, Any]:
        """The JSON answer of ``POST /feedback``."""
        return {
            "model_name": self.model_name,
            "recorded": self.recorded,
            "duplicates": self.duplicates,
            "conflicts": self.conflicts,
            "unknown": self.unknown,
            "set_aside": self.set_aside,
            "rejected": self.rejected,
            "rejected_truncated": self.rejected_truncated,
        }


def same_label(a: Any, b: Any) -> bool:
    """Labels equal after parquet's round trip (numpy scalars, 1 vs 1.0); else compared as text."""
    a = a.item() if hasattr(a, "item") else a
    b = b.item() if hasattr(b, "item") else b
    numbers = (int, float)
    if (
        isinstance(a, numbers)
        and isinstance(b, numbers)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        return float(a) == float(b)
    return bool(type(a) is type(b) and a == b) or str(a) == str(b)


@dataclass
class _Labelled:
    """The first label of every id written so far, and the parts already read (parts are immutable)."""

    labels: dict[str, tuple[Any, str]] = field(default_factory=dict)
    parts: set[str] = field(default_factory=set)
    remote_listed_at: float | None = None
    """Team mode: when the label parts in S3 were last listed (``time.monotonic``); None: not yet."""


class FeedbackStore:
    """Records labels under the trust rule (module docstring); one instance per process is enough."""

    def __init__(
        self,
        feedback_dir: Path,
        predictions_dir: Path,
        *,
        recent: RecentIds | None = None,
        on_dead_letter: DeadLetterHook | None = None,
        remote: RemoteLog | None = None,
        remote_refresh_seconds: float = REMOTE_REFRESH_SECONDS,
    ) -> None:
        self.feedback_dir = Path(feedback_dir)
        self.remote = remote
        self.remote_refresh_seconds = remote_refresh_seconds
        self.shipper: Shipper | None = None
        if (
            remote is not None
        ):  # team mode: every label part also goes to S3 (serving.log.remote_parts)
            from serving.log.remote_parts import Shipper

            self.shipper = Shipper(remote, "feedback", self.feedback_dir)
        self.predictions_dir = Path(predictions_dir)
        self.recent = recent
        self.on_dead_letter = on_dead_letter
        self._lock = threading.Lock()
        self._labelled: dict[str, _Labelled] = {}

    def record(
        self,
        model_name: str,
        items: Sequence[tuple[str, Any]],
        *,
        source: dict[str, Any] | None = None,
    ) -> FeedbackResult:
        """Record ``(prediction_id, label)`` pairs of ``model_name`` in order (within a batch, the first
        label of an id wins too); ``source`` (who sent them) goes into conflict records."""
        from filelock import FileLock

        check_name(model_name, "model")
        folder = child_path(self.feedback_dir, model_name)
        result = FeedbackResult(model_name=model_name)
        ids = [str(pid) for pid, _ in items]
        known = self.recent.known(model_name, ids) if self.recent is not None else set()
        rest = set(ids) - known
        if rest:
            known |= logged_ids(self.predictions_dir, model_name, rest, self.remote)
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock, FileLock(str(folder / LOCK_FILE), timeout=60):
            labelled = self._refresh(model_name, folder, known)
            now = datetime.now(UTC)
            accepted: dict[str, Any] = {}
            conflicts: list[dict[str, Any]] = []
            for pid, label in zip(ids, (label for _, label in items), strict=True):
                if pid not in known:
                    result.unknown += 1
                    result.reject(pid, "unknown")
                    continue
                if pid in accepted:  # twice in this batch: the first one wins here too
                    first_label, first_time = accepted[pid], now.isoformat()
                elif pid in labelled.labels:
                    first_label, first_time = labelled.labels[pid]
                else:
                    accepted[pid] = label
                    continue
                if same_label(first_label, label):
                    result.duplicates += 1
                    result.reject(pid, "duplicate")
                    continue
                result.conflicts += 1
                result.reject(pid, "conflict")
                conflicts.append(
                    {
                        "prediction_id": pid,
                        "first_label": _plain(first_label),
                        "first_timestamp": first_time,
                        "label": _plain(label),
                        "timestamp": now.isoformat(),
                        "request": source or {},
                    }
                )
            if accepted:
                written = self._write(model_name, folder, accepted, now)
                if written:
                    result.recorded = len(accepted)
                    stamp = now.isoformat()
                    for pid, label in accepted.items():
                        labelled.labels[pid] = (label, stamp)
                    labelled.parts.add(written.name)
                else:
                    result.set_aside = len(accepted)
                    for pid in accepted:
                        result.reject(pid, "set_aside")
            if conflicts:
                self._write_conflicts(model_name, folder, conflicts)
            if (
                self.shipper is not None
            ):  # this part and any an earlier upload left behind; never raises
                self.shipper.ship_missed(model_name)
        return result

    def _refresh(self, model_name: str, folder: Path, candidates: set[str]) -> _Labelled:
        """The label index of ``model_name`` with every local part written since the last call read in, and
        in team mode the S3 parts when a ``candidates`` id (known, to be labelled) has no label in the
        index yet and the S3 view is due (:meth:`_remote_due`)."""
        import pandas as pd

        labelled = self._labelled.setdefault(model_name, _Labelled())
        new = [p for p in feedback_parts(folder) if p.name not in labelled.parts]
        frames = []
        for path in new:
            try:
                frame = read_part(path, "feedback", columns=FEEDBACK_COLUMNS)
            except Exception as exc:
                log.warning("feedback part %s unreadable: %s", path.name, exc)
                frame = None
            if frame is not None:
                frames.append(frame)
            labelled.parts.add(path.name)
        if self._remote_due(labelled) and any(pid not in labelled.labels for pid in candidates):
            frames.extend(
                self._remote_frames(model_name, labelled)
            )  # other hosts' labels (best effort)
        if frames:
            df = pd.concat(frames, ignore_index=True).sort_values("timestamp", kind="stable")
            df = df.drop_duplicates("prediction_id", keep="first")
            for pid, label, stamp in zip(
                df["prediction_id"], df["label"], df["timestamp"], strict=True
            ):
                labelled.labels.setdefault(str(pid), (label, str(stamp)))
        return labelled

    def _remote_due(self, labelled: _Labelled) -> bool:
        """Team mode: the S3 view was never listed, or is ``remote_refresh_seconds`` old."""
        if self.remote is None:
            return False
        seen = labelled.remote_listed_at
        return seen is None or time.monotonic() - seen >= self.remote_refresh_seconds

    def _remote_frames(self, model_name: str, labelled: _Labelled) -> list[Any]:
        """The label parts in S3 not read yet (another host's); none when the store does not answer (then
        the next try waits for the refresh period too: an outage costs one timeout per period, not per request)."""
        assert self.remote is not None
        labelled.remote_listed_at = time.monotonic()
        try:
            parts = [
                p for p in self.remote.feedback_parts(model_name) if p.name not in labelled.parts
            ]
        except OSError as exc:
            log.warning("could not list %s's feedback in S3: %s", model_name, exc)
            return []
        frames = []
        for part in parts:
            try:
                frame = self.remote.read_part(part, "feedback", columns=FEEDBACK_COLUMNS)
            except Exception as exc:
                log.warning("feedback part %s in S3 unreadable: %s", part.name, exc)
                frame = None
            if frame is not None:
                frames.append(frame)
                labelled.parts.add(part.name)
        return frames

    def _write(
        self, model_name: str, folder: Path, accepted: dict[str, Any], now: datetime
    ) -> Path | None:
        """One parquet part of the accepted labels; None when they had to be set aside."""
        import pandas as pd
        import pyarrow as pa

        df = pd.DataFrame({"prediction_id": list(accepted), "label": list(accepted.values())})
        df["timestamp"] = pd.Timestamp(now)
        path = folder / part_name()
        try:
            write_atomic(pa.Table.from_pandas(df, preserve_index=False), path)
        except Exception as exc:
            rows = [
                {"prediction_id": p, "label": _plain(v), "timestamp": now.isoformat()}
                for p, v in accepted.items()
            ]
            reason = f"cannot write feedback: {type(exc).__name__}: {exc}"
            set_aside(folder, rows, reason, "feedback", model_name, self.on_dead_letter)
            return None
        return path

    def _write_conflicts(self, model_name: str, folder: Path, rows: list[dict[str, Any]]) -> None:
        try:
            write_jsonl_part(folder / CONFLICTS_DIR, rows)
        except Exception:
            log.exception("could not write %d feedback conflicts of %s", len(rows), model_name)
        log.warning(
            "feedback for %s: %d conflicting labels recorded (first label kept)",
            model_name,
            len(rows),
        )


def _plain(value: Any) -> Any:
    """A JSON-ready value (numpy scalars become Python ones)."""
    return value.item() if hasattr(value, "item") else value


def read_conflicts(feedback_dir: Path, model_name: str) -> list[dict[str, Any]]:
    """The conflict records of ``model_name``, oldest first (for people and tests; no reader acts on them)."""
    folder = Path(feedback_dir) / model_name / CONFLICTS_DIR
    out: list[dict[str, Any]] = []
    for path in sorted(folder.glob("part-*.jsonl")) if folder.is_dir() else []:
        out.extend(read_jsonl(path, what=f"feedback conflicts of {model_name}").rows)
    return out


FEEDBACK_COLUMNS = ["prediction_id", "label", "timestamp"]


def feedback_parts(model_dir: Path) -> list[Path]:
    """The label parts of one model's feedback folder, oldest first (conflicts and dead letters excluded)."""
    return sorted(Path(model_dir).glob("part-*.parquet")) if Path(model_dir).is_dir() else []


def record_feedback(
    feedback_dir: Path,
    model_name: str,
    labels: Any,
    on_dead_letter: DeadLetterHook | None = None,
    *,
    predictions_dir: Path | None = None,
    source: dict[str, Any] | None = None,
    remote: RemoteLog | None = None,
) -> int:
    """Record ground-truth labels (a DataFrame with ``prediction_id`` and ``label``) under the trust
    rule of :mod:`serving.log.feedback` (known prediction ids only; a second label is a duplicate or a
    recorded conflict, never an overwrite). Returns the labels recorded; labels that cannot be
    written are set aside as a dead-letter part. ``predictions_dir`` defaults to the
    ``predictions`` folder next to ``feedback_dir`` (MLOOP_HOME's layout). For the counts of what
    was refused use :meth:`serving.log.feedback.FeedbackStore.record`. With ``remote`` (team mode) the ids are
    also looked up in the log in S3 and the label part is uploaded there."""
    return record_labels(
        feedback_dir,
        model_name,
        labels,
        on_dead_letter,
        predictions_dir=predictions_dir,
        source=source,
        remote=remote,
    ).recorded


def record_labels(
    feedback_dir: Path,
    model_name: str,
    labels: Any,
    on_dead_letter: DeadLetterHook | None = None,
    *,
    predictions_dir: Path | None = None,
    source: dict[str, Any] | None = None,
    remote: RemoteLog | None = None,
) -> Any:
    """:func:`record_feedback` returning the whole :class:`serving.log.feedback.FeedbackResult`
    (recorded, duplicates, conflicts, unknown, set_aside, rejected ids with reasons)."""
    missing = {"prediction_id", "label"} - set(labels.columns)
    if missing:
        raise ValueError(f"feedback lacks columns {sorted(missing)}")
    df = labels[labels["prediction_id"].notna()]
    items = list(zip(df["prediction_id"].astype(str), df["label"], strict=True))
    feedback_dir = Path(feedback_dir)
    store = FeedbackStore(
        feedback_dir,
        predictions_dir if predictions_dir is not None else feedback_dir.parent / "predictions",
        on_dead_letter=on_dead_letter,
        remote=remote,
    )
    return store.record(model_name, items, source=source or {"via": "record_feedback"})


def read_feedback(feedback_dir: Path, model_name: str, *, remote: RemoteLog | None = None) -> Any:
    """Labels recorded for ``model_name``: prediction_id, label, timestamp; the FIRST label per id
    (a later one is a duplicate or a conflict, see :mod:`serving.log.feedback`; conflicts are not read).
    With ``remote`` (team mode) the parts are read from S3."""
    import pandas as pd

    if remote is not None:
        df = remote.read_parts(remote.feedback_parts(model_name), "feedback")
    else:
        df = read_parts(feedback_parts(Path(feedback_dir) / model_name), "feedback")
    if df is None:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in FEEDBACK_COLUMNS})
    df = df.sort_values("timestamp", kind="stable")
    df = df.drop_duplicates("prediction_id", keep="first").reset_index(drop=True)
    return df[FEEDBACK_COLUMNS]

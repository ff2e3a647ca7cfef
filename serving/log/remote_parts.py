"""The prediction log and the feedback labels in S3 (team mode, issue 13): shipping and reading parts.

In team mode (``MLOOP_ARTIFACTS_URI`` = ``s3://bucket/prefix``, see :mod:`mloop.core.team`) every
finished parquet part of the prediction log and of the feedback labels is also stored in S3, under the
same relative path it has locally:

- ``prefix/predictions/<model>/date=YYYY-MM-DD/part-*.parquet``
- ``prefix/feedback/<model>/part-*.parquet``

The local part (written atomically by :mod:`serving.log.predictions` / :mod:`serving.log.feedback`) is the buffer;
the S3 object is the record every host's monitor reads. :class:`Shipper` uploads a part after its local
write (one PUT: an object is whole or absent) and appends its relative path to ``<model>/.shipped`` in
the local folder; a failed upload is logged and the part stays local, so the next flush, the periodic
rescan or a restart ships it (an upload twice is harmless: same key, same bytes).

The readers (:meth:`RemoteLog.prediction_parts`, :meth:`RemoteLog.feedback_parts`, :meth:`RemoteLog.read_parts`)
list and get the objects with mloop's one S3 client (:func:`mloop.core.s3.s3_client`, boto3) and read them
with :mod:`pyarrow.parquet` as the local readers do (so the columns, dtypes and the prediction log's layout,
:mod:`serving.log.layout`, are the local readers'); a part's statistics come from its parquet footer alone (a
ranged GET of the object's end). An object that is not parquet is skipped with a warning and moved to
``corrupt/`` beside it when the credentials allow (best effort: a reader never blocks on it).

Single-machine mode never imports this module's S3 side: :func:`remote_log` returns None and boto3 is
imported lazily. Names from outside (model names, listed keys) are checked before they become keys or paths.
Credentials come from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (read when the client is made,
never stored here, never logged).
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mloop.core.names import NAME_PATTERN, check_name
from mloop.core.s3 import MISSING_CODES, S3Timeouts, error_code, s3_client
from mloop.core.team import ArtifactLayout, team_config

if TYPE_CHECKING:
    from mloop.core.partitions import Mapper
    from mloop.core.settings import Settings

log = logging.getLogger(__name__)

Kind = Literal["predictions", "feedback"]
MANIFEST = ".shipped"
"""Per model folder: the relative paths of the parts already in S3, one a line (append-only)."""
CORRUPT_DIR = "corrupt"
PART_NAME = re.compile(r"part-[A-Za-z0-9_.-]+\.parquet")
DAY_DIR = re.compile(r"date=\d{4}-\d{2}-\d{2}")
LOG_TIMEOUTS = S3Timeouts(connect=3, read=30, max_attempts=2, mode="standard")
"""Short: an outage costs a flush seconds, not minutes."""
FOOTER_READ = 64 * 1024
"""Bytes of a part's end fetched for its footer; a longer footer takes a second ranged GET."""


@dataclass(frozen=True)
class RemotePart:
    """One part in S3: its path (``bucket/key``), size and modification time."""

    path: str
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def key(self) -> str:
        """The object's key in its bucket."""
        return self.path.split("/", 1)[1]


@dataclass(frozen=True)
class PartStats:
    """A part's row count and time range, from its parquet footer (no row is read)."""

    part: RemotePart
    rows: int
    first: datetime | None = None
    last: datetime | None = None


def newest_parts(stats: Sequence[PartStats], last_n: int) -> list[RemotePart]:
    """The parts that can hold the newest ``last_n`` rows, in the order given. Pure.

    Parts from several serving hosts overlap in time, so "the newest parts by name" is not enough:
    take parts by their newest row until they hold ``last_n`` rows; the ``last_n``-th newest row is then no
    older than the oldest row among them, so every other part whose newest row reaches that far is kept too.
    Every part is kept when a non-empty part has no time statistics (nothing can be ruled out)."""
    filled = [s for s in stats if s.rows > 0]
    if last_n <= 0 or not filled:
        return []
    timed = [(s, s.first, s.last) for s in filled if s.first is not None and s.last is not None]
    if len(timed) < len(filled):
        return [s.part for s in filled]
    chosen: list[tuple[PartStats, datetime]] = []  # (part, its oldest row)
    rows = 0
    for s, first, _ in sorted(timed, key=lambda t: t[2], reverse=True):
        if rows >= last_n:
            break
        chosen.append((s, first))
        rows += s.rows
    floor = min(first for _, first in chosen)
    kept = {s for s, _ in chosen}
    return [s.part for s, _, last in timed if s in kept or last >= floor]


def check_relative(kind: Kind, relative: str) -> str:
    """``relative`` (``model/date=day/part`` or ``model/part``) when every segment follows its rule; else
    ValueError. Pure: what may become an S3 key or a local path."""
    segments = relative.split("/")
    expected = 3 if kind == "predictions" else 2
    if len(segments) != expected:
        raise ValueError(f"not a {kind} part path: {relative!r}")
    check_name(segments[0], "model")
    if kind == "predictions" and not DAY_DIR.fullmatch(segments[1]):
        raise ValueError(f"not a day folder: {segments[1]!r}")
    if not PART_NAME.fullmatch(segments[-1]):
        raise ValueError(f"not a part name: {segments[-1]!r}")
    return relative


def day_of(relative: str) -> str | None:
    """``YYYY-MM-DD`` of a predictions part path (None for feedback). Pure."""
    segments = relative.split("/")
    return segments[1][5:] if len(segments) == 3 else None


@dataclass
class RemoteLog:
    """The prediction log and feedback under one :class:`~mloop.core.team.ArtifactLayout`."""

    layout: ArtifactLayout
    region: str = "us-east-1"
    _client: Any = field(default=None, init=False, repr=False, compare=False)

    # ------------------------------------------------------------ keys

    def root(self, kind: Kind) -> str:
        """``bucket/prefix/<kind>`` (the parts' paths start with it)."""
        return f"{self.layout.bucket}/{self.layout.key(kind)}"

    def path_of(self, kind: Kind, relative: str) -> str:
        """The path (``bucket/key``) of one part (``relative`` checked by :func:`check_relative`)."""
        return f"{self.root(kind)}/{check_relative(kind, relative)}"

    # ------------------------------------------------------------ S3

    def client(self) -> Any:
        """The boto3 S3 client on the layout's endpoint (made once per instance, :data:`LOG_TIMEOUTS`)."""
        if self._client is None:
            self._client = s3_client(
                self.layout.endpoint_url,
                region=os.environ.get("AWS_DEFAULT_REGION") or self.region,
                timeouts=LOG_TIMEOUTS,
            )
        return self._client

    def upload(self, kind: Kind, local: Path, relative: str) -> None:
        """Store the local part ``local`` as the object of ``relative`` (one PUT; raises on failure)."""
        key = self.path_of(kind, relative).split("/", 1)[1]
        self.client().put_object(Bucket=self.layout.bucket, Key=key, Body=Path(local).read_bytes())

    def _list(self, base: str) -> list[RemotePart]:
        """Every object under the folder ``base`` (``bucket/key``), as parts."""
        bucket, _, prefix = base.partition("/")
        with _file_errors(base):
            pages = (
                self.client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/")
            )
            return [
                RemotePart(f"{bucket}/{obj['Key']}", int(obj.get("Size", 0)), _mtime_ns(obj))
                for page in pages
                for obj in page.get("Contents", [])
            ]

    def _parts(
        self, kind: Kind, model_name: str, since: datetime | None = None
    ) -> list[RemotePart]:
        check_name(model_name, "model")
        root = self.root(kind)
        first_day = since.astimezone(UTC).strftime("%Y-%m-%d") if since is not None else None
        found = []
        for part in self._list(f"{root}/{model_name}"):
            if not part.path.startswith(root + "/"):
                continue
            relative = part.path[len(root) + 1 :]
            try:
                check_relative(kind, relative)
            except Exception:
                continue
            day = day_of(relative)
            if first_day is not None and day is not None and day < first_day:
                continue
            found.append(part)
        if kind == "predictions":
            found.sort(key=lambda p: (p.path.rsplit("/", 2)[-2], p.name))
        else:
            found.sort(key=lambda p: p.name)
        return found

    def prediction_parts(self, model_name: str, since: datetime | None = None) -> list[RemotePart]:
        """The prediction-log parts of ``model_name`` in S3 (only day partitions on/after ``since``), oldest first."""
        return self._parts("predictions", model_name, since)

    def feedback_parts(self, model_name: str) -> list[RemotePart]:
        """The feedback label parts of ``model_name`` in S3, oldest first."""
        return self._parts("feedback", model_name)

    def read_part(
        self,
        part: RemotePart,
        what: str,
        columns: list[str] | None = None,
        *,
        log_layout: bool = False,
    ) -> Any:
        """One part as a DataFrame (as the local reader, :func:`serving.log.predictions.read_part`, ``log_layout``
        included); None when it is gone or unreadable (then warned about and set aside, best effort). A readable
        part without one of ``columns`` still raises."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from serving.log.layout import current_layout

        data = io.BytesIO()
        try:
            data = io.BytesIO(self._get(part))
            table = pq.read_table(data, columns=columns)
            return (current_layout(table) if log_layout else table).to_pandas()
        except FileNotFoundError:
            return None
        except pa.ArrowInvalid as exc:  # not parquet (garbage, truncated, empty)
            if columns is not None:
                try:
                    pq.read_schema(data)
                except Exception:
                    pass
                else:
                    raise
            self.set_aside(part, exc, what)
            return None
        except OSError as exc:  # the store did not answer: skip now, read next time
            log.warning("%s part %s skipped: could not read it from S3: %s", what, part.name, exc)
            return None

    def _get(self, part: RemotePart, byte_range: str | None = None) -> bytes:
        """The object's bytes (``byte_range``: an HTTP Range of them); failures as :func:`_file_errors`."""
        bucket = part.path.split("/", 1)[0]
        extra = {"Range": byte_range} if byte_range else {}
        with _file_errors(part.path):
            return self.client().get_object(Bucket=bucket, Key=part.key, **extra)["Body"].read()

    def _footer(self, part: RemotePart) -> bytes:
        """The end of the part that holds its parquet footer: the last :data:`FOOTER_READ` bytes, then as many
        as the footer's own length (the 4 bytes before the closing ``PAR1``) says when that is more."""
        if part.size <= 0:
            return b""  # not parquet: the caller sets it aside
        tail = self._get(part, f"bytes=-{min(part.size, FOOTER_READ)}")
        need = int.from_bytes(tail[-8:-4], "little") + 8 if len(tail) >= 8 else 0
        if len(tail) < need <= part.size:
            tail = self._get(part, f"bytes=-{need}")
        return tail

    def set_aside(self, part: RemotePart, exc: BaseException, what: str) -> None:
        """Warn about an unreadable object and move it to ``corrupt/`` beside it (best effort, never raises)."""
        folder, _, name = part.path.rpartition("/")
        target = f"{folder}/{CORRUPT_DIR}/{name}"
        bucket, _, target_key = target.partition("/")
        try:
            client = self.client()
            client.copy_object(
                Bucket=bucket, Key=target_key, CopySource={"Bucket": bucket, "Key": part.key}
            )
            client.delete_object(Bucket=bucket, Key=part.key)
        except Exception as move_exc:
            log.warning(
                "%s part %s in S3 is unreadable (%s); skipped (not moved: %s)",
                what,
                part.name,
                exc,
                move_exc,
            )
            return
        log.warning(
            "%s part %s in S3 is unreadable (%s); skipped and moved to %s",
            what,
            part.name,
            exc,
            target,
        )

    def part_stats(
        self, part: RemotePart, what: str, column: str = "timestamp"
    ) -> PartStats | None:
        """The part's rows and ``column``'s min/max from its parquet footer; None when it is gone or could not
        be read now; an unreadable footer is set aside as :meth:`read_part` does."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            meta = pq.read_metadata(pa.BufferReader(self._footer(part)))
        except FileNotFoundError:
            return None
        except pa.ArrowInvalid as exc:
            self.set_aside(part, exc, what)
            return None
        except OSError as exc:
            log.warning(
                "%s part %s skipped: could not read its footer from S3: %s", what, part.name, exc
            )
            return None
        names = meta.schema.names
        first = last = None
        if column in names and meta.num_row_groups:
            index = names.index(column)
            stats = [meta.row_group(i).column(index).statistics for i in range(meta.num_row_groups)]
            if all(st is not None and st.has_min_max for st in stats):
                first, last = min(st.min for st in stats), max(st.max for st in stats)
        return PartStats(part, meta.num_rows, first, last)

    def newest(
        self,
        parts: Sequence[RemotePart],
        last_n: int,
        what: str = "prediction log",
        map_parts: Mapper | None = None,
    ) -> list[RemotePart]:
        """The parts that can hold the newest ``last_n`` rows (:func:`newest_parts`), from their footers (read
        with ``map_parts``): a window of the newest rows reads those parts, not the whole log."""
        stats = self._map(map_parts, _stats_of, parts, what)
        return newest_parts([s for s in stats if s is not None], last_n)

    def read_parts(
        self,
        parts: Iterable[RemotePart],
        what: str = "prediction log",
        map_parts: Mapper | None = None,
        *,
        log_layout: bool = False,
    ) -> Any:
        """The readable ``parts`` as one DataFrame (None when none has rows), in the order given; ``log_layout``
        as :meth:`read_part`. With ``map_parts`` (:func:`mloop.core.partitions.partition_mapper`) each part is
        read by one task of it, e.g. on a Dask cluster."""
        import pandas as pd

        read = _read_log_of if log_layout else _read_of
        frames = self._map(map_parts, read, list(parts), what)
        frames = [f for f in frames if f is not None and len(f)]
        if not frames:
            return None
        return pd.concat(frames, ignore_index=True)

    def _map(
        self, map_parts: Mapper | None, fn: Any, parts: Sequence[RemotePart], what: str
    ) -> list[Any]:
        """``fn(remote, part, what)`` per part: in this thread, or by ``map_parts`` with a copy of this instance
        that holds no client (so nothing with credentials is sent; each task makes its own)."""
        if map_parts is None:
            return [fn(self, part, what) for part in parts]
        return map_parts(partial(fn, replace(self), what=what), list(parts))


@contextmanager
def _file_errors(path: str) -> Iterator[None]:
    """S3 failures as a file's would be, so the callers keep a file reader's except clauses:
    FileNotFoundError when the object or bucket is gone, OSError when the store did not answer or refused."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        if error_code(exc) in MISSING_CODES:
            raise FileNotFoundError(path) from None
        raise OSError(f"S3 answered {error_code(exc) or 'an error'} for {path}") from exc
    except BotoCoreError as exc:
        raise OSError(str(exc)) from exc


def _mtime_ns(obj: dict[str, Any]) -> int:
    """An S3 listing entry's LastModified in nanoseconds since the epoch (0 when absent). Pure."""
    modified = obj.get("LastModified")
    if not isinstance(modified, datetime):
        return 0
    return int(modified.timestamp()) * 1_000_000_000 + modified.microsecond * 1000


def _read_of(remote: RemoteLog, part: RemotePart, what: str) -> Any:
    """One part as a DataFrame (module level: a Dask task can carry it)."""
    return remote.read_part(part, what)


def _read_log_of(remote: RemoteLog, part: RemotePart, what: str) -> Any:
    """One prediction-log part as a DataFrame in the current layout (module level: a Dask task can carry it)."""
    return remote.read_part(part, what, log_layout=True)


def _stats_of(remote: RemoteLog, part: RemotePart, what: str) -> PartStats | None:
    """One part's footer statistics (module level: a Dask task can carry it)."""
    return remote.part_stats(part, what)


def remote_log(settings: Settings) -> RemoteLog | None:
    """The S3 side of the log in team mode; None on a single machine (then nothing S3 is imported)."""
    found = team_config(settings)
    return RemoteLog(found.artifacts) if found is not None else None


# ---------------------------------------------------------------- shipping


def local_parts(kind: Kind, root: Path, model_name: str | None = None) -> list[Path]:
    """The finished local parts under ``root`` (one model's, or every model's), oldest first."""
    base = Path(root)
    if not base.is_dir():
        return []
    models = (
        [check_name(model_name, "model")]
        if model_name is not None
        else sorted(
            p.name
            for p in base.iterdir()
            if p.is_dir() and NAME_PATTERN.match(p.name) and ".." not in p.name
        )
    )
    pattern = "date=*/part-*.parquet" if kind == "predictions" else "part-*.parquet"
    found: list[Path] = []
    for model in models:
        found.extend(sorted((base / model).glob(pattern)))
    return found


def read_manifest(model_dir: Path) -> set[str]:
    """The relative paths already shipped from one model folder."""
    try:
        text = (Path(model_dir) / MANIFEST).read_text()
    except FileNotFoundError:
        return set()
    return {line for line in text.splitlines() if line}


class Shipper:
    """Uploads finished local parts of one log (``kind`` under ``root``) to S3 and records them."""

    def __init__(self, remote: RemoteLog, kind: Kind, root: Path) -> None:
        self.remote = remote
        self.kind: Kind = kind
        self.root = Path(root)
        self.shipped = 0
        self.failures = 0

    def relative(self, path: Path) -> str:
        """``path`` relative to the log root, as an S3 key suffix (checked)."""
        return check_relative(self.kind, Path(path).relative_to(self.root).as_posix())

    def unshipped(self, model_name: str | None = None) -> list[Path]:
        """Local parts not yet recorded as shipped (one model's or all)."""
        out: list[Path] = []
        manifests: dict[Path, set[str]] = {}
        for path in local_parts(self.kind, self.root, model_name):
            model_dir = self.root / path.relative_to(self.root).parts[0]
            done = manifests.setdefault(model_dir, read_manifest(model_dir))
            if path.relative_to(model_dir).as_posix() not in done:
                out.append(path)
        return out

    def ship(self, paths: Iterable[Path]) -> list[Path]:
        """Upload ``paths`` in order; stops at the first failure (warned; the rest wait for the next call).
        Never raises. Returns the parts still not shipped."""
        todo = [Path(p) for p in paths]
        for i, path in enumerate(todo):
            if not path.exists():
                continue  # set aside as corrupt, or never written
            try:
                relative = self.relative(path)
                self.remote.upload(self.kind, path, relative)
                model_dir = self.root / relative.split("/", 1)[0]
                with open(model_dir / MANIFEST, "a") as manifest:
                    manifest.write(relative.split("/", 1)[1] + "\n")
            except ValueError as exc:  # a path that may not become a key: never shipped
                log.error("%s part %s not shipped to S3: %s", self.kind, path, exc)
                continue
            except Exception as exc:
                self.failures += 1
                left = [p for p in todo[i:] if p.exists()]
                log.warning(
                    "%s: %d part(s) not shipped to S3 yet (kept locally, retried): %s: %s",
                    self.kind,
                    len(left),
                    type(exc).__name__,
                    exc,
                )
                return left
            self.shipped += 1
        return []

    def ship_missed(self, model_name: str | None = None) -> list[Path]:
        """Ship every local part not recorded as shipped (at start, periodically, at shutdown)."""
        return self.ship(self.unshipped(model_name))

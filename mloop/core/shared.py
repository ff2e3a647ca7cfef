"""Shared records: the locks and append-only logs several mloop processes (and, in team mode, hosts) share.

Four records are shared: the registry lock around champion moves, the audit log of champion changes,
the retrain ledger (and each model's retrain try-lock), and the dataset version index (with its
per-dataset ingest lock). :func:`shared_records` picks where they live:

- single machine (:class:`FileRecords`): today's files under MLOOP_HOME, guarded by OS file locks
  (``locks/<name>.lock``, ``audit/<model>.jsonl``, ``retrain/ledger.jsonl``,
  ``datasets/<name>/versions.jsonl``), written and read through :mod:`mloop.core.jsonl`;
- team mode (:class:`PostgresRecords`): PostgreSQL database ``NAME`` of ``MLOOP_DATABASE_URL``. A lock is
  an advisory lock (:func:`lock_key` of its name) held by a dedicated connection for the block, so
  PostgreSQL frees it when the holder's connection dies (the same guarantee as an OS file lock); a log
  is a table of ``(id bigserial, key, row jsonb)``, read in ``id`` order, created on first use. A
  lock whose connection breaks (server restart) is gone: the block runs on, as with a deleted lock file.
  Reads, appends and claims share one connection per instance (opened on first use, one caller at a
  time, replaced when the server closed it).

Rows are the callers' pydantic models as JSON in both cases; this module knows no model (it is in the
core layer), callers pass the parser. No password appears in an error or log line here.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel

from mloop.core.errors import MloopError
from mloop.core.jsonl import append_jsonl, read_jsonl
from mloop.core.names import check_name, child_path
from mloop.core.paths import StatePaths
from mloop.core.team import redact_url, team_config

if TYPE_CHECKING:  # pragma: no cover
    from mloop.core.settings import Settings

M = TypeVar("M")
T = TypeVar("T")

Kind = Literal["audit", "retrain", "datasets"]
"""The shared logs: champion-change audit (key: model), retrain ledger (key: model), dataset index (key: dataset)."""

KINDS: tuple[Kind, ...] = ("audit", "retrain", "datasets")

TABLES: dict[Kind, str] = {
    "audit": "mloop_audit",
    "retrain": "mloop_retrain_ledger",
    "datasets": "mloop_dataset_versions",
}
"""The PostgreSQL table of each log (team mode)."""

KEY_FIELD: dict[Kind, str] = {"audit": "model_name", "retrain": "model_name", "datasets": "name"}
"""The JSON field of a row that holds its key (the file ledger holds every model in one file)."""

WHAT: dict[Kind, str] = {
    "audit": "audit log",
    "retrain": "retrain ledger",
    "datasets": "dataset index",
}

Decide = Callable[[list[M]], tuple[T, BaseModel | None]]
"""A claim's decision: the log's rows in, (answer, row to append or None) out. Pure."""


# ---------------------------------------------------------------- pure parts


def lock_key(name: str) -> int:
    """The advisory-lock key of a lock name: the first 8 bytes of blake2b(``mloop-lock:<name>``) as a
    signed 64-bit integer (what ``pg_advisory_lock(bigint)`` takes). Stable across hosts and versions."""
    digest = hashlib.blake2b(f"mloop-lock:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def claim_lock_name(kind: Kind, key: str) -> str:
    """The lock a claim on ``kind``/``key`` holds in PostgreSQL (one per model: claims of different
    models never wait for each other)."""
    return f"{kind}-claim~{key}"


def row_json(row: BaseModel) -> str:
    """A row as stored: the model's JSON (the same text the file version writes)."""
    return row.model_dump_json()


def parse_rows(texts: list[str], parse: Callable[[str], M]) -> list[M]:
    """Stored JSON texts back into models, order kept."""
    return [parse(text) for text in texts]


def key_of(kind: Kind, row_text: str) -> str | None:
    """The key a stored row belongs to (its model or dataset name), None when the row has none."""
    value = json.loads(row_text).get(KEY_FIELD[kind])
    return value if isinstance(value, str) else None


# ---------------------------------------------------------------- the interface


class SharedRecords(ABC):
    """Locks and append-only logs shared by every mloop process of one MLOOP_HOME (files) or one team (PostgreSQL)."""

    @abstractmethod
    def lock(self, name: str, *, timeout: float | None = None) -> AbstractContextManager[None]:
        """Hold the exclusive lock ``name`` while the block runs (wait at most ``timeout`` s; None: forever)."""

    @abstractmethod
    def try_lock(self, name: str) -> AbstractContextManager[bool]:
        """Hold the lock ``name`` while the block runs; yields False at once when another holder has it."""

    @abstractmethod
    def append(self, kind: Kind, key: str, row: BaseModel) -> None:
        """Append one row (durably) to the log ``kind`` of ``key``."""

    @abstractmethod
    def read(self, kind: Kind, key: str | None, parse: Callable[[str], M]) -> list[M]:
        """The rows of ``key`` (None: of every key), oldest first."""

    @abstractmethod
    def keys(self, kind: Kind) -> list[str]:
        """The keys with at least one row, sorted."""

    @abstractmethod
    def claim(self, kind: Kind, key: str, parse: Callable[[str], M], decide: Decide[M, T]) -> T:
        """Read the rows, decide, and append the decided row, as one step no other claim interleaves with."""


# ---------------------------------------------------------------- files (single machine)


@dataclass(frozen=True)
class FileRecords(SharedRecords):
    """Today's files under MLOOP_HOME and OS file locks (one machine)."""

    locks: Path
    audit: Path
    ledger: Path
    datasets: Path

    @classmethod
    def from_state(cls, state: StatePaths) -> FileRecords:
        return cls(
            locks=state.locks,
            audit=state.audit,
            ledger=state.root / "retrain" / "ledger.jsonl",
            datasets=state.datasets,
        )

    def lock_path(self, name: str) -> Path:
        """``<locks>/<name>.lock`` (inside the locks folder, created)."""
        path = child_path(self.locks, f"{name}.lock")
        self.locks.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, kind: Kind, key: str) -> Path:
        """The file of the log ``kind`` of ``key`` (the one ledger file holds every model)."""
        if kind == "audit":
            return child_path(self.audit, f"{check_name(key, 'model')}.jsonl")
        if kind == "datasets":
            return child_path(self.datasets, check_name(key), "versions.jsonl")
        return self.ledger

    def lock(self, name: str, *, timeout: float | None = None) -> AbstractContextManager[None]:
        from filelock import FileLock

        return _none(FileLock(self.lock_path(name), timeout=-1 if timeout is None else timeout))

    def try_lock(self, name: str) -> AbstractContextManager[bool]:
        from mloop.core.files import try_lock

        return try_lock(self.lock_path(name))

    def append(self, kind: Kind, key: str, row: BaseModel) -> None:
        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        what = WHAT[kind] if kind == "retrain" else f"{WHAT[kind]} of {key}"
        mode = 0o600 if kind == "retrain" else 0o644
        append_jsonl(path, row_json(row), what=what, fsync=True, mode=mode)

    def read(self, kind: Kind, key: str | None, parse: Callable[[str], M]) -> list[M]:
        if key is None and kind != "retrain":
            return [row for k in self.keys(kind) for row in self.read(kind, k, parse)]
        path = self.ledger if key is None else self.path(kind, key)
        if not path.exists():
            return []
        what = WHAT[kind] if kind == "retrain" else f"{WHAT[kind]} of {key}"

        def keyed(text: str) -> tuple[str | None, M]:
            row = parse(text)  # first: a line the model refuses is set aside by read_jsonl
            return key_of(kind, text), row

        rows = read_jsonl(path, keyed, what=what).rows
        # the one ledger file holds every model: keep the asked one's rows
        return [row for k, row in rows if kind != "retrain" or key is None or k == key]

    def keys(self, kind: Kind) -> list[str]:
        if kind == "audit":
            return sorted(p.stem for p in self.audit.glob("*.jsonl")) if self.audit.exists() else []
        if kind == "datasets":
            return (
                sorted(p.parent.name for p in self.datasets.glob("*/versions.jsonl"))
                if self.datasets.exists()
                else []
            )
        found = (row.get(KEY_FIELD[kind]) for row in self.read(kind, None, json.loads))
        return sorted({k for k in found if isinstance(k, str)})

    def claim(self, kind: Kind, key: str, parse: Callable[[str], M], decide: Decide[M, T]) -> T:
        """Under ``<log file>.lock`` (today's ledger lock, 60 s): read every row of the file, decide, append."""
        from filelock import FileLock

        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=60):
            answer, row = decide(self.read(kind, key if kind != "retrain" else None, parse))
            if row is not None:
                self.append(kind, key, row)
        return answer


@contextmanager
def _none(lock: Any) -> Iterator[None]:
    with lock:
        yield None


# ---------------------------------------------------------------- PostgreSQL (team mode)


SCHEMA_LOCK = "schema"


def schema_objects() -> list[str]:
    """Every table and index :func:`create_table_sql` creates (checked before any DDL runs)."""
    return [name for table in TABLES.values() for name in (table, f"{table}_key_id")]


def lock_timeout_setting(timeout: float | None) -> str:
    """PostgreSQL's ``lock_timeout`` for a wait of ``timeout`` s (None: forever, which PostgreSQL spells 0)."""
    return "0" if timeout is None else f"{max(1, round(timeout * 1000))}ms"


def create_table_sql(table: str) -> str:
    """The DDL of one log table (``table`` is one of :data:`TABLES`, never user input)."""
    if table not in TABLES.values():
        raise ValueError(f"not a shared-records table: {table}")
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ("
        " id bigserial PRIMARY KEY,"
        " key text NOT NULL,"
        " row jsonb NOT NULL,"
        " recorded_at timestamptz NOT NULL DEFAULT now());"
        f" CREATE INDEX IF NOT EXISTS {table}_key_id ON {table} (key, id);"
    )


class PostgresRecords(SharedRecords):
    """The shared records in PostgreSQL database ``NAME`` (team mode): advisory locks and jsonb tables.

    Reads, appends and claims run on the instance's one connection (:meth:`_session`: opened lazily, one
    thread at a time, replaced when it is closed, broken or inherited across a fork). Each held lock has a
    connection of its own for its block: a session-level advisory lock is re-entrant within its session,
    so a lock on the shared connection would not exclude another lock of the same process (nor survive the
    block's own reads and writes there), and its holder's death must free it alone.
    """

    def __init__(self, dsn: str, password: str | None = None, *, connect_timeout: int = 10) -> None:
        """``dsn`` is password-less (``postgresql://user@host:port/NAME``); the password is passed apart."""
        self.dsn = dsn
        self._password = password or None
        self._connect_timeout = connect_timeout
        self._schema_ready = False
        self._conn: Any = None
        self._conn_pid = 0
        self._inherited: list[Any] = []
        """Connections a forked child inherited: kept, never closed here (closing would end the parent's session)."""
        self._guard = threading.Lock()

    def _error(self, exc: Exception, doing: str) -> MloopError:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return MloopError(
            f"shared records: cannot {doing}: {text}",
            where=f"MLOOP_DATABASE_URL ({redact_url(self.dsn)})",
            fix="check the team's PostgreSQL runs (`mloop infra status`) and MLOOP_DATABASE_URL",
        )

    def connect(self) -> Any:
        """A new psycopg2 connection to mloop's database (autocommit), schema created on first use."""
        import psycopg2

        try:
            conn = psycopg2.connect(
                self.dsn,
                password=self._password,
                connect_timeout=self._connect_timeout,
                application_name="mloop-records",
            )
        except psycopg2.Error as exc:
            raise self._error(exc, "connect") from None
        if not self._schema_ready:
            try:
                with (
                    conn,
                    conn.cursor() as cur,
                ):  # one transaction: the DDL under a transaction-scoped lock
                    cur.execute(
                        "SELECT bool_and(to_regclass(n) IS NOT NULL) FROM unnest(%s::text[]) AS n",
                        (schema_objects(),),
                    )
                    ready = cur.fetchone()  # an aggregate: always one row
                    if not (ready and ready[0]):  # only a first use runs DDL (it locks the tables)
                        cur.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(SCHEMA_LOCK),))
                        for table in TABLES.values():
                            cur.execute(create_table_sql(table))
            except psycopg2.Error as exc:
                conn.close()
                raise self._error(exc, "create the shared-records tables") from None
            self._schema_ready = True
        conn.autocommit = True
        return conn

    @contextmanager
    def _session(self) -> Iterator[Any]:
        """The instance's connection (autocommit) for one statement or transaction, held by this caller
        alone. A connection the server closed while it was idle (restart, idle timeout: its socket is
        readable) is replaced before use, so no statement goes to a dead session; one a statement broke is
        dropped, so the next call connects again."""
        with self._guard:
            conn = self._conn
            if (
                conn is not None and self._conn_pid != os.getpid()
            ):  # a forked child: the parent's session
                self._inherited.append(conn)
                conn = None
            if conn is not None and (conn.closed or _readable_while_idle(conn)):
                conn.close()
                conn = None
            if conn is None:
                conn = self._conn = self.connect()
                self._conn_pid = os.getpid()
            try:
                yield conn
            finally:
                if conn.closed:
                    self._conn = None

    def close(self) -> None:
        """Close the instance's connection (the next call opens another); held locks are not affected."""
        with self._guard:
            if self._conn is not None and self._conn_pid == os.getpid():
                self._conn.close()
            self._conn = None

    @contextmanager
    def lock(self, name: str, *, timeout: float | None = None) -> Iterator[None]:
        import psycopg2

        with closing(self.connect()) as conn, conn.cursor() as cur:
            try:
                cur.execute(
                    "SELECT set_config('lock_timeout', %s, false)", (lock_timeout_setting(timeout),)
                )
                cur.execute("SELECT pg_advisory_lock(%s)", (lock_key(name),))
            except psycopg2.Error as exc:
                raise self._error(exc, f"take lock {name!r} within {timeout} s") from None
            try:
                yield None
            finally:
                try:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (lock_key(name),))
                except psycopg2.Error:  # the connection died: PostgreSQL released the lock with it
                    pass

    @contextmanager
    def try_lock(self, name: str) -> Iterator[bool]:
        import psycopg2

        with closing(self.connect()) as conn, conn.cursor() as cur:
            try:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(name),))
            except psycopg2.Error as exc:
                raise self._error(exc, f"try lock {name!r}") from None
            held = bool(cur.fetchone()[0])
            try:
                yield held
            finally:
                if held:
                    try:
                        cur.execute("SELECT pg_advisory_unlock(%s)", (lock_key(name),))
                    except (
                        psycopg2.Error
                    ):  # the connection died: PostgreSQL released the lock with it
                        pass

    def append(self, kind: Kind, key: str, row: BaseModel) -> None:
        import psycopg2

        with self._session() as conn, conn.cursor() as cur:
            try:
                cur.execute(
                    table_sql("INSERT INTO {} (key, row) VALUES (%s, %s::jsonb)", kind),
                    (key, row_json(row)),
                )
            except psycopg2.Error as exc:
                raise self._error(exc, f"append to the {WHAT[kind]}") from None

    @staticmethod
    def _select(cur: Any, kind: Kind, key: str | None) -> list[str]:
        if key is None:
            cur.execute(table_sql("SELECT row::text FROM {} ORDER BY id", kind))
        else:
            cur.execute(
                table_sql("SELECT row::text FROM {} WHERE key = %s ORDER BY id", kind), (key,)
            )
        return [text for (text,) in cur.fetchall()]

    def _query(self, doing: str, run: Callable[[Any], T]) -> T:
        """``run(cursor)`` for a read-only query on the shared connection. A connection that broke under
        it (the server ended the session just before, faster than :meth:`_session` could see) is
        dropped and the query asked once more on a new one: a read is safe to repeat. Writes are not
        retried (an insert whose answer was lost may have committed)."""
        import psycopg2

        for attempt in (1, 2):
            with self._session() as conn, conn.cursor() as cur:
                try:
                    return run(cur)
                except psycopg2.Error as exc:
                    if attempt == 1 and conn.closed:
                        continue
                    raise self._error(exc, doing) from None
        raise AssertionError("unreachable: the second attempt returns or raises")

    def read(self, kind: Kind, key: str | None, parse: Callable[[str], M]) -> list[M]:
        texts = self._query(f"read the {WHAT[kind]}", lambda cur: self._select(cur, kind, key))
        return parse_rows(texts, parse)

    def keys(self, kind: Kind) -> list[str]:
        def select_keys(cur: Any) -> list[str]:
            cur.execute(table_sql("SELECT DISTINCT key FROM {} ORDER BY key", kind))
            return [key for (key,) in cur.fetchall()]

        return self._query(f"read the {WHAT[kind]}", select_keys)

    def claim(self, kind: Kind, key: str, parse: Callable[[str], M], decide: Decide[M, T]) -> T:
        """One transaction under the key's transaction-scoped advisory lock: read, decide, insert, commit
        (the lock ends with the commit, so the next claimer reads this row)."""
        import psycopg2

        with self._session() as conn:  # the lock and the work: one transaction of one session
            conn.autocommit = False
            try:
                with conn, conn.cursor() as cur:
                    cur.execute(
                        "SELECT pg_advisory_xact_lock(%s)", (lock_key(claim_lock_name(kind, key)),)
                    )
                    answer, row = decide(parse_rows(self._select(cur, kind, key), parse))
                    if row is not None:
                        cur.execute(
                            table_sql("INSERT INTO {} (key, row) VALUES (%s, %s::jsonb)", kind),
                            (key, row_json(row)),
                        )
            except psycopg2.Error as exc:
                raise self._error(exc, f"claim on the {WHAT[kind]}") from None
            finally:
                if not conn.closed:
                    conn.autocommit = (
                        True  # back to the shared connection's mode (no transaction is open)
                    )
            return answer


def _readable_while_idle(conn: Any) -> bool:
    """True when an idle connection's socket has something to read: the server closed it (a restart,
    an idle timeout) and sent its goodbye or EOF. No round trip: a zero-timeout select."""
    try:
        return bool(select.select([conn.fileno()], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def table_sql(template: str, kind: Kind) -> Any:
    """``template`` with its ``{}`` filled by the kind's table as a quoted SQL identifier (psycopg2.sql):
    the table name never goes into the query as plain text, values still go as parameters."""
    from psycopg2 import sql

    return sql.SQL(template).format(sql.Identifier(TABLES[kind]))


# ---------------------------------------------------------------- the choice


def shared_records(settings: Settings) -> SharedRecords:
    """PostgreSQL database ``NAME`` in team mode, else today's files under MLOOP_HOME."""
    team = team_config(settings)
    if team is None:
        return FileRecords.from_state(settings.state)
    databases = team.databases
    return PostgresRecords(databases.mloop_uri, databases.password.get_secret_value() or None)

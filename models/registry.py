"""The model registry (MLflow on SQLite): versions, metadata, loading, and alias moves.

Registered model name == dataset name. Version tags carry metrics (``mloop.metric.<name>``), the
data md5, the gate decision and reason. Aliases: ``challenger`` (latest gated candidate),
``champion`` and ``previous-champion``. MLflow has no compare-and-set on aliases, so every alias
move here happens under a per-model file lock (``<state.locks>/registry-<name>.lock``) and appends
an audit record while the lock is held: concurrent promotions serialize, and the audit log order
is the order the changes took effect. Every model name is checked by the one name rule
(:func:`mloop.core.names.check_name`) before it reaches a lock path, the audit log or an MLflow
filter string.

In team mode the callers pass ``records`` (:func:`mloop.core.shared.shared_records`): the lock is then a
PostgreSQL advisory lock of the same name and the audit log a table, so two hosts cannot both move a
champion. Without it, the lock file and audit file under ``state`` are used, as on a single machine.

Loading never unpickles: :func:`load_pipeline` refuses anything but the skops format and loads it
with an explicit allowlist of types (:data:`models.pipeline.TRUSTED_TYPES`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, Field

from mloop.core import lineage as L
from mloop.core.errors import MloopError, NotFoundError, NotReadyError
from mloop.core.names import check_name, child_path
from mloop.core.paths import StatePaths
from mloop.core.shared import FileRecords, SharedRecords
from mloop.core.tags import (
    TAG_CODE_COMMIT,
    TAG_DATASET_MD5,
    TAG_DATASET_NAME,
    TAG_DATASET_POINTER_COMMIT,
    TAG_DECISION,
    TAG_FLOW_RUN_ID,
    TAG_GATE_METRICS,
    TAG_LAST_CHANGE,
    TAG_METRIC_PREFIX,
    TAG_PROMOTED_REASON,
    TAG_REASON,
    TAG_ROLLED_BACK,
    TAG_SPLIT_SEED,
    TAG_SPLIT_TEST_SIZE,
    tag_value,
)
from models.audit import AuditRecord, append_audit

if TYPE_CHECKING:  # pragma: no cover
    from mlflow import MlflowClient
    from sklearn.pipeline import Pipeline

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"

T = TypeVar("T")


class RegisteredVersion(BaseModel):
    """One registered model version with what mloop records about it."""

    name: str
    version: str
    run_id: str | None
    aliases: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Holdout metrics of the training run."
    )
    data_md5: str | None = None
    decision: str | None = Field(
        default=None, description="Gate decision: promote, reject (None: not gated)."
    )
    tags: dict[str, str] = Field(default_factory=dict)
    source: str | None = Field(default=None, description="Artifact URI of the stored model.")

    @property
    def split(self) -> tuple[float, int]:
        """(test_size, seed) of the training split: ``models.split.split_dataset`` with these and the
        dataset version ``data_md5`` re-derives the exact holdout the metrics were measured on."""
        return float(self.tags.get(TAG_SPLIT_TEST_SIZE, 0.2)), int(
            self.tags.get(TAG_SPLIT_SEED, 42)
        )


def mlflow_client(tracking_uri: str) -> MlflowClient:
    """A client bound to ``tracking_uri`` for tracking and registry (no global state touched)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


SQLITE_BUSY = 5
"""SQLite's primary result code for "database is locked": another writer holds the file."""

SQLITE_KEY_TAKEN = frozenset({1555, 2067})
"""SQLite's extended codes SQLITE_CONSTRAINT_PRIMARYKEY and SQLITE_CONSTRAINT_UNIQUE: the key exists."""


def with_retry(
    fn: Callable[[], T], *, attempts: int = 8, delay: float = 0.25, unique_race: bool = False
) -> T:
    """Run ``fn``, retrying (delay, 2x, 3x ...) while the local SQLite store is busy (several writers),
    and with ``unique_race`` also when an insert lost a race for a key another writer just took (the
    retry finds that row). Any other error, or the last attempt's, is raised as it is."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_incrementing

    retrying = Retrying(
        retry=retry_if_exception(lambda exc: is_transient(exc, unique_race=unique_race)),
        wait=wait_incrementing(start=delay, increment=delay),
        stop=stop_after_attempt(attempts),
        reraise=True,
    )
    return retrying(fn)


def is_transient(exc: BaseException, *, unique_race: bool = False) -> bool:
    """True for an MLflow error that another try may not meet, told by its type and code, not its text.

    A local store raises MLflow's error from SQLAlchemy's from sqlite3's, whose code says "busy" or
    "key taken". A tracking server sends an error code only: a busy store is its 503 (MLflow's client
    retries that itself), and a taken key is a BAD_REQUEST like every other database error, so there
    the database driver's class for SQLSTATE 23505, ``UniqueViolation``, named in the message (not
    the message's prose, which PostgreSQL translates), is what tells it.
    """
    import sqlite3

    from mlflow.exceptions import RestException

    for cause in _causes(exc):
        if isinstance(cause, sqlite3.Error):
            code = cause.sqlite_errorcode
            return (code & 0xFF) == SQLITE_BUSY or (unique_race and code in SQLITE_KEY_TAKEN)
    if unique_race and isinstance(exc, RestException):
        return exc.error_code == "BAD_REQUEST" and "UniqueViolation" in exc.message
    return False


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, innermost last."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


REMOTE_PARALLEL = 4
"""Requests to a remote tracking server that :func:`run_calls` keeps in flight at once."""


def is_remote_store(tracking_uri: str) -> bool:
    """True for a tracking server reached over HTTP (team mode), False for a local store (SQLite). Pure."""
    return tracking_uri.split(":", 1)[0].lower() in ("http", "https")


def run_calls(tracking_uri: str, calls: list[Callable[[], Any]]) -> None:
    """Run independent MLflow calls: a few at a time against a remote server, one after another on a
    local store.

    Why: against the MLflow server each call is an HTTP round trip (with basic auth, and for artifacts a
    proxied S3 write), so N calls in sequence wait N round trips; the server answers several at once. A
    local SQLite store has one writer at a time, so there they stay sequential, as before. The first
    error is raised after every call has ended."""
    if len(calls) < 2 or not is_remote_store(tracking_uri):
        for call in calls:
            call()
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=REMOTE_PARALLEL, thread_name_prefix="mlflow-call") as pool:
        futures = [pool.submit(call) for call in calls]
    for future in futures:
        future.result()


def registered_version(
    *,
    name: str,
    version: str,
    run_id: str | None,
    aliases: list[str],
    tags: dict[str, str],
    source: str | None,
) -> RegisteredVersion:
    """A version with what mloop reads from its tags (metrics, data md5, gate decision); shared by the
    MLflow client path here and the REST reader of the CLI (:mod:`mloop.platform.registry_view`). Pure."""
    metrics = {
        k[len(TAG_METRIC_PREFIX) :]: float(v)
        for k, v in tags.items()
        if k.startswith(TAG_METRIC_PREFIX)
    }
    return RegisteredVersion(
        name=name,
        version=version,
        run_id=run_id,
        aliases=sorted(aliases),
        metrics=metrics,
        data_md5=tags.get(TAG_DATASET_MD5),
        decision=tags.get(TAG_DECISION),
        tags=tags,
        source=source,
    )


def _to_registered(mv: Any) -> RegisteredVersion:
    return registered_version(
        name=mv.name,
        version=str(mv.version),
        run_id=mv.run_id,
        aliases=list(mv.aliases or []),
        tags=dict(mv.tags or {}),
        source=mv.source,
    )


def _not_found(name: str, what: str) -> NotFoundError:
    return NotFoundError(
        f"model {name!r} has no {what}",
        where="MLflow model registry",
        fix=f"list versions with `mloop models {name}`; train one with `mloop train {name}`",
    )


def list_versions(tracking_uri: str, name: str) -> list[RegisteredVersion]:
    """Every version of ``name``, newest first (empty when the model is not registered)."""
    # The rule (letters, digits, '-', '_', '.') leaves no quote or backslash to escape in the filter.
    check_name(name, "model")
    client = mlflow_client(tracking_uri)
    versions = client.search_model_versions(f"name = '{name}'")
    # search results may lack aliases on some stores: fill them from the registered model
    try:
        rm = client.get_registered_model(name)
    except Exception:
        return []
    by_version: dict[str, list[str]] = {}
    for alias, version in (rm.aliases or {}).items():
        by_version.setdefault(str(version), []).append(alias)
    out = []
    for mv in versions:
        info = _to_registered(mv)
        info.aliases = sorted(by_version.get(info.version, []))
        out.append(info)
    return sorted(out, key=lambda v: int(v.version), reverse=True)


def get_version_info(
    tracking_uri: str, name: str, version_or_alias: str | int
) -> RegisteredVersion:
    """One version by number (``"3"``) or alias (``"champion"``); raises NotFoundError."""
    client = mlflow_client(tracking_uri)
    ref = str(version_or_alias)
    try:
        mv = (
            client.get_model_version(name, ref)
            if ref.isdigit()
            else client.get_model_version_by_alias(name, ref)
        )
    except Exception as exc:
        raise _not_found(name, f"version or alias {ref!r}") from exc
    # The version carries its own aliases (SQLite and REST stores alike): no second request for the
    # registered model (in team mode each request is a round trip through the MLflow server).
    return _to_registered(mv)


def champion_version(tracking_uri: str, name: str) -> str | None:
    """The version number holding alias ``champion``, or None."""
    try:
        return get_version_info(tracking_uri, name, CHAMPION).version
    except NotFoundError:
        return None


def model_dir(
    tracking_uri: str, name: str, version_or_alias: str | int, *, cache_root: Path | None = None
) -> Path:
    """Local folder of the stored MLflow model (downloads it when the artifact store is remote;
    ``cache_root``: see :func:`artifact_dir`)."""
    info = get_version_info(tracking_uri, name, version_or_alias)
    if info.source is None:  # pragma: no cover
        raise _not_found(name, f"artifact for version {info.version}")
    return artifact_dir(info.source, tracking_uri, cache_root=cache_root)


def artifact_cache_dir(cache_root: Path, uri: str, tracking_uri: str) -> Path:
    """Where :func:`artifact_dir` keeps the download of ``uri`` from ``tracking_uri``'s store. Pure."""
    import hashlib

    return cache_root / hashlib.sha256(f"{tracking_uri}\n{uri}".encode()).hexdigest()[:32]


def artifact_dir(uri: str, tracking_uri: str, *, cache_root: Path | None = None) -> Path:
    """A local folder for an artifact URI: the folder itself for local (file://) stores, else a download.

    ``cache_root`` (team mode: artifacts proxied by the MLflow server from S3): the download is kept there,
    one folder per (store, URI), and reused. Why: every train run's gate loads the champion, and 8 runs at
    once each downloaded the same model through the server (a listing plus one proxied S3 read per file)
    into a temporary folder nobody removed. A stored model's artifacts are written once, before its
    version is registered, and mloop never rewrites them, so a folder complete once stays valid. The
    download goes to a private temporary folder first and is renamed into place, so a concurrent reader
    sees a whole folder or none. Without ``cache_root``: a fresh download each call (as before).
    """
    import shutil
    import tempfile
    from urllib.parse import unquote, urlparse

    import mlflow.artifacts

    parsed = urlparse(uri)
    if parsed.scheme == "file" and Path(unquote(parsed.path)).is_dir():
        return Path(unquote(parsed.path))
    if cache_root is None:
        return Path(
            mlflow.artifacts.download_artifacts(artifact_uri=uri, tracking_uri=tracking_uri)
        )
    target = artifact_cache_dir(cache_root, uri, tracking_uri)
    if target.is_dir():
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=cache_root))
    try:
        Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=uri, tracking_uri=tracking_uri, dst_path=str(staging)
            )
        ).rename(target)
    except OSError:
        if not target.is_dir():  # not a lost race with another download of the same folder
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def stored_format(path: Path) -> str:
    """The sklearn flavor's serialization format recorded in ``<path>/MLmodel``."""
    import yaml

    meta = yaml.safe_load((path / "MLmodel").read_text())
    return str(meta.get("flavors", {}).get("sklearn", {}).get("serialization_format", "pickle"))


def load_pipeline_from_dir(path: Path) -> Pipeline:
    """Load a stored model folder; only skops, only trusted types. Never unpickles."""
    import skops.io as sio
    import yaml

    from models.pipeline import TRUSTED_TYPES

    fmt = stored_format(path)
    if fmt != "skops":
        raise MloopError(
            f"refusing to load a {fmt!r} model: only skops is accepted (pickle runs code when loaded)",
            where=str(path),
            fix="retrain the model with mloop (it stores skops)",
        )
    meta = yaml.safe_load((path / "MLmodel").read_text())
    data = meta["flavors"]["sklearn"].get("pickled_model", "model.skops")
    file = path / data
    untrusted = set(sio.get_untrusted_types(file=file)) - set(TRUSTED_TYPES)
    if untrusted:
        raise MloopError(
            f"model needs types outside the allowlist: {sorted(untrusted)}",
            where=str(file),
            fix="retrain with mloop",
        )
    return sio.load(file, trusted=TRUSTED_TYPES)


def load_pipeline(
    tracking_uri: str, name: str, version: str | int, *, cache_root: Path | None = None
) -> Pipeline:
    """The fitted sklearn Pipeline of a version (number or alias), loaded with skops (trusted types);
    ``cache_root``: keep and reuse a remote store's download there (:func:`artifact_dir`)."""
    return load_pipeline_from_dir(model_dir(tracking_uri, name, version, cache_root=cache_root))


def get_lineage(tracking_uri: str, name: str, version: str | int) -> L.ModelLineage:
    """Dataset, code commit, run and flow run behind a version (number or alias)."""
    info = get_version_info(tracking_uri, name, version)
    t = info.tags
    return L.ModelLineage(
        model_name=name,
        model_version=info.version,
        run_id=info.run_id or "",
        dataset_name=t.get(TAG_DATASET_NAME, name),
        dataset_md5=t.get(TAG_DATASET_MD5, ""),
        code_commit=t.get(TAG_CODE_COMMIT) or None,
        dataset_pointer_commit=t.get(TAG_DATASET_POINTER_COMMIT) or None,
        flow_run_id=t.get(TAG_FLOW_RUN_ID) or None,
    )


def register_version(
    tracking_uri: str,
    name: str,
    *,
    source: str,
    run_id: str,
    tags: dict[str, str],
    description: str = "",
) -> RegisteredVersion:
    """Create the registered model if needed and a new version pointing at ``source``; no alias yet."""
    check_name(name, "model")
    client = mlflow_client(tracking_uri)
    try:
        client.get_registered_model(name)
    except Exception:
        try:
            with_retry(
                lambda: client.create_registered_model(
                    name, description=f"mloop model of dataset {name}"
                )
            )
        except Exception as exc:  # another trainer registered it meanwhile: fine
            if getattr(exc, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
                raise
    mv = with_retry(
        lambda: client.create_model_version(
            name, source=source, run_id=run_id, tags=tags, description=description
        )
    )
    return _to_registered(mv)


def set_version_tags(tracking_uri: str, name: str, version: str, tags: dict[str, str]) -> None:
    client = mlflow_client(tracking_uri)
    run_calls(
        tracking_uri,
        [
            lambda k=key, v=value: with_retry(
                lambda: client.set_model_version_tag(name, version, k, tag_value(v))
            )
            for key, value in tags.items()
        ],
    )


def set_challenger(
    tracking_uri: str,
    state: StatePaths,
    name: str,
    version: str,
    *,
    records: SharedRecords | None = None,
) -> None:
    """Point ``challenger`` at ``version`` (under the lock; not a champion change, so not audited)."""
    shared = _records(state, name, records)  # checks the name before anything else
    client = mlflow_client(tracking_uri)
    with shared.lock(_lock_name(name), timeout=LOCK_TIMEOUT_S):
        with_retry(lambda: client.set_registered_model_alias(name, CHALLENGER, version))


def _lock_path(state: StatePaths, name: str) -> Path:
    """``<locks>/registry-<name>.lock``; raises MloopError for a name that breaks the rule."""
    path = child_path(state.locks, f"registry-{check_name(name, 'model')}.lock")
    state.locks.mkdir(parents=True, exist_ok=True)
    return path


LOCK_TIMEOUT_S = 300.0


def _lock_name(name: str) -> str:
    """The registry lock of model ``name`` (``<locks>/<this>.lock`` on one machine)."""
    return f"registry-{name}"


def _records(state: StatePaths, name: str, records: SharedRecords | None) -> SharedRecords:
    """``records``, or the files under ``state``; raises MloopError first for a name that breaks the rule."""
    _lock_path(state, name)
    return records if records is not None else FileRecords.from_state(state)


_UNSET = object()


def promote(
    tracking_uri: str,
    state: StatePaths,
    name: str,
    version: str,
    *,
    reason: str,
    actor: str,
    flow_run_id: str | None = None,
    gate_metrics: dict[str, float] | None = None,
    expected_champion: Any = _UNSET,
    records: SharedRecords | None = None,
) -> AuditRecord:
    """Make ``version`` the champion; the old champion becomes ``previous-champion``.

    Under the model's lock: read the champion, (optionally) check it is still ``expected_champion``
    (the one the gate compared against; if another promotion won meanwhile, nothing moves and the
    record says "skipped"), move the aliases, append the audit record, tag the registry.
    """
    shared = _records(state, name, records)  # checks the name before anything else
    client = mlflow_client(tracking_uri)
    get_version_info(tracking_uri, name, version)  # raises NotFoundError for unknown versions
    with shared.lock(_lock_name(name), timeout=LOCK_TIMEOUT_S):
        current = champion_version(tracking_uri, name)
        record = AuditRecord(
            model_name=name,
            action="promote",
            from_version=current,
            to_version=version,
            reason=reason,
            actor=actor,
            flow_run_id=flow_run_id,
            gate_metrics=gate_metrics or {},
        )
        if expected_champion is not _UNSET and current != expected_champion:
            record.outcome, record.to_version = "skipped", current
            record.detail = f"champion changed from {expected_champion} to {current} since the gate ran; gate again"
        elif current == version:
            record.outcome, record.detail = "skipped", "already champion"
        else:
            if current is not None:
                with_retry(
                    lambda: client.set_registered_model_alias(name, PREVIOUS_CHAMPION, current)
                )
            with_retry(lambda: client.set_registered_model_alias(name, CHAMPION, version))
            try:
                if client.get_model_version_by_alias(name, CHALLENGER).version == version:
                    with_retry(lambda: client.delete_registered_model_alias(name, CHALLENGER))
            except Exception:
                pass
            with_retry(
                lambda: client.set_model_version_tag(
                    name, version, TAG_PROMOTED_REASON, tag_value(reason)
                )
            )
        append_audit(state.audit, record, records=records)
        with_retry(
            lambda: client.set_registered_model_tag(
                name, TAG_LAST_CHANGE, tag_value(record.model_dump_json())
            )
        )
    return record


def rollback(
    tracking_uri: str,
    state: StatePaths,
    name: str,
    *,
    reason: str,
    actor: str,
    flow_run_id: str | None = None,
    records: SharedRecords | None = None,
) -> AuditRecord:
    """Champion goes back to ``previous-champion``; the rolled-back version is tagged and loses its alias.

    Raises NotReadyError when there is no previous champion to return to.
    """
    shared = _records(state, name, records)  # checks the name before anything else
    client = mlflow_client(tracking_uri)
    with shared.lock(_lock_name(name), timeout=LOCK_TIMEOUT_S):
        current = champion_version(tracking_uri, name)
        try:
            previous = get_version_info(tracking_uri, name, PREVIOUS_CHAMPION).version
        except (
            NotFoundError
        ) as exc:  # the model exists (the caller's lock named it): not ready, exit 5
            raise NotReadyError(
                f"model {name!r} has no previous champion to roll back to",
                where="MLflow model registry",
                fix=f"promote a specific version instead: `mloop promote {name} VERSION --reason ...`",
            ) from exc
        with_retry(lambda: client.set_registered_model_alias(name, CHAMPION, previous))
        with_retry(lambda: client.delete_registered_model_alias(name, PREVIOUS_CHAMPION))
        if current is not None:
            with_retry(
                lambda: client.set_model_version_tag(
                    name, current, TAG_ROLLED_BACK, tag_value(reason)
                )
            )
        record = AuditRecord(
            model_name=name,
            action="rollback",
            from_version=current,
            to_version=previous,
            reason=reason,
            actor=actor,
            flow_run_id=flow_run_id,
        )
        append_audit(state.audit, record, records=records)
        with_retry(
            lambda: client.set_registered_model_tag(
                name, TAG_LAST_CHANGE, tag_value(record.model_dump_json())
            )
        )
    return record


def decision_tags(decision: str, reason: str, metrics: dict[str, float]) -> dict[str, str]:
    """Version tags recording a gate decision."""
    return {
        TAG_DECISION: decision,
        TAG_REASON: tag_value(reason),
        TAG_GATE_METRICS: tag_value(json.dumps(metrics, sort_keys=True)),
    }

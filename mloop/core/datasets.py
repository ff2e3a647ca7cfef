"""Dataset versions: contract-checked ingest, DVC versioning, listing and exact retrieval.

The project checkout (``settings.project_dir``, a git repo) is the DVC repo. The DVC cache, the
default remote and DVC's site cache live under MLOOP_HOME; they are passed to DVC as config
overrides, so the project's ``.dvc/config`` is never rewritten. An accepted version is written
as ``data/<name>/<name>.parquet`` (deterministic bytes), added with DVC and pushed to the remote;
the version index ``<MLOOP_HOME>/datasets/<name>/versions.jsonl`` (append-only) lists every
version (torn or unparseable lines are set aside by :mod:`mloop.core.jsonl`), with its label source (``ingested`` for a file, ``feedback`` for a version the retrain
path built from feedback labels; rows written before the field existed read as ``ingested``).
Rejected data touches none of these. Retrieval by md5 reads the DVC cache, or fetches
the object from the remote when the cache was deleted, and verifies the md5 either way.

Ingests of the same dataset are serialised with a file lock under ``<MLOOP_HOME>/locks``; ingests of
different datasets take turns (another lock there) only for the repo-wide DVC add/push and git commit.
In team mode the version index is a table of the team's PostgreSQL and the per-dataset ingest lock a
PostgreSQL advisory lock (:mod:`mloop.core.shared`), so every host sees every version; the repo-wide
lock stays a file lock (the DVC repo and git checkout are this host's).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel, Field

from mloop.core.contract import (
    RULE_EMPTY,
    RULE_NO_FEATURES,
    RULE_TARGET_MISSING,
    RULE_UNREADABLE,
    DatasetContract,
    RuleFailure,
    Task,
    ValidationReport,
    contract_path,
    duplicated_rows,
    infer_contract,
    load_contract,
    save_contract,
    validate_frame,
)
from mloop.core.errors import MloopError, NotFoundError, RejectedError
from mloop.core.frames import (
    file_md5,
    frame_format,
    normalize_frame,
    read_frame,
    write_parquet,
)
from mloop.core.lineage import LABEL_INGESTED, DatasetVersion, LabelSource, git_commit
from mloop.core.names import NAME_PATTERN, check_name  # noqa: F401 - the one name rule, re-exported
from mloop.core.settings import Settings
from mloop.core.shared import shared_records
from mloop.core.team import team_config

if TYPE_CHECKING:
    from dvc.repo import Repo

REMOTE_NAME = "mloop"

Progress = Callable[[str], None]


class DataRejected(RejectedError):
    """The data breaks its contract (or cannot be read); ``report`` names every failed rule (exit 4)."""

    def __init__(self, report: ValidationReport, *, where: str | None = None) -> None:
        self.report = report
        super().__init__(
            f"dataset {report.dataset!r} rejected:\n{report.text()}",
            where=where,
            fix="fix the data, or loosen the tolerances in the contract file if the change is intended",
        )


class IngestResult(BaseModel):
    """What an ingest did: the version (new or existing) and whether anything was written."""

    version: DatasetVersion
    created: bool = Field(
        description="False when identical content was already a version (nothing written)."
    )
    contract_created: bool = Field(
        default=False, description="True on the first ingest of a dataset."
    )
    contract_path: str = Field(description="The contract file the data was checked against.")
    report: ValidationReport


# ---- paths and the version index -------------------------------------------------------------


def data_dir(settings: Settings, name: str) -> Path:
    return settings.project_dir.resolve() / "data" / name


def parquet_path(settings: Settings, name: str) -> Path:
    return data_dir(settings, name) / f"{name}.parquet"


def index_path(settings: Settings, name: str) -> Path:
    return settings.state.datasets / name / "versions.jsonl"


def list_versions(settings: Settings, name: str) -> list[DatasetVersion]:
    """Every accepted version of ``name``, newest first (empty if none)."""
    check_name(name)
    return shared_records(settings).read("datasets", name, DatasetVersion.model_validate_json)[::-1]


def list_datasets(settings: Settings) -> list[str]:
    """Names of datasets with at least one version."""
    return shared_records(settings).keys("datasets")


def get_version(settings: Settings, name: str, md5: str | None = None) -> DatasetVersion:
    """The version of ``name`` with this md5 (a unique prefix of at least 6 characters works),
    or the latest when ``md5`` is None. NotFoundError otherwise."""
    versions = list_versions(settings, name)
    if not versions:
        raise NotFoundError(
            f"dataset {name!r} has no versions",
            fix=f"ingest one: mloop ingest FILE --dataset {name}",
        )
    if md5 is None:
        return versions[0]
    md5 = md5.strip().lower()
    matches = {
        v.md5: v for v in versions if v.md5 == md5 or (len(md5) >= 6 and v.md5.startswith(md5))
    }
    if len(matches) != 1:
        known = ", ".join(v.md5 for v in versions[:5])
        raise NotFoundError(
            f"dataset {name!r} has {'no' if not matches else 'more than one'} version matching {md5!r}",
            fix=f"pick one of: {known} (see: mloop data list {name})",
        )
    return next(iter(matches.values()))


def trusted_version(settings: Settings, name: str) -> DatasetVersion | None:
    """The newest version of ``name`` whose labels were ingested from a file (None: no such version).

    Its holdout is what the promotion gate trusts: no feedback can change an ingested version's labels.
    """
    return next(
        (v for v in list_versions(settings, name) if v.label_source == LABEL_INGESTED), None
    )


def _append_index(settings: Settings, version: DatasetVersion) -> None:
    shared_records(settings).append("datasets", version.name, version)


# ---- DVC -----------------------------------------------------------------------------------


def remote_config(settings: Settings) -> dict[str, str]:
    """The DVC remote's config: its URL, and in team mode the S3 endpoint (``endpointurl``) of an s3:// remote.

    No credentials: dvc-s3 takes them from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, so they are
    never written into ``.dvc/config`` (which these overrides never touch anyway).
    """
    url = settings.remote_url
    team = team_config(settings)
    endpoint = team.artifacts.endpoint_url if team is not None else None
    if endpoint and url.startswith("s3://"):
        return {"url": url, "endpointurl": endpoint}
    return {"url": url}


def dvc_config(settings: Settings) -> dict[str, Any]:
    """DVC config overrides: cache, remote and site cache under MLOOP_HOME, analytics off."""
    state = settings.state
    return {
        "core": {
            "remote": REMOTE_NAME,
            "analytics": "false",
            "autostage": "false",
            "site_cache_dir": str(state.dvc_site_cache),
        },
        "cache": {"dir": str(state.dvc_cache)},
        "remote": {REMOTE_NAME: remote_config(settings)},
    }


@contextmanager
def _quiet_dvc(settings: Settings) -> Iterator[None]:
    """Keep DVC's hints off the console and its site cache out of /var/tmp."""
    logger = logging.getLogger("dvc")
    level = logger.level
    old_env = os.environ.get("DVC_SITE_CACHE_DIR")
    logger.setLevel(logging.WARNING)
    os.environ["DVC_SITE_CACHE_DIR"] = str(settings.state.dvc_site_cache)
    try:
        yield
    finally:
        logger.setLevel(level)
        if old_env is None:
            os.environ.pop("DVC_SITE_CACHE_DIR", None)
        else:
            os.environ["DVC_SITE_CACHE_DIR"] = old_env


REPO_LOCK = "project-repo.lock"
"""File lock (under ``<MLOOP_HOME>/locks``) around an ingest's DVC add/push and git commit."""


@contextmanager
def open_repo(settings: Settings) -> Iterator[Repo]:
    """The project's DVC repo with the MLOOP_HOME overrides (``dvc init`` first if needed)."""
    from dvc.repo import Repo

    root = settings.project_dir.resolve()
    if not (root / ".git").exists():
        raise MloopError(
            "the project dir is not a git checkout",
            where=str(root),
            fix="run mloop from the project checkout or set MLOOP_PROJECT_DIR to it",
        )
    with _quiet_dvc(settings):
        if not (root / ".dvc").is_dir():
            Repo.init(str(root)).close()
        repo = Repo(str(root), config=dvc_config(settings))
        repo.scm_context.quiet = True
        try:
            yield repo
        finally:
            repo.close()


def _cache_file(settings: Settings, md5: str) -> Path:
    return settings.state.dvc_cache / "files" / "md5" / md5[:2] / md5[2:]


def fetch_version(settings: Settings, name: str, md5: str) -> Path:
    """Path of the verified bytes of version ``md5`` in the local DVC cache.

    The cache is used when it holds the object and its md5 matches; otherwise the object is
    downloaded from the DVC remote into the cache and verified. MloopError if neither has it.
    """
    version = get_version(settings, name, md5)
    cached = _cache_file(settings, version.md5)
    if cached.exists() and file_md5(cached) == version.md5:
        return cached
    with open_repo(settings) as repo:
        odb = repo.cloud.get_remote_odb(name=REMOTE_NAME, command="get")
        remote_path = odb.oid_to_path(version.md5)
        if not odb.fs.exists(remote_path):
            raise MloopError(
                f"version {version.md5} of {name!r} is neither in the local DVC cache nor on the remote",
                where=f"{settings.remote_url} ({remote_path})",
                fix="check MLOOP_DVC_REMOTE points at the remote the version was pushed to",
            )
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f"{cached.name}.{uuid.uuid4().hex}.part")
        try:
            odb.fs.get_file(remote_path, str(partial))
            got = file_md5(partial)
            if got != version.md5:
                raise MloopError(
                    f"the remote copy of {name} {version.md5} is corrupt (md5 {got})",
                    where=str(remote_path),
                    fix="restore the object on the remote from a backup",
                )
            os.replace(partial, cached)
        finally:
            partial.unlink(missing_ok=True)
    return cached


def read_version(settings: Settings, name: str, md5: str | None = None) -> pd.DataFrame:
    """The DataFrame of version ``md5`` (latest if None), from verified bytes (cache or remote)."""
    version = get_version(settings, name, md5)
    return read_frame(fetch_version(settings, name, version.md5), fmt="parquet")


def export_version(settings: Settings, name: str, md5: str | None, out: Path) -> Path:
    """Write the exact bytes of version ``md5`` (latest if None) to ``out``; md5 verified."""
    source = fetch_version(settings, name, get_version(settings, name, md5).md5)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, out)
    return out


# ---- ingest --------------------------------------------------------------------------------


def no_features_message(contract: DatasetContract) -> str:
    """Why a new dataset has no feature: what each of its columns is instead. Pure."""
    roles = [
        f"{c.name!r} ({'target' if c.name == contract.target else 'time column' if c.name == contract.time_column else c.role})"
        for c in contract.columns
    ]
    return (
        f"no column is left to learn from: {', '.join(roles[:10])}; add the columns a model should use "
        "(an id-like column, unique on every row, is never a feature)"
    )


def _reject(
    name: str, rule: str, message: str, source: Path, rows: int = 0, columns: int = 0
) -> DataRejected:
    report = ValidationReport(
        dataset=name,
        rows=rows,
        columns=columns,
        failures=[RuleFailure(rule=rule, rows=rows, message=message)],
    )
    return DataRejected(report, where=str(source))


def _read_source(source: Path, name: str, contract: DatasetContract | None) -> pd.DataFrame:
    if not source.exists():
        raise NotFoundError(f"file not found: {source}", fix="check the path")
    try:
        frame_format(source)
    except ValueError as exc:
        raise RejectedError(str(exc), where=str(source)) from None
    if source.stat().st_size == 0:
        raise _reject(name, RULE_EMPTY, "the file is empty (0 bytes)", source)
    strings = [c.name for c in contract.columns if c.kind == "categorical"] if contract else []
    try:
        df = normalize_frame(read_frame(source, string_columns=strings))
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError with the parser's reason
        reason = str(exc).strip().splitlines()[0][:300]
        if "Empty CSV file" in reason:
            raise _reject(
                name, RULE_EMPTY, "the file is empty (no header, no rows)", source
            ) from None
        raise _reject(
            name, RULE_UNREADABLE, f"cannot parse {source.name}: {reason}", source
        ) from None
    if df.empty:
        raise _reject(
            name,
            RULE_EMPTY,
            f"the file has a header but no data rows ({len(df.columns)} columns)",
            source,
            0,
            len(df.columns),
        )
    return df


def _dvc_add(repo: Any, target_path: Path) -> Any:
    """``dvc add`` with a clear error when git ignores the pointer (DVC refuses to write it)."""
    from dvc.dvcfile import FileIsGitIgnored

    try:
        return repo.add(str(target_path))
    except FileIsGitIgnored as exc:
        target_path.unlink(missing_ok=True)  # nothing was versioned: leave no bytes behind
        raise MloopError(
            f"DVC refuses to write the pointer {target_path.name}.dvc: {exc}",
            where=str(target_path.parent),
            fix=f"remove the .gitignore rule that ignores {target_path.parent} (only the parquet may be ignored)",
        ) from exc


def _git_commit_pointer(settings: Settings, name: str, md5: str, rows: int) -> str | None:
    root = settings.project_dir.resolve()
    folder = data_dir(settings, name)
    paths = [
        p
        for p in (folder / f"{name}.parquet.dvc", folder / ".gitignore", folder / "contract.yaml")
        if p.exists()
    ]
    rel = [str(p.relative_to(root)) for p in paths]

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(root), *argv], capture_output=True, text=True, timeout=60
        )

    added = run("add", "--", *rel)
    if added.returncode != 0:
        raise MloopError(f"git add failed: {added.stderr.strip()}", where=str(root))
    if run("diff", "--cached", "--quiet", "--", *rel).returncode == 0:
        return git_commit(root)  # pointer already committed (same content)
    done = run("commit", "-q", "-m", f"data: {name} version {md5} ({rows} rows)", "--", *rel)
    if done.returncode != 0:
        raise MloopError(
            f"git commit of the data pointer failed: {done.stderr.strip() or done.stdout.strip()}",
            where=str(root),
            fix="set git user.name/user.email, or turn off MLOOP_GIT_COMMIT_DATA",
        )
    return git_commit(root)


S3_SCHEME = "s3://"
_OBJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


def is_s3_uri(source: Path | str) -> bool:
    """Whether ``source`` is an ``s3://`` URI (a str: a Path would have folded its ``//``). Pure."""
    return isinstance(source, str) and source.strip().lower().startswith(S3_SCHEME)


@contextmanager
def s3_source(settings: Settings, uri: str) -> Iterator[Path]:
    """A local copy of the object ``uri`` (``s3://bucket/key``, read with team mode's endpoint and the AWS
    keys of the environment) in a folder of its own under MLOOP_HOME/tmp, removed afterwards: an ingest run
    (a deployment's, on any worker) then reads a file that lives on no particular host. The object's name
    becomes the local file's name only when it is a plain file name."""
    import tempfile

    from mloop.core.s3 import s3_client
    from mloop.core.team import team_config

    team = team_config(settings)
    if team is None:
        raise MloopError(
            "an s3:// source needs team mode (its S3 endpoint and keys)",
            where=uri,
            fix="set MLOOP_S3_ENDPOINT_URL, MLOOP_ARTIFACTS_URI and MLOOP_DATABASE_URL (docs/team-mode.md), "
            "or give a local file",
        )
    bucket, _, key = uri.strip()[len(S3_SCHEME) :].partition("/")
    name = key.rsplit("/", 1)[-1]
    if not bucket or not _OBJECT_NAME.fullmatch(name) or ".." in name:
        raise MloopError(
            "not the URI of a CSV or parquet object",
            where=uri,
            fix="give s3://BUCKET/KEY whose last segment is a file name such as data.csv or data.parquet",
        )
    settings.state.tmp.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="ingest-", dir=settings.state.tmp))
    try:
        local = folder / name
        _download(s3_client(team.artifacts.endpoint_url), bucket, key, local, uri)
        yield local
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _download(client: Any, bucket: str, key: str, local: Path, uri: str) -> None:
    """``client.download_file`` with its failures as errors that say what, where and how to fix (no keys)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from mloop.core.s3 import MISSING_CODES, error_code, s3_error

    try:
        client.download_file(bucket, key, str(local))
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) in MISSING_CODES:
            raise NotFoundError(
                f"no object at {uri}",
                where="MLOOP_S3_ENDPOINT_URL",
                fix="check the bucket and key (e.g. list them with your S3 tool)",
            ) from None
        raise s3_error(
            exc,
            f"read {uri}",
            fix="check that the S3 endpoint answers and that AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY may read that bucket, then ingest again",
        ) from None


def ingest_dataset(
    settings: Settings,
    source: Path | str,
    *,
    dataset: str,
    target: str | None = None,
    task: Task | None = None,
    time_column: str | None = None,
    progress: Progress | None = None,
    label_source: LabelSource = LABEL_INGESTED,
    origin: str | None = None,
) -> IngestResult:
    """Check ``source`` (CSV/parquet) against the dataset's contract and version it with DVC.

    The first ingest of ``dataset`` infers the contract (``target`` defaults to ``target``) and
    writes ``data/<dataset>/contract.yaml``. Raises DataRejected (nothing written anywhere) when
    a rule fails. Identical content to an existing version returns that version with
    ``created=False`` and writes nothing (it keeps the label source it was first versioned with).
    ``label_source`` records where the labels came from (the retrain path passes ``feedback``).
    In team mode ``source`` may be ``s3://bucket/key`` (:func:`s3_source`); ``origin`` is what the
    version records as its source (default: the file's path).
    """
    if is_s3_uri(source):
        with s3_source(settings, str(source)) as local:
            return ingest_dataset(
                settings,
                local,
                dataset=dataset,
                target=target,
                task=task,
                time_column=time_column,
                progress=progress,
                label_source=label_source,
                origin=str(source).strip(),
            )
    say = progress or (lambda _msg: None)
    name = check_name(dataset)
    source = Path(source).expanduser().resolve()
    settings.state.ensure()
    with shared_records(settings).lock(f"dataset-{name}"):
        project = settings.project_dir.resolve()
        contract_file = contract_path(project, name)
        contract = load_contract(project, name) if contract_file.exists() else None
        contract_created = contract is None
        if contract is not None:
            _check_options(contract, contract_file, target, task, time_column)
        df, contract, report = _checked_frame(
            source, name, contract, target or "target", task, time_column, say
        )
        say("writing parquet")
        stored = _store_parquet(settings, name, df)
        if isinstance(stored, DatasetVersion):  # identical content: that version, nothing written
            return IngestResult(
                version=stored, created=False, contract_path=str(contract_file), report=report
            )
        md5, target_path, size = stored
        if contract_created:
            save_contract(contract, project)
        pointer_commit = _version_with_dvc(settings, name, target_path, md5, len(df), say)
        version = DatasetVersion(
            name=name,
            md5=md5,
            rows=len(df),
            columns=[str(c) for c in df.columns],
            created_at=datetime.now(UTC),
            path=str(target_path.relative_to(project)),
            size=size,
            git_commit=pointer_commit,
            code_commit=git_commit(settings.project_dir),
            source=origin or str(source),
            label_source=label_source,
        )
        _append_index(settings, version)
        return IngestResult(
            version=version,
            created=True,
            contract_created=contract_created,
            contract_path=str(contract_file),
            report=report,
        )


def _checked_frame(
    source: Path,
    name: str,
    contract: DatasetContract | None,
    target: str,
    task: Task | None,
    time_column: str | None,
    say: Progress,
) -> tuple[pd.DataFrame, DatasetContract, ValidationReport]:
    """The source read and checked against ``contract`` (inferred first when None): the frame, the
    contract and the passing report. DataRejected when a rule fails."""
    say(f"reading {source.name}")
    df = _read_source(source, name, contract)
    duplicated = None
    if contract is None:
        contract, duplicated = _first_contract(df, name, source, target, task, time_column, say)
    elif contract.time_column and contract.time_column in df.columns:
        _parse_time_column(df, contract.time_column)
    say(f"checking {len(df):,} rows against the contract")
    report = validate_frame(df, contract, duplicated=duplicated)
    if not report.ok:
        raise DataRejected(report, where=str(source))
    return df, contract, report


def _check_options(
    contract: DatasetContract,
    contract_file: Path,
    target: str | None,
    task: Task | None,
    time_column: str | None,
) -> None:
    """An option given to an ingest must agree with the dataset's contract (RejectedError if not)."""
    for label, given, expected in (
        ("target", target, contract.target),
        ("task", task, contract.task),
        ("time column", time_column, contract.time_column),
    ):
        if given is not None and given != expected:
            raise RejectedError(
                f"{label} {given!r} differs from the contract's {expected!r}",
                where=str(contract_file),
                fix=f"omit the option, or edit the contract file to change the {label}",
            )


def _first_contract(
    df: pd.DataFrame,
    name: str,
    source: Path,
    target: str,
    task: Task | None,
    time_column: str | None,
    say: Progress,
) -> tuple[DatasetContract, pd.Series]:
    """The contract inferred at a dataset's first ingest, and the duplicated-rows mask it used
    (DataRejected when the file cannot have one: no target, no features). Parses ``time_column``."""
    if target not in df.columns:
        raise _reject(
            name,
            RULE_TARGET_MISSING,
            f"target column {target!r} is absent (columns: {', '.join(map(str, df.columns[:20]))})",
            source,
            len(df),
            len(df.columns),
        )
    if time_column is not None and time_column not in df.columns:
        raise RejectedError(f"time column {time_column!r} is not in the file", where=str(source))
    if time_column is not None and not pd.api.types.is_datetime64_any_dtype(df[time_column]):
        df[time_column] = pd.to_datetime(df[time_column], errors="raise", utc=False)
    say("inferring the contract")
    duplicated = duplicated_rows(df)
    contract = infer_contract(
        df,
        name=name,
        target=target,
        task=task,
        time_column=time_column,
        duplicated=duplicated,
    )
    if not contract.feature_columns:
        raise _reject(
            name,
            RULE_NO_FEATURES,
            no_features_message(contract),
            source,
            len(df),
            len(df.columns),
        )
    return contract, duplicated


def _parse_time_column(df: pd.DataFrame, column: str) -> None:
    """Parse the contract's time column in place when every value parses (else validation reports it)."""
    if not pd.api.types.is_datetime64_any_dtype(df[column]):
        converted = pd.to_datetime(df[column], errors="coerce")
        if converted.notna().sum() == df[column].notna().sum():
            df[column] = converted


def _store_parquet(
    settings: Settings, name: str, df: pd.DataFrame
) -> DatasetVersion | tuple[str, Path, int]:
    """``df`` as the dataset's parquet file: (md5, path, size); or the existing version with the same
    content (then nothing is written). Staged under MLOOP_HOME/tmp, so a failure leaves no file."""
    settings.state.tmp.mkdir(parents=True, exist_ok=True)
    staged = settings.state.tmp / f"{name}-{uuid.uuid4().hex}.parquet"
    try:
        write_parquet(df, staged)
        md5 = file_md5(staged)
        existing = {v.md5: v for v in list_versions(settings, name)}
        if md5 in existing:
            return existing[md5]
        target_path = parquet_path(settings, name)
        target_path.parent.mkdir(parents=True, exist_ok=True)
        size = staged.stat().st_size
        shutil.move(str(staged), target_path)
    finally:
        staged.unlink(missing_ok=True)
    return md5, target_path, size


def _version_with_dvc(
    settings: Settings, name: str, target_path: Path, md5: str, rows: int, say: Progress
) -> str | None:
    """Track the file with DVC, push it to the remote, and (``git_commit_data``) commit the pointer and
    contract in git. Returns that commit, if any."""
    from filelock import FileLock

    say("versioning with DVC and pushing to the remote")
    # DVC's repository lock and git's index lock are repo-wide and fail at once (DVC gives up
    # after ~3 s) when another dataset's ingest holds them: ingests of different datasets take
    # turns here instead (onboarding many datasets at once must not fail).
    with FileLock(str(settings.state.locks / REPO_LOCK)):
        with open_repo(settings) as repo:
            stages = _dvc_add(repo, target_path)
            dvc_md5 = stages[0].outs[0].hash_info.value
            repo.push(targets=[str(target_path)], remote=REMOTE_NAME)
        if dvc_md5 != md5:  # pragma: no cover - DVC hashes the same bytes
            raise MloopError(f"DVC recorded md5 {dvc_md5}, expected {md5}", where=str(target_path))
        if not settings.git_commit_data:
            return None
        say("committing the pointer and contract in git")
        return _git_commit_pointer(settings, name, md5, rows)

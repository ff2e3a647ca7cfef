"""Team mode (issue 13): what the shared PostgreSQL and S3 settings mean. Pure, typed, no I/O.

Team mode is on when any of ``MLOOP_DATABASE_URL``, ``MLOOP_ARTIFACTS_URI`` or
``MLOOP_S3_ENDPOINT_URL`` is set; :func:`team_config` then reads all of them, or says which one is
missing or wrong. Unset, nothing here is used and the single-machine defaults stay as they are.

One PostgreSQL server holds a database per component beside the one the URL names (``NAME``):

- ``NAME_prefect``: the Prefect server (``postgresql+asyncpg://``, Prefect's async driver);
- ``NAME_mlflow``: MLflow tracking and registry; ``NAME_mlflow_auth``: MLflow's basic-auth users;
- ``NAME``: mloop's own shared records.

One bucket prefix (``s3://bucket/prefix``) holds a folder per kind of artifact (:class:`ArtifactLayout`).

The password never appears in a URL this module gives out for argv, config files or messages: those
are password-less (:meth:`TeamDatabases.url`), and the password travels in the environment only
(:meth:`TeamDatabases.password_env`, libpq's and asyncpg's ``PGPASSWORD``). Only the Prefect URL
carries it, as a :class:`~pydantic.SecretStr` for the server's environment. Errors show the URL
redacted (:func:`redact_url`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit

from pydantic import SecretStr

from mloop.core.errors import MloopError, NotReadyError

DATABASE_SCHEMES: frozenset[str] = frozenset(
    {"postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"}
)
"""Schemes ``MLOOP_DATABASE_URL`` may have (all mean PostgreSQL; each component gets its own driver)."""

PREFECT_DRIVER = "postgresql+asyncpg"
"""Prefect's server needs an async driver (asyncpg)."""

SYNC_DRIVER = "postgresql"
"""libpq's URI scheme: what psycopg.connect reads (mloop's own connections)."""

MLFLOW_DRIVER = "postgresql+psycopg"
"""MLflow's SQLAlchemy URL names its driver, psycopg 3, the one mloop installs (a bare ``postgresql://``
means psycopg 3 only from SQLAlchemy 2.1 on; before, psycopg2)."""

PREFECT_SUFFIX = "_prefect"
MLFLOW_SUFFIX = "_mlflow"
MLFLOW_AUTH_SUFFIX = "_mlflow_auth"

_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_DB_NAME = 63 - len(MLFLOW_AUTH_SUFFIX)
"""PostgreSQL names are at most 63 bytes; the longest derived name adds ``_mlflow_auth``."""

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
"""An S3 bucket name as AWS allows it (3-63 characters: lowercase letters, digits, dots, hyphens)."""
_LOOSE_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
"""What S3-compatible stores (SeaweedFS, MinIO) accept beyond AWS's rule."""

DATABASE_FIX = (
    "set MLOOP_DATABASE_URL=postgresql://USER:PASSWORD@HOST:PORT/NAME (e.g. from `mloop infra env`)"
)
ARTIFACTS_FIX = "set MLOOP_ARTIFACTS_URI=s3://BUCKET/PREFIX (e.g. from `mloop infra env`)"


# ---------------------------------------------------------------- team mode on/off


class TeamSettings(Protocol):
    """The three settings team mode reads (:class:`mloop.core.settings.Settings` has them). A protocol,
    not the settings class: the settings use this module, so it must not import them."""

    @property
    def database_url(self) -> SecretStr | None: ...
    @property
    def artifacts_uri(self) -> str | None: ...
    @property
    def s3_endpoint_url(self) -> str | None: ...


def is_team(settings: TeamSettings) -> bool:
    """True when any team setting is set (then :func:`team_config` must succeed); False: single machine."""
    url = settings.database_url.get_secret_value() if settings.database_url is not None else ""
    return bool(url or settings.artifacts_uri or settings.s3_endpoint_url)


# ---------------------------------------------------------------- PostgreSQL


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages). Pure; never raises."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(not a URL)"
    netloc, slash, path = rest.partition("/")
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}://{userinfo}{at}{hostport}{slash}{path}"


@dataclass(frozen=True)
class TeamDatabases:
    """The team's PostgreSQL server and the databases of each component (from ``MLOOP_DATABASE_URL``)."""

    user: str
    """As written in the URL (percent-encoded)."""
    password: SecretStr
    """Decoded; empty when the URL has none (e.g. trust or a ~/.pgpass)."""
    hostport: str
    """``host:port`` as written (an IPv6 host in brackets)."""
    name: str
    """mloop's own database; the components' names derive from it."""
    query: str = ""
    """The URL's query string (e.g. ``sslmode=require``), kept on every derived URL."""

    @property
    def prefect_db(self) -> str:
        return f"{self.name}{PREFECT_SUFFIX}"

    @property
    def mlflow_db(self) -> str:
        return f"{self.name}{MLFLOW_SUFFIX}"

    @property
    def mlflow_auth_db(self) -> str:
        return f"{self.name}{MLFLOW_AUTH_SUFFIX}"

    @property
    def component_dbs(self) -> tuple[str, ...]:
        """The databases mloop creates when missing (``NAME`` itself must exist: it is where mloop connects)."""
        return (self.prefect_db, self.mlflow_db, self.mlflow_auth_db)

    def url(self, database: str, *, driver: str = SYNC_DRIVER) -> str:
        """``driver://user@hostport/database`` without the password (argv, config files, messages)."""
        return self._url(database, driver, "")

    def _url(self, database: str, driver: str, password: str) -> str:
        userinfo = self.user + (f":{quote(password, safe='')}" if password else "")
        at = "@" if userinfo else ""
        query = f"?{self.query}" if self.query else ""
        return f"{driver}://{userinfo}{at}{self.hostport}/{database}{query}"

    @property
    def prefect_url(self) -> SecretStr:
        """The Prefect server's ``postgresql+asyncpg://user:pw@host:port/NAME_prefect`` (its environment only)."""
        return SecretStr(
            self._url(self.prefect_db, PREFECT_DRIVER, self.password.get_secret_value())
        )

    @property
    def mlflow_store_uri(self) -> str:
        """MLflow's ``--backend-store-uri`` (``postgresql+psycopg://user@host:port/NAME_mlflow``, no password)."""
        return self.url(self.mlflow_db, driver=MLFLOW_DRIVER)

    @property
    def mlflow_auth_uri(self) -> str:
        """The basic-auth app's ``database_uri`` (``.../NAME_mlflow_auth``, no password)."""
        return self.url(self.mlflow_auth_db, driver=MLFLOW_DRIVER)

    @property
    def mloop_uri(self) -> str:
        """mloop's own database (``.../NAME``, no password)."""
        return self.url(self.name)

    def password_env(self) -> dict[str, str]:
        """``PGPASSWORD`` for a process that connects with the password-less URLs (empty: no password)."""
        secret = self.password.get_secret_value()
        return {"PGPASSWORD": secret} if secret else {}


def parse_database_url(url: str) -> TeamDatabases:
    """Read ``MLOOP_DATABASE_URL`` (``postgresql://user:password@host:port/NAME``). MloopError (password
    redacted) for another scheme, no host, a bad port or a missing or unusable database name."""
    shown = redact_url(url)
    where = f"MLOOP_DATABASE_URL ({shown})"
    scheme, sep, rest = url.strip().partition("://")
    if not sep or scheme.lower() not in DATABASE_SCHEMES:
        raise MloopError(
            f"MLOOP_DATABASE_URL must be a PostgreSQL URL (postgresql://), not {scheme.lower() + '://' if sep else 'this'}",
            where=where,
            fix=DATABASE_FIX,
        )
    netloc, _, path_query = rest.partition("/")
    path, _, query = path_query.partition("?")
    userinfo, _, hostport = netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    try:
        port = urlsplit(f"//{hostport}").port
        host = urlsplit(f"//{hostport}").hostname
    except ValueError:
        port, host = -1, None
    if not host or port == -1:
        raise MloopError("MLOOP_DATABASE_URL has no valid host:port", where=where, fix=DATABASE_FIX)
    name = unquote(path.strip())
    if not name:
        raise MloopError(
            "MLOOP_DATABASE_URL names no database (the path after host:port)",
            where=where,
            fix=f"end the URL with the database name, e.g. .../mloop; Prefect and MLflow then use mloop{PREFECT_SUFFIX} "
            f"and mloop{MLFLOW_SUFFIX} beside it",
        )
    if not _DB_NAME.fullmatch(name) or len(name) > _MAX_DB_NAME:
        raise MloopError(
            f"database name {name!r} in MLOOP_DATABASE_URL is not usable: letters, digits and _ only, not starting "
            f"with a digit, at most {_MAX_DB_NAME} characters (mloop adds {MLFLOW_AUTH_SUFFIX})",
            where=where,
            fix="choose a simple name such as mloop",
        )
    return TeamDatabases(
        user=user, password=SecretStr(unquote(password)), hostport=hostport, name=name, query=query
    )


# ---------------------------------------------------------------- S3


@dataclass(frozen=True)
class ArtifactLayout:
    """Where each kind of shared artifact lives under ``MLOOP_ARTIFACTS_URI`` (``s3://bucket/prefix``)."""

    bucket: str
    prefix: str
    """Without leading or trailing slashes; empty for the bucket's root."""
    endpoint_url: str | None = None
    """``MLOOP_S3_ENDPOINT_URL``; None: AWS S3 itself."""

    def key(self, part: str) -> str:
        """The object-key prefix of ``part`` (``prefix/part``), for listing with an S3 client."""
        return f"{self.prefix}/{part}" if self.prefix else part

    def uri(self, part: str) -> str:
        """``s3://bucket/prefix/part``."""
        return f"s3://{self.bucket}/{self.key(part)}"

    @property
    def dvc_remote(self) -> str:
        return self.uri("dvc")

    @property
    def mlflow_artifacts(self) -> str:
        return self.uri("mlflow")

    @property
    def bentoml_models(self) -> str:
        return self.uri("bentoml")

    @property
    def predictions(self) -> str:
        return self.uri("predictions")

    @property
    def feedback(self) -> str:
        return self.uri("feedback")


def check_endpoint_url(endpoint: str) -> str:
    """``MLOOP_S3_ENDPOINT_URL`` normalised (no trailing slash). MloopError unless http(s)://host[:port]
    with no credentials or path."""
    where = f"MLOOP_S3_ENDPOINT_URL ({redact_url(endpoint)})"
    try:
        parts = urlsplit(endpoint.strip())
        _ = parts.port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise MloopError(
            "MLOOP_S3_ENDPOINT_URL must be http(s)://host:port of the S3 endpoint",
            where=where,
            fix="e.g. MLOOP_S3_ENDPOINT_URL=http://127.0.0.1:8333 (see `mloop infra env`)",
        )
    if parts.username or parts.password:
        raise MloopError(
            "MLOOP_S3_ENDPOINT_URL must not carry credentials",
            where=where,
            fix="remove them from the URL; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead",
        )
    if parts.path.strip("/") or parts.query:
        raise MloopError(
            "MLOOP_S3_ENDPOINT_URL must not have a path (the bucket and prefix go in MLOOP_ARTIFACTS_URI)",
            where=where,
            fix="keep only http(s)://host:port; put s3://bucket/prefix in MLOOP_ARTIFACTS_URI",
        )
    return f"{parts.scheme}://{parts.netloc}"


def parse_artifacts_uri(uri: str, endpoint_url: str | None) -> ArtifactLayout:
    """Read ``MLOOP_ARTIFACTS_URI`` (``s3://bucket/prefix``) with ``MLOOP_S3_ENDPOINT_URL``.

    MloopError for another scheme, no bucket, ``..`` or empty segments in the prefix, and a bucket
    name AWS would refuse when no endpoint is set (an S3-compatible store needs its endpoint).
    """
    where = f"MLOOP_ARTIFACTS_URI ({uri})"
    scheme, sep, rest = uri.strip().partition("://")
    if not sep or scheme.lower() != "s3":
        raise MloopError(
            f"MLOOP_ARTIFACTS_URI must be an s3:// URI, not {scheme.lower() + '://' if sep else 'this'}",
            where=where,
            fix=ARTIFACTS_FIX,
        )
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise MloopError("MLOOP_ARTIFACTS_URI names no bucket", where=where, fix=ARTIFACTS_FIX)
    if "@" in bucket or ":" in bucket:
        raise MloopError(
            "MLOOP_ARTIFACTS_URI must not carry credentials or a host",
            where="MLOOP_ARTIFACTS_URI",
            fix="put the endpoint in MLOOP_S3_ENDPOINT_URL and the keys in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
        )
    prefix = prefix.strip("/")
    segments = prefix.split("/") if prefix else []
    if any(s in ("", ".", "..") for s in segments):
        raise MloopError(
            "the prefix in MLOOP_ARTIFACTS_URI has an empty, '.' or '..' segment",
            where=where,
            fix=ARTIFACTS_FIX,
        )
    endpoint = check_endpoint_url(endpoint_url) if endpoint_url else None
    if endpoint is None and not _BUCKET.fullmatch(bucket):
        raise MloopError(
            f"bucket {bucket!r} is not a valid AWS S3 bucket name, and MLOOP_S3_ENDPOINT_URL is not set (so AWS S3 "
            "would be used)",
            where=where,
            fix="set MLOOP_S3_ENDPOINT_URL to your S3-compatible store (e.g. http://127.0.0.1:8333), or use a bucket "
            "name AWS accepts (3-63 lowercase letters, digits, dots, hyphens)",
        )
    if not _LOOSE_BUCKET.fullmatch(bucket):
        raise MloopError(f"bucket name {bucket!r} is not valid", where=where, fix=ARTIFACTS_FIX)
    return ArtifactLayout(bucket=bucket, prefix=prefix, endpoint_url=endpoint)


# ---------------------------------------------------------------- both


@dataclass(frozen=True)
class TeamConfig:
    """Team mode's shared services: the PostgreSQL databases and the S3 layout."""

    databases: TeamDatabases
    artifacts: ArtifactLayout


def team_config(settings: TeamSettings) -> TeamConfig | None:
    """The team configuration of ``settings`` (None: single machine). MloopError when a team setting is
    set but another it needs is missing, or one is wrong (what, which setting, how to fix; no secret)."""
    if not is_team(settings):
        return None
    url = settings.database_url.get_secret_value() if settings.database_url is not None else ""
    if not url:
        raise MloopError(
            "team mode needs MLOOP_DATABASE_URL (MLOOP_ARTIFACTS_URI or MLOOP_S3_ENDPOINT_URL is set)",
            where="MLOOP_DATABASE_URL",
            fix=f"{DATABASE_FIX}, or unset the other team settings for single-machine mode",
        )
    if not settings.artifacts_uri:
        raise MloopError(
            "team mode needs MLOOP_ARTIFACTS_URI (MLOOP_DATABASE_URL or MLOOP_S3_ENDPOINT_URL is set)",
            where="MLOOP_ARTIFACTS_URI",
            fix=f"{ARTIFACTS_FIX}, or unset the other team settings for single-machine mode",
        )
    return TeamConfig(
        databases=parse_database_url(url),
        artifacts=parse_artifacts_uri(settings.artifacts_uri, settings.s3_endpoint_url),
    )


def require_team(settings: TeamSettings) -> TeamConfig:
    """:func:`team_config`, for code that only runs in team mode (MloopError when it is off)."""
    found = team_config(settings)
    if found is None:
        raise NotReadyError(
            "team mode is off",
            where="MLOOP_DATABASE_URL / MLOOP_ARTIFACTS_URI",
            fix=f"{DATABASE_FIX}; {ARTIFACTS_FIX}",
        )
    return found

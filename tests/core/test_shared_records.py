"""Shared records (:mod:`mloop.core.shared`): the pure parts, the file implementation (today's files), and
the PostgreSQL implementation against one real team PostgreSQL (``running_infra``, one per module):
advisory locks across processes and a killed holder, audit order, the retrain ledger under 8 racing
processes, the dataset index, and two hosts racing a champion move through the real registry code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from mloop.core.errors import MloopError
from mloop.core.lineage import DatasetVersion
from mloop.core.paths import StatePaths
from mloop.core.processes import poll
from mloop.core.settings import Settings
from mloop.core.shared import (
    TABLES,
    FileRecords,
    PostgresRecords,
    claim_lock_name,
    create_table_sql,
    key_of,
    lock_key,
    lock_timeout_setting,
    parse_rows,
    row_json,
    schema_objects,
    shared_records,
)
from mloop.core.team import parse_database_url
from models.audit import AuditRecord, append_audit, audit_path, read_audit
from monitoring.policy import RetrainLedger, RetrainRecord, ledger_path

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def audit(model: str, i: int, **extra: Any) -> AuditRecord:
    return AuditRecord(
        model_name=model,
        action="promote",
        from_version=str(i) if i else None,
        to_version=str(i + 1),
        reason=f"r{i}",
        actor="t",
        when=T0 + timedelta(seconds=i),
        gate_metrics={"gain": 0.1 * i},
        **extra,
    )


def version(name: str, i: int) -> DatasetVersion:
    return DatasetVersion(
        name=name,
        md5=f"{i:032x}",
        rows=10 + i,
        columns=["a", "target"],
        created_at=T0,
        path=f"data/{name}/{name}.parquet",
        size=100 + i,
        source=f"/tmp/{name}-{i}.csv",
    )


# ---------------------------------------------------------------- pure parts


def test_lock_key_is_a_stable_signed_int64() -> None:
    keys = {
        name: lock_key(name)
        for name in ("registry-loans", "registry-loans2", "dataset-loans", "retrain~loans")
    }
    assert all(-(2**63) <= k < 2**63 for k in keys.values())
    assert len(set(keys.values())) == len(keys)
    assert (
        lock_key("registry-loans") == keys["registry-loans"]
    )  # deterministic (no per-process salt)
    assert (
        lock_key("registry-loans") == -5520207795421952530
    )  # pinned: every host and version agrees
    assert claim_lock_name("retrain", "loans") == "retrain-claim~loans" != "retrain~loans"


def test_rows_round_trip_and_carry_their_key() -> None:
    rows = [audit("m", i) for i in range(3)]
    texts = [row_json(r) for r in rows]
    assert parse_rows(texts, AuditRecord.model_validate_json) == rows
    assert key_of("audit", texts[0]) == "m" and key_of("datasets", row_json(version("d", 1))) == "d"
    assert key_of("retrain", '{"started_at": "x"}') is None


def test_table_ddl_only_for_known_tables() -> None:
    ddl = create_table_sql(TABLES["audit"]).as_string()
    assert 'CREATE TABLE IF NOT EXISTS "mloop_audit"' in ddl and '"mloop_audit_key_id"' in ddl
    assert set(schema_objects()) == {*TABLES.values(), *(f"{t}_key_id" for t in TABLES.values())}
    assert (lock_timeout_setting(None), lock_timeout_setting(0.5), lock_timeout_setting(0)) == (
        "0",
        "500ms",
        "1ms",
    )
    with pytest.raises(ValueError):
        create_table_sql("users; DROP TABLE x")


def test_shared_records_picks_files_unless_team_mode(tmp_path: Path) -> None:
    single = shared_records(
        Settings(
            home=tmp_path,
            _env_file=None,  # pyright: ignore[reportCallIssue]  # why: pydantic-settings takes _env_file at init, its typed signature omits it
        )
    )
    assert single == FileRecords.from_state(StatePaths(root=tmp_path.resolve()))
    team = shared_records(
        Settings(
            home=tmp_path,
            database_url=SecretStr("postgresql://u:s3cret@127.0.0.1:5/teamdb"),
            artifacts_uri="s3://b/p",
            s3_endpoint_url="http://127.0.0.1:6",
            _env_file=None,  # pyright: ignore[reportCallIssue]  # why: pydantic-settings takes _env_file at init, its typed signature omits it
        )
    )
    assert isinstance(team, PostgresRecords)  # nothing connects until used
    assert (
        team.dsn == "postgresql://u@127.0.0.1:5/teamdb"
    )  # the password travels apart, never in the URL


# ---------------------------------------------------------------- files: today's results


def test_file_records_are_todays_files(tmp_path: Path) -> None:
    state = StatePaths(root=tmp_path)
    files = FileRecords.from_state(state)
    files.append("audit", "m", audit("m", 0))
    append_audit(state.audit, audit("m", 1))
    assert read_audit(state.audit, "m") == [audit("m", 0), audit("m", 1)]
    assert files.read("audit", "m", AuditRecord.model_validate_json) == read_audit(state.audit, "m")
    assert files.path("audit", "m") == audit_path(state.audit, "m") and files.keys("audit") == ["m"]
    assert files.lock_path("registry-m") == (tmp_path / "locks" / "registry-m.lock").resolve()
    assert files.path("datasets", "d") == (tmp_path / "datasets" / "d" / "versions.jsonl").resolve()
    assert files.path("retrain", "m") == ledger_path(tmp_path)
    ledger = RetrainLedger(ledger_path(tmp_path))
    first = ledger.claim(
        RetrainRecord(model_name="a", started_at=T0), cooldown_minutes=30, daily_budget=5
    )
    second = ledger.claim(
        RetrainRecord(model_name="a", started_at=T0), cooldown_minutes=30, daily_budget=5
    )
    other = ledger.claim(
        RetrainRecord(model_name="b", started_at=T0), cooldown_minutes=30, daily_budget=5
    )
    assert (first.allowed, second.allowed, other.allowed) == (True, False, True)
    assert [r.model_name for r in ledger.read()] == ["a", "b"] and files.keys("retrain") == [
        "a",
        "b",
    ]
    assert [
        r.model_name for r in files.read("retrain", "b", RetrainRecord.model_validate_json)
    ] == ["b"]
    assert ledger_path(tmp_path).read_text().count("\n") == 2
    with files.try_lock("retrain~a") as held, files.try_lock("retrain~a") as again:
        assert (held, again) == (True, False)


# ---------------------------------------------------------------- PostgreSQL: one real server for the module


@pytest.fixture(scope="module")
def team_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    pytest.importorskip("psycopg", reason="team mode tests need psycopg")
    from tests.infra_fixture import running_infra

    with running_infra(tmp_path_factory.mktemp("infra") / "home") as found:
        yield found.env


@pytest.fixture(scope="module")
def pg(team_env: dict[str, str]) -> PostgresRecords:
    databases = parse_database_url(team_env["MLOOP_DATABASE_URL"])
    return PostgresRecords(databases.mloop_uri, databases.password.get_secret_value())


def child_env(team_env: dict[str, str], **extra: str) -> dict[str, str]:
    """A child's environment: no MLOOP_/AWS_ of the test runner, the team's settings, PGPASSWORD (never argv)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOOP_", "AWS_", "PG"))}
    password = parse_database_url(team_env["MLOOP_DATABASE_URL"]).password_env()
    return {**env, **team_env, **password, **extra}


HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from mloop.core.shared import PostgresRecords
    records = PostgresRecords(sys.argv[1], os.environ["PGPASSWORD"])
    with records.lock(sys.argv[2]):
        print("held", flush=True)
        time.sleep(600)
    """
)


@pytest.mark.integration
def test_advisory_lock_excludes_others_and_dies_with_its_holder(
    pg: PostgresRecords, team_env: dict[str, str]
) -> None:
    with pg.lock("t-inproc"), pg.try_lock("t-inproc") as second:
        assert second is False  # another connection of the same process is excluded too
    with pg.try_lock("t-inproc") as again:
        assert again is True  # released at the end of the block
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, pg.dsn, "t-killed"],
        env=child_env(team_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pg.try_lock("t-killed") as held:
            assert held is False
        with (
            pytest.raises(MloopError, match="cannot take lock 't-killed'") as caught,
            pg.lock("t-killed", timeout=0.5),
        ):
            pass
        assert "PGPASSWORD" not in str(caught.value) and team_env["MLOOP_DATABASE_URL"] not in str(
            caught.value
        )
        holder.send_signal(
            signal.SIGKILL
        )  # no cleanup runs: PostgreSQL frees the lock with the connection
        holder.wait(timeout=30)

        def free() -> bool:
            with pg.try_lock("t-killed") as got:
                return got

        assert poll(free, timeout=30)
    finally:
        holder.kill()
        holder.communicate(timeout=30)


@pytest.mark.integration
def test_audit_rows_read_back_equal_and_in_order(pg: PostgresRecords, tmp_path: Path) -> None:
    rows = [audit("audited", i) for i in range(5)]
    for row in rows[:3]:
        pg.append("audit", "audited", row)
    for row in rows[3:]:
        append_audit(tmp_path / "audit", row, records=pg)
    pg.append("audit", "other-model", audit("other-model", 9))
    assert read_audit(tmp_path / "audit", "audited", records=pg) == rows
    assert pg.read("audit", "audited", AuditRecord.model_validate_json) == rows
    assert {"audited", "other-model"} <= set(pg.keys("audit"))
    assert not (tmp_path / "audit").exists()  # nothing written to files in team mode


@pytest.mark.integration
def test_reads_and_writes_share_one_connection_replaced_when_the_server_ends_it(
    pg: PostgresRecords,
) -> None:
    from contextlib import closing

    def backend() -> int:
        with pg._session() as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            return int(cur.fetchone()[0])

    pg.append("audit", "shared-conn", audit("shared-conn", 0))
    first = backend()
    pg.read("audit", "shared-conn", AuditRecord.model_validate_json)
    pg.keys("audit")
    assert backend() == first  # no new connection per call
    with (
        closing(pg.connect()) as other,
        other.cursor() as cur,
    ):  # the server ends it (as a restart would)
        cur.execute("SELECT pg_terminate_backend(%s)", (first,))
    # at once, with no wait: the backend may still be closing its socket; the read must not fail either way
    assert pg.read("audit", "shared-conn", AuditRecord.model_validate_json) == [
        audit("shared-conn", 0)
    ]
    assert backend() != first


@pytest.mark.integration
def test_a_read_on_a_connection_broken_unseen_is_asked_again(
    pg: PostgresRecords, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the idle check can lose: the session ends just after the check. The read is repeated on
    a new connection; an append is not (it may have committed) and says what failed."""
    from contextlib import closing

    import mloop.core.shared as shared

    def end_session() -> int:
        with pg._session() as conn, conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            pid = int(cur.fetchone()[0])
        with closing(pg.connect()) as other, other.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))

            def gone() -> bool:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
                return cur.fetchone()[0] == 0

            assert poll(gone, timeout=10)
        return pid

    pg.append("audit", "unseen", audit("unseen", 0))
    monkeypatch.setattr(
        shared, "_readable_while_idle", lambda conn: False
    )  # the check sees nothing
    end_session()
    assert pg.read("audit", "unseen", AuditRecord.model_validate_json) == [audit("unseen", 0)]
    end_session()
    assert "unseen" in pg.keys("audit")
    end_session()
    with pytest.raises(MloopError, match="cannot append to the audit log"):
        pg.append("audit", "unseen", audit("unseen", 1))
    pg.append(
        "audit", "unseen", audit("unseen", 1)
    )  # the broken connection was dropped: the next call works
    assert pg.read("audit", "unseen", AuditRecord.model_validate_json) == [
        audit("unseen", 0),
        audit("unseen", 1),
    ]


CLAIMER = textwrap.dedent(
    """
    import os, sys, time
    from datetime import datetime
    from pathlib import Path
    from mloop.core.shared import PostgresRecords
    from monitoring.policy import RetrainLedger, RetrainRecord
    dsn, go, when, out = sys.argv[1], Path(sys.argv[2]), datetime.fromisoformat(sys.argv[3]), []
    ledger = RetrainLedger(Path("/nonexistent/ledger.jsonl"), PostgresRecords(dsn, os.environ["PGPASSWORD"]))
    ledger.records.connect().close()  # imports done, schema ready
    go.with_name(f"ready-{os.getpid()}").touch()
    while not go.exists():
        time.sleep(0.01)
    for model, cooldown, budget in (("budgeted", 0, 3), ("cooled", 30, 6)):
        record = RetrainRecord(model_name=model, started_at=when, flow_run_id=str(os.getpid()))
        out.append(ledger.claim(record, cooldown_minutes=cooldown, daily_budget=budget).allowed)
    print(" ".join(map(str, out)))
    """
)


@pytest.mark.integration
def test_ledger_claims_from_8_processes_spend_exactly_the_budget(
    pg: PostgresRecords, team_env: dict[str, str], tmp_path: Path
) -> None:
    go, when = tmp_path / "go", datetime.now(UTC)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, pg.dsn, str(go), when.isoformat()],
            env=child_env(team_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for _ in range(8)
    ]
    try:
        assert poll(lambda: len(list(tmp_path.glob("ready-*"))) == 8, timeout=120)
        go.touch()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0] * 8, outputs
    results = [o[0].split() for o in outputs]
    assert [r[0] for r in results].count("True") == 3  # budget 3 of the day, no cooldown
    assert [r[1] for r in results].count("True") == 1  # cooldown 30 min: the first claim only
    ledger = RetrainLedger(tmp_path / "unused.jsonl", pg)
    rows = ledger.read()
    assert (
        sum(r.model_name == "budgeted" for r in rows) == 3
        and sum(r.model_name == "cooled" for r in rows) == 1
    )
    assert not (tmp_path / "unused.jsonl").exists()


@pytest.mark.integration
def test_dataset_index_round_trip_through_the_datasets_module(
    pg: PostgresRecords, team_env: dict[str, str], tmp_path: Path
) -> None:
    from mloop.core import datasets

    settings = Settings(
        home=tmp_path / "home",
        project_dir=tmp_path,
        _env_file=None,  # pyright: ignore[reportCallIssue]  # why: pydantic-settings takes _env_file at init, its typed signature omits it
        database_url=team_env["MLOOP_DATABASE_URL"],
        artifacts_uri=team_env["MLOOP_ARTIFACTS_URI"],
        s3_endpoint_url=team_env["MLOOP_S3_ENDPOINT_URL"],
    )
    assert isinstance(shared_records(settings), PostgresRecords)
    assert datasets.list_versions(settings, "ds-a") == []
    for i in range(3):
        datasets._append_index(settings, version("ds-a", i))
    pg.append("datasets", "ds-b", version("ds-b", 7))
    assert datasets.list_versions(settings, "ds-a") == [
        version("ds-a", i) for i in (2, 1, 0)
    ]  # newest first
    assert datasets.get_version(settings, "ds-a", f"{1:032x}") == version("ds-a", 1)
    assert {"ds-a", "ds-b"} <= set(datasets.list_datasets(settings))
    assert not (tmp_path / "home" / "datasets" / "ds-a").exists()
    with shared_records(settings).lock("dataset-ds-a"), pg.try_lock("dataset-ds-a") as held:
        assert held is False  # the ingest lock is the team's, not a file


RACER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from mloop.core.settings import Settings
    from mloop.core.shared import shared_records
    from models.registry import mlflow_client, promote
    uri, version, go, name = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    settings = Settings()  # this host's MLOOP_HOME, the team's database from the environment
    records = shared_records(settings)
    mlflow_client(uri).get_registered_model(name)  # imports done, store open
    records.connect().close()
    go.with_name(f"ready-{version}").touch()
    while not go.exists():
        time.sleep(0.01)
    record = promote(uri, settings.state, name, version, reason=f"race {version}", actor=f"host-{version}",
                     records=records)
    print(record.outcome)
    """
)


@pytest.mark.integration
def test_two_hosts_racing_a_promotion_leave_one_champion_and_an_ordered_audit(
    pg: PostgresRecords, team_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes with their own MLOOP_HOMEs, MLflow's registry on the team's PostgreSQL (no SQLite),
    promote different versions of one model at the same moment through :func:`models.registry.promote`."""
    from models import registry as R

    databases = parse_database_url(team_env["MLOOP_DATABASE_URL"])
    for key, value in databases.password_env().items():
        monkeypatch.setenv(key, value)
    uri, name = databases.mlflow_store_uri, "raced"
    v1, v2 = (
        R.register_version(uri, name, source=str(tmp_path / f"m{i}"), run_id="", tags={}).version
        for i in range(2)
    )
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, uri, v, str(go), name],
            env=child_env(team_env, MLOOP_HOME=str(tmp_path / f"host-{v}")),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for v in (v1, v2)
    ]
    try:
        assert poll(lambda: all((tmp_path / f"ready-{v}").exists() for v in (v1, v2)), timeout=120)
        go.touch()  # both are ready: release them at the same moment
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert [o[0].strip() for o in outputs] == ["applied", "applied"]
    assert not any("database is locked" in out + err for out, err in outputs)
    log = read_audit(tmp_path / "audit", name, records=pg)
    assert len(log) == 2 and {r.to_version for r in log} == {v1, v2}
    assert (
        log[0].from_version is None and log[1].from_version == log[0].to_version
    )  # serialized, in order
    aliases = R.mlflow_client(uri).get_registered_model(name).aliases
    assert {k: str(v) for k, v in aliases.items()} == {
        "champion": log[1].to_version,
        "previous-champion": log[0].to_version,
    }
    for v in (v1, v2):  # the lock and the log were the team's: no host wrote a lock or audit file
        assert not (tmp_path / f"host-{v}" / "audit").exists()
        assert not list((tmp_path / f"host-{v}").glob("locks/registry-*"))

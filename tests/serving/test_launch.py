"""How the service process is started: bind address, environment, no secret in argv (no server)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mloop.core.service_urls import http_url as connect_url
from mloop.core.settings import Settings
from serving.control.process_spec import serve_argv, serve_env


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    s = Settings(home=tmp_path / "home", project_dir=tmp_path, **kw)
    s.state.ensure()
    return s


def test_the_generated_token_stays_out_of_argv_and_env(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    token = s.bearer_token()
    assert token
    env = serve_env(s, "loans:v1")
    argv = serve_argv(s.serving_host, 3000)
    assert "MLOOP_API_TOKEN" not in env
    assert not any(token in v for v in env.values()) and not any(token in a for a in argv)
    secret = s.credentials()
    assert secret is not None
    for key in (
        "PREFECT_API_AUTH_STRING",
        "MLFLOW_TRACKING_PASSWORD",
    ):  # the service never talks to them
        assert env.get(key) == ""
    assert (env["MLOOP_AUTH"], env["MLOOP_PREDICT_REQUIRES_TOKEN"]) == ("true", "true")


def test_a_token_the_user_set_is_passed_in_env_only(tmp_path: Path) -> None:
    s = _settings(
        tmp_path,
        api_token="users-token",
        predict_requires_token=False,
        allowed_hosts=["ml.example"],
    )
    env = serve_env(s, "loans:v1")
    assert env["MLOOP_API_TOKEN"] == "users-token"
    assert (
        env["MLOOP_PREDICT_REQUIRES_TOKEN"] == "false"
        and env["MLOOP_ALLOWED_HOSTS"] == '["ml.example"]'
    )


def test_the_service_binds_to_serve_host_and_is_probed_on_loopback(tmp_path: Path) -> None:
    s = _settings(tmp_path, serve_host="0.0.0.0")
    argv = serve_argv(s.serving_host, 3000)
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert serve_env(s, "loans:v1")["MLOOP_SERVE_HOST"] == "0.0.0.0"
    assert _settings(tmp_path).serving_host == "127.0.0.1"
    assert connect_url("0.0.0.0", 3000) == "http://127.0.0.1:3000"
    assert connect_url("::", 3000) == "http://[::1]:3000"
    assert connect_url("127.0.0.1", 3000) == "http://127.0.0.1:3000"


def test_many_tags_go_to_the_service_as_one_list(tmp_path: Path) -> None:
    from serving.api.config import ServingSettings

    s = _settings(tmp_path)
    env = serve_env(s, ["loans:v3", "rates:v1", "loans:v3"])
    assert (env["MLOOP_SERVE_MODELS"], env["MLOOP_SERVE_MODEL"]) == (
        "loans:v3,rates:v1",
        "loans:v3",
    )
    assert serve_env(s, "loans:v1")["MLOOP_SERVE_MODELS"] == "loans:v1"  # one tag: a one-tag list
    assert ServingSettings(serve_models="loans:v3,rates:v1", serve_model="loans:v3").tags() == [
        "loans:v3",
        "rates:v1",
    ]
    assert ServingSettings(serve_model="loans:v1").tags() == ["loans:v1"]


def test_two_tags_of_one_model_are_refused(tmp_path: Path) -> None:
    import pytest

    from serving.api.config import ServingSettings

    with pytest.raises(ValueError, match="same model"):
        ServingSettings(serve_models="loans:v1,loans:v2").tags()
    with pytest.raises(ValueError, match="at least one"):
        serve_env(_settings(tmp_path), [])

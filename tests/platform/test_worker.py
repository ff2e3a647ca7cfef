"""``mloop worker`` (mloop.platform.worker): its checks, one negative test per rule, and its environment.

A worker that joins on the session Prefect server is in tests/platform/test_team_services.py (a second
MLOOP_HOME standing in for a second host).
"""

from __future__ import annotations

import http.server
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mloop.core.errors import MloopError
from mloop.core.processes import SERVICE_ENV, free_port
from mloop.core.secrets import ensure_secrets
from mloop.core.settings import Settings
from mloop.platform.client import PrefectApi
from mloop.platform.worker import (
    JOINED_WORKER,
    check_can_join,
    joined_worker_name,
    worker_environment,
)

TEAM = {
    "artifacts_uri": "s3://bucket/mloop",
    "s3_endpoint_url": "http://127.0.0.1:1",
    "database_url": "postgresql://mloop:pw@127.0.0.1:1/mloop",
}


def _team(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(home=tmp_path / "home", project_dir=tmp_path, **{**TEAM, **kw})


def test_the_name_says_the_host_and_is_new_each_start() -> None:
    assert (
        joined_worker_name("gpu-box.example.org", "a1b2c3")
        == "mloop-worker-gpu-box.example.org-a1b2c3"
    )
    assert joined_worker_name("we ird/host", "a1") == "mloop-worker-we-ird-host-a1"
    assert joined_worker_name("", "a1") == "mloop-worker-host-a1"


def test_a_home_without_the_platform_credentials_cannot_join(tmp_path: Path) -> None:
    settings = _team(tmp_path)
    with pytest.raises(MloopError, match="no platform credentials") as err:
        check_can_join(settings, PrefectApi(f"http://127.0.0.1:{free_port()}/api", deadline=0))
    assert (err.value.where or "").endswith("secrets/platform.json") and "copy" in (
        err.value.fix or ""
    )


def test_a_single_machine_home_without_its_platform_cannot_join(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", project_dir=tmp_path, auth=False)
    with pytest.raises(MloopError, match="single-machine mode") as err:
        check_can_join(settings, PrefectApi(f"http://127.0.0.1:{free_port()}/api", deadline=0))
    assert "mloop up" in (err.value.fix or "") and "MLOOP_DATABASE_URL" in (err.value.fix or "")


def test_no_server_answering_is_an_error_naming_the_url(tmp_path: Path) -> None:
    api = PrefectApi(f"http://127.0.0.1:{free_port()}/api", deadline=0)
    with pytest.raises(MloopError, match="no Prefect server answers") as err:
        check_can_join(_team(tmp_path, auth=False), api)
    assert err.value.where == api.api and "MLOOP_HOST" in (err.value.fix or "")


@pytest.fixture
def refusing_server() -> Iterator[str]:
    """An HTTP server whose /api/health answers and every other path says 401 (wrong credentials)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path.endswith("/health") else 401)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_refused_credentials_are_an_error_saying_which_file_to_copy(
    tmp_path: Path, refusing_server: str
) -> None:
    settings = _team(tmp_path)
    ensure_secrets(settings.state.root)  # a secret of its own, not the platform's
    with pytest.raises(MloopError, match=r"refused this home's credentials \(401\)") as err:
        check_can_join(settings, PrefectApi(refusing_server, deadline=0))
    assert "platform.json" in (err.value.fix or "")


@pytest.mark.integration
def test_a_pool_that_does_not_exist_yet_is_an_error(tmp_path: Path, prefect_server: Any) -> None:
    del prefect_server
    api = PrefectApi(f"http://127.0.0.1:{os.environ['MLOOP_TEST_PREFECT_PORT']}/api", deadline=5)
    with pytest.raises(MloopError, match="'nobody-s-pool' does not exist yet") as err:
        check_can_join(_team(tmp_path, auth=False), api, pool="nobody-s-pool")
    assert "mloop up" in (err.value.fix or "")


def test_the_environment_is_this_home_s_with_the_worker_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _team(tmp_path)
    ensure_secrets(settings.state.root)
    for name, value in {"PREFECT_API_KEY": "a cloud key", "PATH": "/usr/bin", "KEEP": "1"}.items():
        monkeypatch.setenv(name, value)
    env = worker_environment(settings)
    assert env[SERVICE_ENV] == JOINED_WORKER and env["KEEP"] == "1"
    assert (
        env["MLOOP_HOME"] == str(settings.state.root)
        and env["PREFECT_API_URL"] == settings.prefect_api_url
    )
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert "PREFECT_API_KEY" not in env  # it would be sent instead of the platform's auth string
    assert env["PREFECT_API_AUTH_STRING"] and env["PREFECT_WORKER_QUERY_SECONDS"] == "1"

"""Shared test fixtures.

One Prefect server per test session (starting one costs 10-20 s), on a free loopback port with
its own temporary PREFECT_HOME. The environment is set in ``pytest_configure`` because Prefect
reads its settings when first imported, which happens while test modules are collected. The
session server starts through mloop's own starter (``mloop.platform.prefect_server``), so it checks
the Host header like the platform's server, but it runs WITHOUT basic auth: it is a fixture for
in-process flows, not a platform (tests/platform/test_security.py checks a real `mloop up`).
Each test gets its own MLOOP_HOME and its own project checkout (a temporary git + DVC repo),
so nothing touches the developer's checkout or home directory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mloop.core.processes import (
    ServiceProcess,
    free_port,
    start_prefect_server,
    stop_pid,
)
from mloop.core.settings import Settings, prefect_api_url
from tests.helpers import make_project

_SESSION_DIR: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _SESSION_DIR
    _SESSION_DIR = Path(tempfile.mkdtemp(prefix="mloop-test-session-"))
    port = free_port()
    session_home = _SESSION_DIR / "home"
    session_settings = Settings(home=session_home, project_dir=_SESSION_DIR)
    session_settings.state.ensure()  # PREFECT_HOME must exist before the server starts
    env = session_settings.service_env()
    env["PREFECT_API_URL"] = prefect_api_url("127.0.0.1", port)
    env["PREFECT_LOGGING_LEVEL"] = "WARNING"
    env["PREFECT_LOGGING_TO_API_ENABLED"] = "false"
    env["MLOOP_TEST_PREFECT_PORT"] = str(port)
    # Tests never inherit a developer's MLOOP_* settings nor Prefect credentials (the session
    # server has no auth; a PREFECT_API_KEY would even be sent instead of an auth string).
    credentials = ("PREFECT_API_KEY", "PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING")
    for key in [k for k in os.environ if k.startswith("MLOOP_") or k in credentials]:
        del os.environ[key]
    os.environ.update(env)
    # In-process flow tests train and promote often: packaging each promoted version costs a BentoML
    # child process. The platform tests (tests/platform/helpers.platform_settings) turn it back on.
    os.environ["MLOOP_PACKAGE_ON_PROMOTE"] = "false"
    os.environ["HOME"] = str(_SESSION_DIR / "userhome")  # nothing may write to the real home
    (_SESSION_DIR / "userhome").mkdir(exist_ok=True)
    os.environ.setdefault("GIT_AUTHOR_NAME", "mloop-test")
    os.environ.setdefault("GIT_AUTHOR_EMAIL", "mloop-test@example.invalid")
    os.environ.setdefault("GIT_COMMITTER_NAME", "mloop-test")
    os.environ.setdefault("GIT_COMMITTER_EMAIL", "mloop-test@example.invalid")


PLATFORM_GROUP = "platform"
"""The xdist group of every test that uses the ``platform`` fixture (a whole ``mloop up``): one worker runs them."""

OWN_GROUP_MODULES = frozenset({"test_zombie.py"})
"""Platform modules that mostly wait (the zombie automation's 90 s): their own group, so the other worker runs
them beside the platform group."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups for ``make test``'s ``-n 2 --dist loadgroup`` (pytest-xdist): the tests of one module stay on
    one worker, in file order (module fixtures start one platform or one home per module, and some modules'
    tests build on each other); the modules that start a platform run one after another on one worker, so at
    most two platforms run at once (that group and one other module) and their timed bounds keep their
    margin on a 2-core machine. Without ``-n`` the marks change nothing."""
    for item in items:
        module = item.nodeid.split("::")[0]
        uses_platform = "platform" in getattr(item, "fixturenames", ())
        group = PLATFORM_GROUP if uses_platform and Path(module).name not in OWN_GROUP_MODULES else module
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[ServiceProcess]:
    """A real Prefect server on loopback, shared by the whole session; stopped by pid at the end."""
    assert _SESSION_DIR is not None
    port = int(os.environ["MLOOP_TEST_PREFECT_PORT"])
    proc = start_prefect_server(_SESSION_DIR / "run", dict(os.environ), "127.0.0.1", port)
    try:
        yield proc
    finally:
        stop_pid(proc.pid)




@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A temporary project checkout (git repo with one commit)."""
    return make_project(tmp_path / "project")


@pytest.fixture
def settings(tmp_path: Path, project_dir: Path) -> Settings:
    """Settings with a temporary MLOOP_HOME and project dir; env applied for child libraries."""
    s = Settings(home=tmp_path / "mloop-home", project_dir=project_dir)
    s.state.ensure()
    return s

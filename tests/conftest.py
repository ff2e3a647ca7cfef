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
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mloop.core.processes import (
    ServiceProcess,
    free_port,
    start_prefect_server,
    stop_pid,
)
from mloop.core.service_urls import prefect_api_url
from mloop.core.settings import Settings
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


def pytest_unconfigure(config: pytest.Config) -> None:
    """The session's temporary directory goes with the session (its servers are stopped by then)."""
    if _SESSION_DIR is not None:
        shutil.rmtree(_SESSION_DIR, ignore_errors=True)


PLATFORM_GROUP = "platform"
"""The scheduling unit of every module that starts a whole ``mloop up`` (its tests use the ``platform`` fixture)."""

OWN_UNIT_MODULES = frozenset({"test_zombie.py"})
"""Platform modules that mostly wait (the zombie automation's 90 s): a unit of their own, so the other worker
runs them beside the platform unit."""

_USES_PLATFORM = re.compile(r"def test_\w+\(\s*platform\b")


def platform_modules(tests_dir: Path) -> frozenset[str]:
    """Node-id paths (``tests/platform/test_loop.py``) of the modules whose tests take the ``platform`` fixture."""
    root = tests_dir.parent
    return frozenset(
        str(f.relative_to(root))
        for f in sorted(tests_dir.rglob("test_*.py"))
        if f.name not in OWN_UNIT_MODULES and _USES_PLATFORM.search(f.read_text())
    )


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``make test`` runs ``-n 2 --dist loadgroup``: each module is one unit of work on one worker, in file order
    (module fixtures start one platform or one home per module; some modules' tests build on each other), and
    every platform module is in one unit, so they run one after another: at most two platforms run at once
    (that unit and one other module), keeping the margin of their timed bounds on a 2-core machine.

    A scheduler of our own, because xdist 3.8's ``xdist_group`` marks no longer group anything under pytest 9
    (it renames ``item._nodeid``, which pytest 9 no longer reads)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    in_platform_unit = platform_modules(Path(__file__).resolve().parent)

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return PLATFORM_GROUP if module in in_platform_unit else module

    return ModuleScheduling(config, log)


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

"""``mloop up --workers N`` / MLOOP_WORKERS: the worker service list, stop order, the wanted count the watchdog
follows, the shrink, the setting's validation. One negative test per rule.

The real check (a platform with 2 workers: both in the pool, a killed one restarted by the watchdog, a smaller
``up`` stopping the extra one, ``down`` leaving no worker) runs on tests/platform/test_watchdog.py's platform,
started with ``MLOOP_WORKERS=2``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mloop.cli.common import settings_error
from mloop.core.errors import MloopError
from mloop.core.processes import SERVICE_ENV, pid_alive, stop_pid
from mloop.core.settings import MAX_WORKERS, Settings
from mloop.platform.deploy import yaml_fingerprint
from mloop.platform.services import (
    WORKER_SERVICE,
    extra_workers,
    is_worker_service,
    service_order,
    service_specs,
    stop_extra_workers,
    stop_order,
    wanted_workers,
    worker_index,
    worker_service,
    worker_services,
    write_wanted_workers,
)
from mloop.platform.watchdog import Watchdog, waiting_for, watched_services


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(home=tmp_path / "home", project_dir=tmp_path, auth=False, **kw)


def test_the_first_worker_keeps_its_name_and_the_others_are_numbered() -> None:
    assert worker_services(1) == ("prefect-worker",)
    assert worker_services(3) == ("prefect-worker", "prefect-worker-2", "prefect-worker-3")
    assert [worker_index(n) for n in worker_services(3)] == [1, 2, 3]
    with pytest.raises(ValueError, match="must be >= 1"):
        worker_service(0)


@pytest.mark.parametrize(
    "name",
    [
        "prefect-server",
        "prefect-worker-1",
        "prefect-worker-02",
        "prefect-worker-x",
        "prefect-worker-",
        "serve",
        "worker",
    ],
)
def test_other_names_are_not_platform_workers(name: str) -> None:
    assert worker_index(name) is None


def test_joined_and_numbered_workers_are_workers_the_rest_not() -> None:
    assert (
        is_worker_service("prefect-worker-5")
        and is_worker_service("worker")
        and is_worker_service(WORKER_SERVICE)
    )
    assert not is_worker_service("prefect-server") and not is_worker_service("serve")


def test_the_service_order_has_every_worker_where_the_one_was() -> None:
    assert service_order() == (
        "prefect-server",
        "mlflow",
        "webhook",
        "prefect-worker",
        "serve",
        "watchdog",
    )
    assert service_order(2) == (
        "prefect-server",
        "mlflow",
        "webhook",
        "prefect-worker",
        "prefect-worker-2",
        "serve",
        "watchdog",
    )


def test_up_builds_one_spec_per_worker_each_with_its_own_name(tmp_path: Path) -> None:
    specs = {s.name: s for s in service_specs(_settings(tmp_path, workers=3))}
    workers = [specs[n] for n in worker_services(3)]
    assert len({s.argv[s.argv.index("--name") + 1] for s in workers}) == 3  # one Prefect name each
    assert all(s.argv[s.argv.index("--work-queue") + 1] == "default" for s in workers)
    assert "prefect-worker-4" not in specs
    assert list(specs) == [n for n in service_order(3) if n in specs]  # start order


def test_down_stops_the_watchdog_then_every_worker_then_the_rest() -> None:
    order = stop_order(
        [
            "serve",
            "prefect-worker-2",
            "prefect-server",
            "watchdog",
            "mlflow",
            "prefect-worker",
            "webhook",
            "prefect-worker-3",
        ]
    )
    assert order[0] == "watchdog"
    assert set(order[1:4]) == {"prefect-worker", "prefect-worker-2", "prefect-worker-3"}
    assert order[-1] == "prefect-server"


def test_the_wanted_count_falls_back_to_the_setting(tmp_path: Path) -> None:
    assert wanted_workers(tmp_path, 2) == 2  # no file yet
    write_wanted_workers(tmp_path, 3)
    assert wanted_workers(tmp_path, 1) == 3
    for junk in ("", "two", "0", "-1"):
        (tmp_path / "prefect-workers.wanted").write_text(junk)
        assert wanted_workers(tmp_path, 1) == 1, junk


def test_extra_workers_are_those_beyond_the_count_highest_first() -> None:
    names = [
        "prefect-worker",
        "prefect-worker-2",
        "prefect-worker-3",
        "prefect-worker-10",
        "serve",
        "worker",
    ]
    assert extra_workers(names, 2) == ["prefect-worker-10", "prefect-worker-3"]
    assert extra_workers(names, 10) == []


def test_a_worker_beyond_the_wanted_count_is_refused_at_start(tmp_path: Path) -> None:
    """The watchdog may have read the old count: the start itself (under the service's lock) re-checks it."""
    settings = _settings(tmp_path, workers=2)
    run = settings.state.run
    spec = {s.name: s for s in service_specs(settings)}["prefect-worker-2"]
    assert spec.prepare is not None
    write_wanted_workers(run, 2)
    spec.prepare()  # wanted: writes its name
    assert (run / "prefect-worker-2.name").read_text().startswith("mloop-worker-")
    write_wanted_workers(run, 1)
    with pytest.raises(MloopError, match="prefect-worker-2 is not wanted") as err:
        spec.prepare()
    assert "--workers 2" in (err.value.fix or "")


def test_the_watchdog_supervises_the_wanted_workers_and_they_wait_for_their_server(
    tmp_path: Path,
) -> None:
    assert watched_services(2) == (
        "prefect-server",
        "mlflow",
        "webhook",
        "prefect-worker",
        "prefect-worker-2",
        "serve",
    )
    assert waiting_for("prefect-worker-2", {"prefect-server"})
    assert not waiting_for("prefect-worker-2", {"mlflow"})
    settings = _settings(tmp_path, workers=3)
    dog = Watchdog(settings, jobs=[])
    write_wanted_workers(settings.state.run, 2)
    assert dog.spec("prefect-worker-2") is not None
    assert dog.spec("prefect-worker-3") is None  # the last `up` wants 2: not restarted
    assert dog.observe("prefect-worker-2").required  # no pid file yet it must run


def test_a_cycle_restarts_only_the_wanted_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)
    write_wanted_workers(settings.state.run, 2)
    dog = Watchdog(settings, jobs=[])
    restarted: list[str] = []
    monkeypatch.setattr(dog, "restart", lambda name, reason: restarted.append(name) or True)
    dog.cycle()  # nothing runs: every required service and both wanted workers are restarted, serve is not
    assert restarted == [
        "prefect-server",
        "mlflow",
        "webhook",
        "prefect-worker",
        "prefect-worker-2",
    ]


def test_the_deploy_fingerprint_ignores_the_worker_count(tmp_path: Path) -> None:
    one, two = _settings(tmp_path), _settings(tmp_path, workers=2)
    assert yaml_fingerprint(one) == yaml_fingerprint(two)
    assert yaml_fingerprint(one) != yaml_fingerprint(_settings(tmp_path, watchdog_seconds=7.0))


@pytest.mark.parametrize("value", ["0", str(MAX_WORKERS + 1), "two"])
def test_an_invalid_worker_count_is_a_clear_error(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOOP_WORKERS", value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    err = settings_error(caught.value)
    assert err.what.startswith("invalid setting MLOOP_WORKERS: ") and "environment" in (
        err.where or ""
    )
    assert value not in err.what  # a value is never echoed (another setting's may be a secret)
    monkeypatch.setenv("MLOOP_WORKERS", str(MAX_WORKERS))
    assert Settings().workers == MAX_WORKERS


def _sleeper(home: Path, marker: str) -> subprocess.Popen[bytes]:
    """A process standing in for a worker: marked as ``marker`` of ``home``, in a session of its own."""
    env = {**os.environ, "MLOOP_HOME": str(home), SERVICE_ENV: marker}
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], env=env, start_new_session=True
    )


def test_a_smaller_count_stops_the_extra_workers_and_keeps_the_others(tmp_path: Path) -> None:
    home, run = tmp_path / "home", tmp_path / "home" / "run"
    run.mkdir(parents=True)
    procs = {name: _sleeper(home, name) for name in worker_services(3)}
    orphan = _sleeper(
        home, "prefect-worker-4"
    )  # a dead worker-4's flow run: no live pid file, only its marker
    try:
        for name, proc in procs.items():
            (run / f"{name}.pid").write_text(str(proc.pid))
        (run / "prefect-worker-4.pid").write_text("999999999")
        write_wanted_workers(run, 1)
        states = {s.name: s for s in stop_extra_workers(run, home, 1)}
        assert list(states) == ["prefect-worker-4", "prefect-worker-3", "prefect-worker-2"]
        for name in ("prefect-worker-2", "prefect-worker-3"):
            assert procs[name].wait(30) is not None and not states[name].running
            assert (
                states[name].note == "stopped: 1 worker(s) wanted"
                and not (run / f"{name}.pid").exists()
            )
        assert orphan.wait(30) is not None and not (run / "prefect-worker-4.pid").exists()
        assert (
            pid_alive(procs["prefect-worker"].pid) and (run / "prefect-worker.pid").exists()
        )  # wanted: kept
    finally:
        for proc in [*procs.values(), orphan]:
            if proc.poll() is None:
                stop_pid(proc.pid, first=signal.SIGTERM)
                proc.wait(10)

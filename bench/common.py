"""Pieces shared by the platform benchmarks (bench/loop.py, bench/models.py).

A bench platform is a real ``mloop up`` in a temporary folder (own MLOOP_HOME, project checkout and
free loopback ports, as the platform tests start it); :func:`bench_platform` starts it and, at the
end, runs ``mloop down``, stops by pid anything ``down`` missed and removes the folder. The
helpers read times from the Prefect server's own timestamps (same host as this process's clock).
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mloop.core.events import DRIFT_DETECTED  # noqa: E402 - after the sys.path insert that makes the project importable
from tests.platform.helpers import Platform, platform_env, platform_settings, wait_for  # noqa: E402 - after the sys.path insert that makes the project importable


def ts(value: str) -> float:
    """A Prefect timestamp (ISO 8601, maybe ``Z``) as epoch seconds."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def completed(p: Platform, run_id: str, timeout: float = 600) -> dict[str, Any]:
    """Wait for a flow run to end; exit the bench (with the platform's log tails) unless it COMPLETED."""
    run = p.prefect.wait_run(run_id, timeout)
    if run["state_type"] != "COMPLETED":
        raise SystemExit(f"flow run {run['name']} ended {run['state_type']}\n{p.logs_tail()}")
    return run


def drift_event(p: Platform, model: str | None = None, limit: int = 50) -> dict[str, Any] | None:
    """The newest ``mloop.drift.detected`` event (of ``model`` when given), or None."""
    for event in p.prefect.events(names=[DRIFT_DETECTED], limit=limit if model else 1):
        if (
            model is None
            or event.get("resource", {}).get("prefect.resource.id") == f"mloop.model.{model}"
        ):
            return event
    return None


def settle(p: Platform, timeout: float = 900) -> float:
    """Wait until no flow run is pending, running or due (scheduled for now or earlier); the seconds waited."""
    started = time.time()

    def idle() -> bool:
        from datetime import UTC

        now = datetime.now(UTC).isoformat()
        running = p.prefect._json(
            "POST",
            "/flow_runs/filter",
            {"flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING"]}}}, "limit": 1},
        )
        due = p.prefect._json(
            "POST",
            "/flow_runs/filter",
            {
                "flow_runs": {
                    "state": {"type": {"any_": ["SCHEDULED"]}},
                    "expected_start_time": {"before_": now},
                },
                "limit": 1,
            },
        )
        return not running and not due

    wait_for(
        idle,
        timeout,
        "the platform to be idle (no scheduled, pending or running flow run)",
        every=1.0,
    )
    return time.time() - started


@contextmanager
def bench_platform(
    prefix: str, *, keep: bool = False, team_env: dict[str, str] | None = None
) -> Iterator[tuple[Platform, Path]]:
    """A fresh ``mloop up`` in a temporary folder for one bench run: yields (platform handle, folder).

    ``team_env``: the ``mloop infra env`` settings (team mode on those servers); None: single machine.
    At the end (``keep`` False): ``mloop down``, a stop by pid of anything it missed, the folder removed.
    A SIGTERM meanwhile ends the bench through the same clean-up (Python's default would skip it).
    """
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    root = Path(tempfile.mkdtemp(prefix=prefix))
    settings = platform_settings(root)
    if team_env is not None:
        from tests.infra_fixture import in_team_mode

        settings = in_team_mode(settings, team_env)
    p = Platform(settings=settings, env={**platform_env(settings), **(team_env or {})}, first_up={})
    try:
        t_up = time.perf_counter()
        p.first_up = p.cli_json("up")
        print(
            f"platform up in {time.perf_counter() - t_up:.1f}s (home {settings.state.root})",
            flush=True,
        )
        yield p, root
    finally:
        if keep:
            print(
                f"platform left up: stop it with MLOOP_HOME={settings.state.root} "
                f"MLOOP_PREFECT_PORT={settings.prefect_port} mloop down"
            )
        else:
            p.down()
            shutil.rmtree(root, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    """Turn SIGTERM into SystemExit, so ``finally`` blocks (the platform's clean-up) run."""
    raise SystemExit(128 + signum)

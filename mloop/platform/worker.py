"""``mloop worker``: one more process worker of the platform's pool, in the foreground, from any host.

``mloop up`` runs the platform's own worker. This one joins the same pool (``mloop-local``) beside it:
on the same MLOOP_HOME for more parallel runs, or, in team mode (the shared PostgreSQL and S3
settings, docs/team-mode.md), from another MLOOP_HOME or another host. A flow run takes its paths
and interpreter from the worker that runs it (prefect.yaml stores nothing host-specific), so a run
on this worker reads and writes this home's caches and the shared stores.

Before it starts, what would make every run fail is checked and reported as an error with its fix:
no platform credentials in this home, a single-machine home with no platform running, a Prefect
server that does not answer or refuses the credentials, and a pool that does not exist yet. The
worker polls every queue of the pool, or only the ones ``--work-queue`` names (a GPU host's
queue, say; the platform's own worker polls ``default``, the queue of every deployment). It then
replaces this process (``exec``): Ctrl-C or SIGTERM stops it as any Prefect worker.
Its processes carry ``MLOOP_SERVICE=worker``, so ``mloop down`` of the same home stops them too.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Sequence

import httpx

from mloop.core.errors import MloopError, NotReadyError
from mloop.core.paths import CODE_ROOT
from mloop.core.processes import SERVICE_ENV, child_env, read_pid
from mloop.core.secrets import load_secrets, secrets_path
from mloop.core.settings import Settings
from mloop.core.team import is_team
from mloop.platform.client import PrefectApi
from mloop.platform.services import (
    JOINED_WORKER,
    WORK_POOL,
    WORKER_ENV,
    platform_env,
    unset_env,
    worker_argv,
)


def joined_worker_name(host: str, token: str) -> str:
    """``mloop-worker-<host>-<token>``: the host says where it runs, the token makes each start unique. Pure."""
    safe = re.sub(r"[^A-Za-z0-9.-]+", "-", host).strip("-")[:40] or "host"
    return f"mloop-worker-{safe}-{token}"


def check_can_join(settings: Settings, api: PrefectApi, pool: str = WORK_POOL) -> None:
    """MloopError (what, where, how to fix) when a worker of this home could run no flow of ``pool``."""
    if settings.auth and load_secrets(settings.state.root) is None:
        raise NotReadyError(
            "this MLOOP_HOME has no platform credentials, so the Prefect server would refuse the worker",
            where=str(secrets_path(settings.state.root)),
            fix="copy secrets/platform.json from the platform's MLOOP_HOME to this path (mode 0600)",
        )
    if not is_team(settings) and read_pid(settings.state.run, "prefect-server") is None:
        raise NotReadyError(
            "no platform runs on this MLOOP_HOME, and in single-machine mode a worker must share the platform's home",
            where=str(settings.state.root),
            fix="run `mloop up` here first, or set the team settings (MLOOP_DATABASE_URL, MLOOP_ARTIFACTS_URI, "
            "MLOOP_S3_ENDPOINT_URL; docs/team-mode.md) to join from another home or host",
        )
    if not api.healthy(deadline=10.0):
        raise NotReadyError(
            "no Prefect server answers",
            where=api.api,
            fix="start the platform (`mloop up`) on its host; from another host set MLOOP_HOST and "
            "MLOOP_PREFECT_PORT to that host's address and port",
        )
    try:
        exists = api.work_pool_exists(pool)
    except httpx.HTTPStatusError as exc:
        raise MloopError(
            f"the Prefect server refused this home's credentials ({exc.response.status_code})",
            where=api.api,
            fix="copy secrets/platform.json from the platform's MLOOP_HOME to "
            f"{secrets_path(settings.state.root)} (mode 0600)",
        ) from exc
    if not exists:
        raise NotReadyError(
            f"the work pool {pool!r} does not exist yet",
            where=api.api,
            fix="run `mloop up` on the platform's host: it creates the pool and deploys the flows",
        )


def worker_environment(settings: Settings) -> dict[str, str]:
    """The worker's environment, as ``up`` builds a service's (:func:`mloop.core.processes.child_env`): this
    process's with the platform's and the worker settings, without the names a child must not inherit, and
    the ``worker`` marker."""
    return {
        **child_env({**platform_env(settings), **WORKER_ENV}, unset_env(settings)),
        SERVICE_ENV: JOINED_WORKER,
    }


def run_worker(settings: Settings, name: str | None = None, queues: Sequence[str] = ()) -> None:
    """Check, then replace this process with a worker of the pool polling ``queues`` (none: every queue;
    missing ones are created). Never returns unless a check fails."""
    settings.state.ensure()
    api = PrefectApi.of(settings)
    check_can_join(settings, api)
    for queue in queues:
        api.ensure_work_queue(WORK_POOL, queue)
    argv = worker_argv(
        name or joined_worker_name(socket.gethostname(), secrets.token_hex(3)), queues
    )
    env = worker_environment(settings)
    os.chdir(CODE_ROOT)
    os.execvpe(argv[0], argv, env)  # nosec B606  # argv is this interpreter and fixed arguments, no shell

"""Deploying onto the running Prefect server: the work pool, ``prefect.yaml``, the notification setup.

``prefect --no-prompt deploy --all`` (Prefect's own CLI) deploys every deployment in prefect.yaml;
``python -m flows.notify`` creates the notification block and automation. A fingerprint of
prefect.yaml plus the ``MLOOP_*`` settings (``run/prefect-deploy.sha256``) tells ``up`` whether a
deploy is due. Both children get the platform environment, whose ``PREFECT_API_AUTH_STRING``
authenticates them to the server (and no ``PREFECT_API_KEY``, which would override it).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from mloop.core.entrypoints import NOTIFY_SETUP, PREFECT, python_m
from mloop.core.errors import MloopError
from mloop.core.paths import CODE_ROOT
from mloop.core.processes import child_env
from mloop.core.settings import Settings
from mloop.platform.client import PrefectApi
from mloop.platform.services import WORK_POOL, platform_env, settings_env, unset_env

DEPLOY_STAMP = "prefect-deploy.sha256"
NOT_DEPLOYED = frozenset({"MLOOP_WORKERS"})
"""Settings that change no deployment: left out of the deploy fingerprint."""


def prefect_yaml() -> Path:
    return CODE_ROOT / "prefect.yaml"


def ensure_work_pool(settings: Settings) -> None:
    """Create the process work pool (with the process worker's default job template) if it is missing.

    Uses Prefect's own client (with the platform's auth string); Prefect is imported only when the
    pool has to be created.
    """
    if PrefectApi.of(settings).work_pool_exists(WORK_POOL):
        return
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.settings import (
        PREFECT_API_AUTH_STRING,
        PREFECT_API_KEY,
        PREFECT_API_URL,
        temporary_settings,
    )
    from prefect.workers.process import ProcessWorker

    pool = WorkPoolCreate(
        name=WORK_POOL,
        type=ProcessWorker.type,
        base_job_template=ProcessWorker.get_default_base_job_template(),
    )
    updates: dict[Any, Any] = {PREFECT_API_URL: settings.prefect_api_url}
    auth = settings.client_auth_env().get("PREFECT_API_AUTH_STRING")
    if auth:
        updates[PREFECT_API_AUTH_STRING] = auth
    with (
        temporary_settings(updates=updates, restore_defaults={PREFECT_API_KEY} if auth else None),
        get_client(sync_client=True) as client,
    ):
        try:
            client.create_work_pool(pool)
        except ObjectAlreadyExists:
            pass  # created meanwhile by someone else: same pool


def _run(
    argv: list[str],
    *,
    env: dict[str, str],
    what: str,
    cwd: Path | None = None,
    timeout: float = 300,
    unset: tuple[str, ...] = (),
) -> str:
    out = subprocess.run(
        argv,
        env=child_env(env, unset),
        cwd=str(cwd) if cwd else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        tail = (out.stdout + out.stderr)[-4000:]
        raise MloopError(
            f"could not {what} (exit {out.returncode})", where=" ".join(argv[:6]), fix=tail
        )
    return out.stdout


def deploy(settings: Settings) -> list[str]:
    """``prefect --no-prompt deploy --all`` from the code dir with the platform env; returns deployment names."""
    out = _run(
        python_m(PREFECT, "--no-prompt", "deploy", "--all"),
        env={**platform_env(settings), "COLUMNS": "200"},
        cwd=CODE_ROOT,
        what="deploy prefect.yaml",
        unset=unset_env(settings),
    )
    (settings.state.run / "prefect-deploy.log").write_text(out)
    deploy_stamp(settings).write_text(yaml_fingerprint(settings))
    return list_deployments(settings)


def deploy_stamp(settings: Settings) -> Path:
    return settings.state.run / DEPLOY_STAMP


def yaml_fingerprint(settings: Settings) -> str:
    """sha256 of prefect.yaml and the settings the deployments get (a change means: deploy again).

    ``MLOOP_WORKERS`` is left out: how many workers run changes no deployment, and ``up --workers N`` must
    not redeploy (and recreate every automation) for it."""
    digest = hashlib.sha256(prefect_yaml().read_bytes())
    env = {k: v for k, v in settings_env(settings).items() if k not in NOT_DEPLOYED}
    digest.update(json.dumps(env, sort_keys=True).encode())
    return digest.hexdigest()


def deploy_is_fresh(settings: Settings) -> bool:
    """True when the last deploy was of this prefect.yaml with these settings."""
    stamp = deploy_stamp(settings)
    return stamp.exists() and stamp.read_text() == yaml_fingerprint(settings)


def list_deployments(settings: Settings) -> list[str]:
    """``<flow>/<deployment>`` of every deployment on the platform's server, sorted."""
    api = PrefectApi.of(settings)
    flows = api.flow_names()
    return sorted(f"{flows.get(d['flow_id'], '?')}/{d['name']}" for d in api.deployments())


def setup_notifications(settings: Settings) -> None:
    """Create/refresh the notification block and automation (``python -m flows.notify``)."""
    _run(
        python_m(NOTIFY_SETUP),
        env=platform_env(settings),
        cwd=CODE_ROOT,
        what="set up notifications",
        unset=unset_env(settings),
    )

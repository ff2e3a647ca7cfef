"""Helpers of the platform tests: a `mloop up` platform handle and REST helpers.

The platform runs its own Prefect server, process worker, MLflow server and webhook receiver on
free loopback ports with a temporary MLOOP_HOME and project checkout, exactly as a developer would
start it (``python -m mloop.cli up``). Tests talk to it over HTTP only (Prefect REST API, the
webhook, the prediction service), so the test process's own Prefect settings (the session server)
are never touched.

Auth is on, as by default: ``mloop up`` creates the platform secret, and the handle's clients carry
its credentials (Prefect basic auth, the bearer token). :meth:`Platform.call` makes one request with
or without them and with any Host header, for the security tests.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Literal

import httpx
import pandas as pd

from mloop.core.entrypoints import CLI, python_m
from mloop.core.generate import generate
from mloop.core.processes import free_port, pid_alive, stop_pid
from mloop.core.secrets import PlatformSecrets, load_secrets
from mloop.core.settings import Settings
from mloop.platform.client import (  # noqa: F401 - re-exported for the tests
    PrefectApi,
    ServingClient,
    basic_auth_header,
    bearer_header,
    wait_for,
)
from mloop.platform.client import records_of as records  # noqa: F401 - re-exported for the tests
from mloop.platform.services import settings_env, urls
from tests.helpers import make_project


class Platform:
    """A platform started by `mloop up` for a test: its settings, the env of its CLI, its HTTP clients."""

    def __init__(
        self, settings: Settings, env: dict[str, str], first_up: dict[str, Any] | None = None
    ) -> None:
        self.urls = urls(settings)
        self.webhook_url = self.urls["webhook"]
        self.settings = settings
        self.env = env
        self.first_up = first_up or {}

    # -- credentials (the secret `mloop up` created; read when asked, never cached before `up`)

    @property
    def secrets(self) -> PlatformSecrets:
        found = load_secrets(self.settings.state.root)
        assert found is not None, "no platform secret: has `mloop up` run?"
        return found

    @property
    def token(self) -> str:
        """The bearer token of the API (what ``Settings.bearer_token()`` gives a client)."""
        token = self.settings.bearer_token()
        assert token is not None
        return token

    @property
    def prefect(self) -> PrefectApi:
        """The platform's Prefect API, authenticated."""
        return PrefectApi(
            self.urls["prefect_api"],
            auth_string=self.secrets.prefect_auth_string.get_secret_value(),
        )

    @property
    def serving(self) -> ServingClient:
        """The prediction service, with the bearer token."""
        return ServingClient(self.urls["serving"], token=self.token)

    def auth_headers(self, service: Literal["prefect", "mlflow", "api"]) -> dict[str, str]:
        """The ``Authorization`` header a client of ``service`` sends (api: serving and webhook)."""
        found = self.secrets
        if service == "prefect":
            return basic_auth_header(found.prefect_auth_string.get_secret_value())
        if service == "mlflow":
            return basic_auth_header(
                f"{found.mlflow_username}:{found.mlflow_password.get_secret_value()}"
            )
        return bearer_header(self.token)

    def call(
        self,
        method: str,
        url: str,
        *,
        auth: Literal["prefect", "mlflow", "api"] | None = None,
        host: str | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request to ``url``: with the credentials of the service ``auth`` names (none without it)
        and, when ``host`` is given, that Host header instead of the URL's (e.g. ``evil.example``)."""
        headers = dict(kwargs.pop("headers", {}) or {})
        if auth is not None:
            headers.update(self.auth_headers(auth))
        if host is not None:
            headers["Host"] = host
        return httpx.request(
            method, url, headers=headers, timeout=kwargs.pop("timeout", 90), **kwargs
        )

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            python_m(CLI, *args),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(self.settings.project_dir),
        )

    def cli_json(self, *args: str) -> Any:
        out = self.cli(*args, "--json")
        assert out.returncode == 0, f"mloop {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
        return json.loads(out.stdout)

    def logs_tail(self, chars: int = 6000) -> str:
        out = []
        for log in sorted(self.settings.state.run.glob("*.log")):
            out.append(f"--- {log.name}\n{log.read_text(errors='replace')[-chars:]}")
        return "\n".join(out)

    def down(self) -> None:
        """``mloop down``, then a stop by pid of anything it missed (a test or a bench leaves nothing)."""
        self.cli("down", "--json", timeout=180)
        for pid_file in self.settings.state.run.glob("*.pid"):
            try:
                pid = int(pid_file.read_text())
            except ValueError:
                continue
            if pid_alive(pid):
                stop_pid(pid)


def platform_settings(root: Path) -> Settings:
    project = make_project(root / "project")
    return Settings(
        home=root / "home",
        project_dir=project,
        prefect_port=free_port(),
        mlflow_port=free_port(),
        serve_port=free_port(),
        webhook_port=free_port(),
        # A 3k-row dataset gives a 600-row holdout: its per-slice AUCs (100-300 rows) move by a few
        # hundredths from noise alone, so the default 0.02 slice tolerance would reject a challenger
        # that is far better overall (seen: +0.24 AUC overall, one 178-row slice -0.04).
        gate_slice_tolerance=0.1,
        monitor_sweep_schedule=False,  # no unplanned drift checks: a test runs the sweep when it means to
        package_on_promote=True,  # as a user's platform (the in-process tests turn it off)
    )


def platform_env(settings: Settings) -> dict[str, str]:
    # Nothing of the test process's own platform settings or credentials (an in-process test may
    # have exported another MLOOP_HOME's MLflow credentials): the CLI finds its own.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLOOP_", "PREFECT_", "MLFLOW_TRACKING_"))
    }
    env.update(settings.service_env())
    env.update(settings_env(settings))
    env["PREFECT_API_URL"] = settings.prefect_api_url
    env["PREFECT_LOGGING_LEVEL"] = "INFO"
    return env


def drifted_traffic(rows: int, seed: int) -> pd.DataFrame:
    """``regime-change`` traffic: the applicants drift AND default for other reasons.

    Feature drift is what the monitor sees; the changed mechanism is what makes a model retrained
    on the labelled traffic beat the old champion at the gate.
    """
    return generate("regime-change", rows, seed)


def send_traffic_with_feedback(platform: Platform, df: pd.DataFrame) -> int:
    """POST /predict in batches, then POST /feedback with the true labels; returns answered rows."""
    return platform.serving.send_traffic(df, with_feedback=True, batch=500)[0]

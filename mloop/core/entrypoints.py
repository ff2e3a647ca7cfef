"""Modules mloop starts by name in a child process: the one place their names are written.

A module named in a string is invisible to imports and to the import-linter: renaming it breaks a
service only at run time. Every such name lives here, and ``tests/core/test_entrypoints.py``
resolves each one and fails when a new module string is hard-coded elsewhere.
"""

from __future__ import annotations

import sys

# -- project modules (resolved by tests/core/test_entrypoints.py)
WEBHOOK = "monitoring.webhook"
"""Alertmanager/notification receiver (``python -m``), a service of ``mloop up``."""
NOTIFY_SETUP = "flows.notify"
"""Creates the notification block and automation (``python -m``), run by ``mloop up`` on deploy."""
SERVING_STORE = "serving.bundle.store"
"""BentoML store jobs in a child with BENTOML_HOME set (``python -m``)."""
PREDICTION_SERVICE = "serving.api.bento:PredictionService"
"""The BentoML service class (``bentoml serve`` / ``bentoml build``)."""
CLI = "mloop.cli"
"""The ``mloop`` command (``python -m``)."""
PREFECT_SERVER = "mloop.platform.prefect_server"
"""The Prefect server (API, UI, services) behind mloop's Host allowlist (``python -m``): the local
platform's server and the test suite's session server."""

WATCHDOG = "mloop.platform.watchdog"
"""The platform's watchdog (``python -m``), a service of ``mloop up``: restarts dead services,
reconciles what is served with each champion, delivers the event outbox."""

PROJECT_MODULES: tuple[str, ...] = (
    WEBHOOK,
    NOTIFY_SETUP,
    SERVING_STORE,
    CLI,
    PREFECT_SERVER,
    WATCHDOG,
)
PROJECT_OBJECTS: tuple[str, ...] = (PREDICTION_SERVICE,)

# -- third-party tools started as ``python -m``
PREFECT = "prefect"
PREFECT_ENGINE = "prefect.engine"
"""One flow run per process (the worker's job command: prefect.yaml job variable ``command``)."""
MLFLOW = "mlflow"
BENTOML = "bentoml"

TOOL_MODULES: tuple[str, ...] = (PREFECT, PREFECT_ENGINE, MLFLOW, BENTOML)


def python_m(module: str, *args: str) -> list[str]:
    """``[this interpreter, -m, module, *args]``: start ``module`` with the running Python."""
    return [sys.executable, "-m", module, *args]

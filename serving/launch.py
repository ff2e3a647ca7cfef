"""How to start the prediction service process (used by ``mloop serve``, tests and the benchmark)."""

from __future__ import annotations

import sys
from pathlib import Path

from mloop.core.entrypoints import BENTOML, PREDICTION_SERVICE, python_m
from mloop.core.paths import CODE_ROOT, with_code_root
from mloop.core.processes import ServiceProcess, start_process
from mloop.core.settings import Settings
from serving.config import ServingSettings


def serve_argv(host: str, port: int, service: str = PREDICTION_SERVICE) -> list[str]:
    """``bentoml serve`` for the service, bound to ``host:port`` (loopback by default)."""
    bentoml = Path(sys.executable).with_name("bentoml")
    head = [str(bentoml)] if bentoml.exists() else python_m(BENTOML)
    return [*head, "serve", service, "--host", host, "--port", str(port)]


def serve_env(settings: Settings, model_tag: str, *, log_predictions: bool = True, **extra: str) -> dict[str, str]:
    """Environment of the service process: the state paths, then the :class:`ServingSettings` it
    reads (the model tag, the log switch, and any MLOOP_ serving knob set in this environment),
    then ``extra`` (raw variables, e.g. ``MLOOP_PREDLOG_FLUSH_SECONDS="60"``)."""
    env = settings.service_env()
    env.update(ServingSettings(serve_model=model_tag, prediction_log=log_predictions).to_env())
    env = with_code_root(env)
    if settings.api_token is not None:
        env["MLOOP_API_TOKEN"] = settings.api_token.get_secret_value()
    env.update(extra)
    return env


def start_service(
    settings: Settings,
    model_tag: str,
    *,
    port: int,
    host: str = "127.0.0.1",
    name: str = "bentoml-serve",
    run_dir: Path | None = None,
    timeout: float = 90.0,
    log_predictions: bool = True,
    **extra_env: str,
) -> ServiceProcess:
    """Start the service in the background and wait until ``/readyz`` answers (model loaded)."""
    url = f"http://{host}:{port}"
    return start_process(
        name,
        serve_argv(host, port),
        run_dir=run_dir or settings.state.run,
        env=serve_env(settings, model_tag, log_predictions=log_predictions, **extra_env),
        cwd=CODE_ROOT,
        url=url,
        ready_url=f"{url}/readyz",
        timeout=timeout,
    )

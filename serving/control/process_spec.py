"""How to start the prediction service process (used by ``mloop serve``, tests and the benchmark).

The service binds to ``Settings.serving_host`` (``MLOOP_SERVE_HOST``, default ``MLOOP_HOST``), so
exposing predictions does not expose Prefect, MLflow or the webhook. It reads its bearer token
itself (the platform secret under MLOOP_HOME): no secret is ever put in argv, and the token is put
in its environment only when a person set ``MLOOP_API_TOKEN``. It gets no Prefect or MLflow
credentials: it never talks to them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from mloop.core.entrypoints import BENTOML, PREDICTION_SERVICE, python_m
from mloop.core.paths import CODE_ROOT, with_code_root
from mloop.core.processes import ServiceProcess, start_process
from mloop.core.service_urls import http_url
from mloop.core.settings import Settings
from serving.api.config import ServingSettings, tag_list


def serve_argv(host: str, port: int, service: str = PREDICTION_SERVICE) -> list[str]:
    """``bentoml serve`` for the service, bound to ``host:port`` (pass ``Settings.serving_host``)."""
    bentoml = Path(sys.executable).with_name("bentoml")
    head = [str(bentoml)] if bentoml.exists() else python_m(BENTOML)
    return [*head, "serve", service, "--host", host, "--port", str(port)]


def serve_env(
    settings: Settings,
    model_tags: str | Sequence[str],
    *,
    log_predictions: bool = True,
    **extra: str,
) -> dict[str, str]:
    """Environment of the service process: the state paths, the settings (security included), then the
    :class:`ServingSettings` it reads (the model tags as ``MLOOP_SERVE_MODELS``, the first also as
    ``MLOOP_SERVE_MODEL``, the log switch, and any MLOOP_ serving knob set in this environment),
    then ``extra`` (raw variables, e.g. ``MLOOP_PREDLOG_FLUSH_SECONDS="60"``).
    Prefect and MLflow credentials are blanked (the process would otherwise inherit them)."""
    tags = tag_list(model_tags)
    if not tags:
        raise ValueError("serve_env needs at least one model tag")
    env = settings.service_env()
    for key in settings.client_auth_env():
        env[key] = ""
    env.update(settings.child_env())  # the security settings too (they may have been set in code)
    env.update(
        ServingSettings(
            serve_model=tags[0], serve_models=",".join(tags), prediction_log=log_predictions
        ).to_env()
    )
    env = with_code_root(env)
    env.update(extra)
    return env


def start_service(
    settings: Settings,
    model_tags: str | Sequence[str],
    *,
    port: int,
    host: str | None = None,
    name: str = "bentoml-serve",
    run_dir: Path | None = None,
    timeout: float = 90.0,
    log_predictions: bool = True,
    **extra_env: str,
) -> ServiceProcess:
    """Start the service of ``model_tags`` (one tag or many) bound to ``host`` (default
    ``settings.serving_host``) in the background and wait until ``/readyz`` answers (the start models loaded)."""
    bind = host if host is not None else settings.serving_host
    url = http_url(bind, port)
    return start_process(
        name,
        serve_argv(bind, port),
        run_dir=run_dir or settings.state.run,
        env=serve_env(settings, model_tags, log_predictions=log_predictions, **extra_env),
        cwd=CODE_ROOT,
        url=url,
        ready_url=f"{url}/readyz",
        timeout=timeout,
    )

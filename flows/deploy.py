"""Deploy flow: package a registry version and roll it into the running prediction service.

Triggered by ``mloop.model.promoted`` / ``mloop.model.rolled-back`` (prefect.yaml), by
``mloop deploy`` and from the Prefect UI. Steps: package (cached: an existing BentoML model/Bento
is reused), then either roll out to the service at ``http://{serving_host}:{serve_port}`` (loopback
when it binds a wildcard address) with the platform's bearer token (the service loads and
smoke-tests the model, then swaps it in atomically: zero failed requests) or, when no service
answers, start one for this model. A refused rollout fails the flow loudly and leaves the
old model serving. Emits ``mloop.model.deployed`` and publishes a markdown artifact.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from mloop.core import events
from mloop.core.artifacts import artifact_key
from mloop.core.names import ModelName
from mloop.core.processes import http_url
from mloop.core.settings import Settings


class DeployResult(BaseModel):
    """What a deployment did."""

    name: str
    version: str
    model_tag: str
    bento_tag: str | None = None
    backend: str
    url: str
    action: str = Field(description="rolled-out, already-serving or started")
    previous_version: str | None = None
    packaged_now: bool = False


@task(name="package-model", retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE)
def package_task(settings: Settings, name: str, version: str | None) -> Any:
    """Package the version (BentoML model + Bento); reuses what the store already holds."""
    from serving.package import package_model

    return package_model(settings, name, version)


@task(name="roll-out", cache_policy=NO_CACHE)
def rollout_task(settings: Settings, model_tag: str, url: str) -> tuple[str, str | None]:
    """Switch the running service to ``model_tag``, or start a service when none answers."""
    from serving.launch import start_service
    from serving.rollout import RolloutFailed, current_model, rollout

    token = settings.bearer_token()
    try:
        now = current_model(url, timeout=5)
    except RolloutFailed:
        start_service(settings, model_tag, port=settings.serve_port, host=settings.serving_host, name="serve")
        return "started", None
    if now.get("bentoml_tag") == model_tag:
        return "already-serving", str(now.get("model_version"))
    rollout(url, model_tag, token=token)
    return "rolled-out", str(now.get("model_version"))


def _markdown(result: DeployResult) -> str:
    return "\n".join(
        [
            f"# Deploy `{result.name}` version {result.version}: {result.action}",
            "",
            "| field | value |",
            "|---|---|",
            f"| service | {result.url} |",
            f"| BentoML model | `{result.model_tag}` |",
            f"| Bento | `{result.bento_tag or '-'}` |",
            f"| inference backend | {result.backend} |",
            f"| previous version | {result.previous_version or '-'} |",
            f"| packaged in this run | {result.packaged_now} |",
        ]
    ) + "\n"


@flow(name="deploy")
def deploy_flow(name: ModelName, version: str | None = None) -> DeployResult:
    """Package a model version and put it into the running prediction service (zero downtime).

    Args:
        name: Registered model name (= dataset name).
        version: Registry version number; empty = the current champion.
    """
    logger = get_run_logger()
    settings = Settings()
    settings.apply_env()
    packaged = package_task(settings, name, version)
    url = http_url(settings.serving_host, settings.serve_port)
    action, previous = rollout_task(settings, packaged.model_tag, url)
    result = DeployResult(
        name=name,
        version=packaged.version,
        model_tag=packaged.model_tag,
        bento_tag=packaged.bento_tag,
        backend=packaged.backend,
        url=url,
        action=action,
        previous_version=previous,
        packaged_now=packaged.created,
    )
    if packaged.backend != "onnx":
        logger.warning("serving %s with sklearn (slower): %s", packaged.model_tag, packaged.fallback_reason)
    logger.info("%s %s version %s at %s", action, name, packaged.version, url)
    create_markdown_artifact(
        key=artifact_key("deploy", name), markdown=_markdown(result), description=f"deploy {name}"
    )
    events.emit(
        events.MODEL_DEPLOYED,
        events.model_resource(name),
        {"version": packaged.version, "model": name, "url": url, "action": action, "backend": packaged.backend},
    )
    return result

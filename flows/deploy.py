"""Deploy flow: package a registry version and roll it into the running prediction service.

Triggered by ``mloop.model.promoted`` / ``mloop.model.rolled-back`` (prefect.yaml), by the
watchdog's reconcile, by ``mloop deploy`` and from the Prefect UI. Steps: package the BentoML model
(cached: an existing one is reused), then look at what the service at
``http://{serving_host}:{serve_port}`` (loopback when it binds a wildcard address) serves
(``GET /models``) and act for THIS model only (:func:`deploy_action`):

- served at this tag already: nothing to do (``already-serving``);
- served at another version: ``POST /admin/rollout`` with the platform's bearer token (the service
  loads and smoke-tests the model, then swaps that one model's entry atomically: zero failed
  requests, the other models untouched) (``rolled-out``);
- not served yet: the same rollout ADDS it beside the others (``added``);
- no service answers: start one with every champion, this version in place of its model's champion
  (``started``); if another starter won the race, roll out into its service.

Then the Bento (the container artefact) is built from the stored model, after the rollout: the
new version answers without waiting for the build (measured on the demo model: Bento 3.9 s after
the model's 3.1 s; both under load). A refused rollout fails the flow loudly and leaves what was served serving. Emits
``mloop.model.deployed`` and publishes a markdown artifact, both per model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from mloop.core import events
from mloop.core.artifacts import artifact_key
from mloop.core.names import ModelName
from mloop.core.service_urls import http_url
from mloop.core.settings import Settings


class DeployResult(BaseModel):
    """What a deployment did."""

    name: str
    version: str
    model_tag: str
    bento_tag: str | None = None
    backend: str
    url: str
    action: str = Field(description="rolled-out, added, already-serving or started")
    previous_version: str | None = None
    packaged_now: bool = False


@task(name="package-model", retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE)
def package_task(settings: Settings, name: str, version: str | None) -> Any:
    """Package the version as a BentoML model (what the service loads); reuses what the store holds."""
    from serving.bundle.package import package_model

    return package_model(settings, name, version, build=False)


@task(name="build-bento", retries=1, retry_delay_seconds=2, cache_policy=NO_CACHE)
def build_bento_task(settings: Settings, name: str, version: str) -> Any:
    """Build the version's Bento (the deployable artefact for containers) from the model already in the
    store; runs after the rollout, so the new version answers without waiting for it."""
    from serving.bundle.package import package_model

    return package_model(settings, name, version, build=True)


Action = Literal["already-serving", "rolled-out", "added"]


def deploy_action(
    served: Mapping[str, Mapping[str, Any]], name: str, model_tag: str
) -> tuple[Action, str | None]:
    """What a deploy of ``model_tag`` (model ``name``) does to a service serving ``served``
    (:func:`serving.control.fleet.served_models`), and the version it replaces. Pure: only ``name`` counts."""
    now = served.get(name)
    if now is None:
        return "added", None
    previous = now.get("model_version")
    if now.get("bentoml_tag") == model_tag:
        return "already-serving", None if previous is None else str(previous)
    return "rolled-out", None if previous is None else str(previous)


@task(name="roll-out", cache_policy=NO_CACHE)
def rollout_task(settings: Settings, name: str, model_tag: str, url: str) -> tuple[str, str | None]:
    """Put ``model_tag`` into the running service (switch or add that one model), or start a service
    with every champion when none answers."""
    from serving.control.fleet import champion_tags, one_or_many, served_models, start_tags
    from serving.control.process_spec import start_service
    from serving.control.rollout_client import RolloutFailed, rollout

    token = settings.bearer_token()
    try:
        served = served_models(url, timeout=5, token=token)
    except RolloutFailed:
        tags = start_tags(champion_tags(settings), model_tag)
        proc = start_service(
            settings,
            one_or_many(tags),
            port=settings.serve_port,
            host=settings.serving_host,
            name="serve",
        )
        if proc.started:
            return "started", None
        served = served_models(
            url, timeout=5, token=token
        )  # another starter won: its service may lack this model
    action, previous = deploy_action(served, name, model_tag)
    if action != "already-serving":
        rollout(url, model_tag, token=token)
    return action, previous


def _markdown(result: DeployResult) -> str:
    return (
        "\n".join(
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
        )
        + "\n"
    )


@flow(name="deploy")
def deploy_flow(name: ModelName, version: str | None = None) -> DeployResult:
    """Package a model version and put it into the running prediction service beside the other
    models (zero downtime; the other models' serving is never changed).

    Args:
        name: Registered model name (= dataset name).
        version: Registry version number; empty = the current champion.
    """
    logger = get_run_logger()
    settings = Settings()
    settings.apply_env()
    packaged = package_task(settings, name, version)
    url = http_url(settings.serving_host, settings.serve_port)
    action, previous = rollout_task(settings, name, packaged.model_tag, url)
    built = build_bento_task(settings, name, packaged.version)
    packaged = packaged.model_copy(
        update={"bento_tag": built.bento_tag, "created": packaged.created or built.created}
    )
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
        logger.warning(
            "serving %s with sklearn (slower): %s", packaged.model_tag, packaged.fallback_reason
        )
    logger.info("%s %s version %s at %s", action, name, packaged.version, url)
    create_markdown_artifact(
        key=artifact_key("deploy", name), markdown=_markdown(result), description=f"deploy {name}"
    )
    events.emit(
        events.MODEL_DEPLOYED,
        events.model_resource(name),
        {
            "version": packaged.version,
            "model": name,
            "url": url,
            "action": action,
            "backend": packaged.backend,
        },
    )
    return result

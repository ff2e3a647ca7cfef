"""How the platform (``mloop up``) and ``mloop serve`` start the prediction service for a champion."""

from __future__ import annotations

from dataclasses import dataclass

from mloop.core.settings import Settings
from mloop.platform.services import ServeCommand
from serving.launch import CODE_ROOT, serve_argv, serve_env


@dataclass(frozen=True)
class ServeSpec(ServeCommand):
    """The platform's ServeCommand for one packaged model, plus which model it serves."""

    model_tag: str = ""
    name: str = ""
    version: str = ""


def champion_model_name(settings: Settings) -> str | None:
    """The registered model to serve when none is named: the first (by name) that has a champion."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    names = sorted(
        rm.name for rm in client.search_registered_models() if "champion" in (getattr(rm, "aliases", {}) or {})
    )
    return names[0] if names else None


def serve_command(
    settings: Settings, name: str | None = None, *, host: str | None = None, port: int | None = None
) -> ServeSpec | None:
    """Package the champion of ``name`` (if needed) and return how to serve it; None without a champion.

    The service binds ``host`` or ``settings.serving_host`` (exposing predictions exposes nothing else).
    """
    from serving.package import package_model

    name = name or champion_model_name(settings)
    if name is None:
        return None
    packaged = package_model(settings, name)
    return ServeSpec(
        argv=serve_argv(host or settings.serving_host, port or settings.serve_port),
        env=serve_env(settings, packaged.model_tag),
        cwd=CODE_ROOT,
        model_tag=packaged.model_tag,
        name=name,
        version=packaged.version,
    )

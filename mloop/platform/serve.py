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


def champion_versions(settings: Settings) -> dict[str, str]:
    """Registered model -> the version its ``champion`` alias names (the registry's desired state).

    Reads the tracking store itself (no server needed). Empty when the store does not exist yet.
    """
    if settings.mlflow_tracking_uri is None and not settings.state.mlflow_db.exists():
        return {}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    found: dict[str, str] = {}
    for rm in client.search_registered_models():
        aliases = getattr(rm, "aliases", {}) or {}
        if "champion" in aliases:
            found[rm.name] = str(aliases["champion"])
    return found


def champion_model_name(settings: Settings) -> str | None:
    """The registered model to serve when none is named: the first (by name) that has a champion."""
    names = sorted(champion_versions(settings))
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

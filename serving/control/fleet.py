"""The fleet: every registered model with a champion, served side by side by one prediction service.

Used by the platform (``mloop up``/``serve``, the watchdog's reconcile, ``mloop status``) and by the
deploy flow, so it sits in the capability layer. Three parts:

- the desired state: :func:`champion_versions` (registry: model -> champion version) and
  :func:`package_champions` / :func:`champion_tags` (each champion packaged, cached by
  :func:`serving.bundle.package.package_model`; one model that fails to package is logged and left out,
  never fatal for the others);
- what is served: :func:`served_models` / :func:`current_model` (``GET /models`` and
  ``GET /models/<name>`` of the service; the client lives in :mod:`serving.control.rollout_client`, re-exported here);
- pure comparisons: :func:`served_versions`, :func:`to_deploy`, :func:`start_tags`.

MLflow and BentoML are imported inside the functions that need them: importing this module is cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from serving.api.rollout_record import model_name_of
from serving.control.rollout_client import (
    current_model,
    models_of,
    served_models,
    single_model_answer,
)

__all__ = [
    "champion_tags",
    "champion_versions",
    "current_model",
    "models_of",
    "one_or_many",
    "package_champions",
    "served_models",
    "served_versions",
    "single_model_answer",
    "start_tags",
    "to_deploy",
]

if TYPE_CHECKING:
    from mloop.core.settings import Settings
    from serving.bundle.package import PackagedModel

log = logging.getLogger(__name__)

CHAMPION = "champion"


# ---------------------------------------------------------------- desired state (the registry)


def champion_versions(settings: Settings) -> dict[str, str]:
    """Registered model -> the version its ``champion`` alias names (the registry's desired state).

    Reads the tracking store itself (no server needed). Empty when the store does not exist yet.
    """
    db = settings.local_tracking_db
    if db is not None and not db.exists():
        return {}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    found: dict[str, str] = {}
    for rm in client.search_registered_models():
        aliases = getattr(rm, "aliases", {}) or {}
        if CHAMPION in aliases:
            found[rm.name] = str(aliases[CHAMPION])
    return dict(sorted(found.items()))


def package_champions(
    settings: Settings, champions: Mapping[str, str] | None = None
) -> dict[str, PackagedModel]:
    """Model name -> its champion packaged for serving (cached: a version already in the store is reused).

    ``champions`` defaults to :func:`champion_versions`. A model whose packaging fails is logged and
    left out: one broken model never keeps the others from being served.
    """
    from serving.bundle.package import package_model

    wanted = champion_versions(settings) if champions is None else champions
    packaged: dict[str, PackagedModel] = {}
    for name, version in sorted(wanted.items()):
        try:
            packaged[name] = package_model(settings, name, version)
        except Exception as exc:
            log.error(
                "could not package %s version %s (left out of serving): %s", name, version, exc
            )
    return packaged


def champion_tags(settings: Settings, champions: Mapping[str, str] | None = None) -> list[str]:
    """The BentoML tags of every champion (packaged if needed), ordered by model name."""
    return [p.model_tag for p in package_champions(settings, champions).values()]


# ---------------------------------------------------------------- pure comparisons


def served_versions(models: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Model name -> the version the service reports for it (from :func:`served_models`). Pure."""
    out: dict[str, str] = {}
    for name, info in models.items():
        version = info.get("model_version", info.get("version"))
        if version is not None:
            out[name] = str(version)
    return out


def to_deploy(champions: Mapping[str, str], served: Mapping[str, str]) -> dict[str, str]:
    """Models whose champion is not what is served -> why (missing, or serving another version). Pure.

    A served model without a champion is not listed: nothing to deploy for it.
    """
    out: dict[str, str] = {}
    for name, want in sorted(champions.items()):
        have = served.get(name)
        if have is None:
            out[name] = f"{name} is not served, champion of {name} is version {want}"
        elif have != want:
            out[name] = f"serving {name} version {have}, champion of {name} is version {want}"
    return out


def start_tags(champion_tags: Sequence[str], model_tag: str) -> list[str]:
    """The tags a new service starts with to serve ``model_tag``: every champion, with ``model_tag``
    in place of its model's champion (a deploy of a version that is not the champion). Pure."""
    name = model_name_of(model_tag)
    return sorted({t for t in champion_tags if model_name_of(t) != name} | {model_tag})


def one_or_many(tags: Sequence[str]) -> str | list[str]:
    """The ``model_tags`` argument of :func:`serving.control.process_spec.serve_env`/``start_service``: one tag as a
    string (what every service understands), several as a list. Pure."""
    return tags[0] if len(tags) == 1 else list(tags)

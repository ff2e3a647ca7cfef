"""A read-only view of the model registry for the CLI: the running MLflow server's REST API when it
answers, else the local tracking store, and nothing at all when that store was never created.

Why not :mod:`models.registry` directly: it imports MLflow (seconds at start-up) and opening the local
SQLite store creates it. A read command (``mloop models NAME``, the checks ``train``, ``monitor`` and
``deploy`` make before they start anything) must answer fast on a running platform and leave an empty
MLOOP_HOME empty. The checks raise the CLI's errors: an unknown model is a
:class:`~mloop.core.errors.NotFoundError` (exit 3), a model without a champion a
:class:`~mloop.core.errors.NotReadyError` (exit 5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from mloop.core.errors import NotFoundError, NotReadyError
from mloop.core.http import request
from mloop.core.names import check_name
from mloop.core.team import is_team
from mloop.platform.services import urls

if TYPE_CHECKING:
    from mloop.core.settings import Settings
    from models.registry import RegisteredVersion

CHAMPION = "champion"
PAGE = 1000


def _get(settings: Settings, path: str, params: dict[str, Any]) -> httpx.Response:
    auth = settings.client_auth_env()
    user, password = auth.get("MLFLOW_TRACKING_USERNAME"), auth.get("MLFLOW_TRACKING_PASSWORD")
    return request(
        "GET",
        f"{urls(settings)['mlflow_ui']}/api/2.0/mlflow/{path}",
        params=params,
        auth=(user, password) if user and password else None,
        timeout=5,
        deadline=0,  # one try: a refused connection means no server (the local store answers then)
    )


def rest_versions(settings: Settings, name: str) -> list[RegisteredVersion] | None:
    """Every version of ``name`` from the MLflow server, newest first (empty: not registered); None when no
    server answers (or it answers with an error)."""
    from models.registry import registered_version

    try:
        found = _get(settings, "registered-models/get", {"name": name})
        if found.status_code == 404:
            return []
        found.raise_for_status()
        aliases: dict[str, list[str]] = {}
        for a in found.json()["registered_model"].get("aliases", []):
            aliases.setdefault(str(a["version"]), []).append(a["alias"])
        rows: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"filter": f"name = '{name}'", "max_results": PAGE}
            if token:
                params["page_token"] = token
            page = _get(settings, "model-versions/search", params)
            page.raise_for_status()
            body = page.json()
            rows += body.get("model_versions", [])
            token = body.get("next_page_token")
            if not token:
                break
    except (httpx.HTTPError, ValueError, KeyError):
        return None
    versions: list[RegisteredVersion] = []
    for mv in rows:
        tags = {t["key"]: t.get("value", "") for t in mv.get("tags", [])}
        version = str(mv["version"])
        versions.append(
            registered_version(
                name=name,
                version=version,
                run_id=mv.get("run_id") or None,
                aliases=sorted(aliases.get(version, [])),
                tags=tags,
                source=mv.get("source"),
            )
        )
    return sorted(versions, key=lambda v: int(v.version), reverse=True)


def model_versions(settings: Settings, name: str) -> list[RegisteredVersion]:
    """Every version of ``name``, newest first (empty: not registered), read without writing anything."""
    check_name(name, "model")
    found = rest_versions(settings, name)
    if found is not None:
        return found
    db = settings.local_tracking_db
    if (db is not None and not db.exists()) or is_team(settings):
        return []  # no store yet (nothing registered), or team mode: the store IS that server
    from models.registry import list_versions

    return list_versions(settings.tracking_uri, name)


def require_model(settings: Settings, name: str) -> list[RegisteredVersion]:
    """:func:`model_versions` of a registered model; NotFoundError (exit 3) when ``name`` is unknown."""
    versions = model_versions(settings, name)
    if not versions:
        raise NotFoundError(
            f"model {name!r} is not registered",
            where="MLflow model registry",
            fix=f"train one: mloop train {name} (registered models: mloop status)",
        )
    return versions


def require_version(settings: Settings, name: str, ref: str = CHAMPION) -> RegisteredVersion:
    """Version ``ref`` (a number or an alias) of a registered model: NotFoundError (exit 3) for an unknown
    model or version number, NotReadyError (exit 5) when no version holds the alias (e.g. no champion)."""
    versions = require_model(settings, name)
    for v in versions:
        if v.version == ref or ref in v.aliases:
            return v
    if ref.isdigit():
        raise NotFoundError(
            f"model {name!r} has no version {ref}",
            where="MLflow model registry",
            fix=f"list its versions: mloop models {name}",
        )
    raise NotReadyError(
        f"model {name!r} has no {ref}",
        where="MLflow model registry",
        fix=f"train one that passes the gate (mloop train {name}) or promote a version "
        f"(mloop promote {name} VERSION --reason ...)",
    )

"""Client side of a rollout: ask the running service to switch to a model tag, and check it did.

The service does the work (load, smoke test, atomic swap: see :mod:`serving.api.bento`); this module
turns its answer into a result or a loud :class:`RolloutFailed`. Every call goes through
:func:`mloop.core.http.request`: connection errors and 5xx (a service restarting, a worker being
respawned) are retried with backoff until a deadline; a 4xx (refused, unknown tag, auth) is final.
A rollout is idempotent (switching to the served tag again is harmless), so retrying it is safe.
"""

from __future__ import annotations

from typing import Any

import httpx

from mloop.core.errors import MloopError
from mloop.core.http import request
from mloop.core.web import bearer_header


class RolloutFailed(MloopError):
    """The service refused the new model (or could not be reached); the old model keeps serving."""


def _error_text(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:500]
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]
    if isinstance(data, dict):
        return str(data.get("error") or data)
    return str(data)[:500]


def _get(
    url: str, path: str, *, token: str | None, timeout: float, deadline: float
) -> httpx.Response:
    try:
        return request(
            "GET",
            f"{url.rstrip('/')}{path}",
            headers=bearer_header(token),
            timeout=timeout,
            deadline=deadline,
        )
    except httpx.HTTPError as exc:
        raise RolloutFailed(
            f"the prediction service at {url} is not reachable: {exc}", fix="start it: mloop serve"
        ) from exc


def models_of(body: Any) -> dict[str, dict[str, Any]]:
    """The ``models`` mapping of a ``GET /models`` answer (name -> fields); empty when malformed. Pure."""
    models = body.get("models") if isinstance(body, dict) else None
    if not isinstance(models, dict):
        return {}
    return {str(name): dict(info) for name, info in models.items() if isinstance(info, dict)}


def single_model_answer(body: Any) -> dict[str, dict[str, Any]]:
    """A ``GET /model`` answer of a single-model service as a ``GET /models`` mapping. Pure."""
    if not isinstance(body, dict) or not body.get("model_name"):
        return {}
    return {str(body["model_name"]): {**body, "loaded": True}}


def served_models(
    url: str, timeout: float = 10.0, deadline: float = 10.0, *, token: str | None = None
) -> dict[str, dict[str, Any]]:
    """Every model the service at ``url`` serves: name -> its ``GET /model`` fields plus ``loaded``.

    ``GET /models``; a service that predates it (404 there) is asked ``GET /model``. Raises
    :class:`RolloutFailed` when the service is unreachable or answers an error: an empty mapping
    always means "a service that serves nothing", never "no service".
    """
    resp = _get(url, "/models", token=token, timeout=timeout, deadline=deadline)
    if resp.status_code == 404:
        legacy = _get(url, "/model", token=token, timeout=timeout, deadline=deadline)
        if legacy.status_code == 200:
            return single_model_answer(legacy.json())
        resp = legacy
    if resp.status_code != 200:
        raise RolloutFailed(
            f"the prediction service at {url} did not list its models: {_error_text(resp)}"
        )
    return models_of(resp.json())


def current_model(
    url: str,
    name: str | None = None,
    timeout: float = 10.0,
    *,
    deadline: float = 10.0,
    token: str | None = None,
) -> dict[str, Any]:
    """What the service serves as model ``name`` (``GET /models/<name>``), or with no name its one
    model (``GET /model``). Raises :class:`RolloutFailed` when unreachable or not served."""
    if name is None:
        resp = _get(url, "/model", token=token, timeout=timeout, deadline=deadline)
        if resp.status_code != 200:
            raise RolloutFailed(
                f"the prediction service at {url} has no model loaded: {_error_text(resp)}"
            )
        return resp.json()
    models = served_models(url, timeout, deadline, token=token)
    if name not in models:
        raise RolloutFailed(
            f"the prediction service at {url} does not serve {name!r} (it serves {sorted(models)})"
        )
    return models[name]


def rollout(
    url: str,
    model_tag: str,
    *,
    token: str | None = None,
    timeout: float = 120.0,
    deadline: float = 60.0,
) -> dict[str, Any]:
    """Switch the service at ``url`` to BentoML model ``model_tag`` (replacing the served version of
    its model, or adding the model: answer ``"status"`` ``switched`` or ``added``); returns its
    answer. Connection errors and 5xx are retried until ``deadline`` seconds (``timeout``: one attempt).

    Raises :class:`RolloutFailed` when the service refuses (smoke test failed, unknown tag, schema
    change, auth) or is unreachable, and when ``GET /models/<name>`` does not report the new tag afterwards.
    """
    base = url.rstrip("/")
    headers = bearer_header(token)
    try:
        resp = request(
            "POST",
            f"{base}/admin/rollout",
            json={"model_tag": model_tag},
            headers=headers,
            timeout=timeout,
            deadline=deadline,
        )
    except httpx.HTTPError as exc:
        raise RolloutFailed(
            f"the prediction service at {url} is not reachable: {exc}", fix="start it: mloop serve"
        ) from exc
    if resp.status_code != 200:
        raise RolloutFailed(
            f"rollout of {model_tag} refused (HTTP {resp.status_code}): {_error_text(resp)}",
            where=base,
            fix="the previous model is still serving; fix the model or package it again",
        )
    result: dict[str, Any] = resp.json()
    current = result.get("current") if isinstance(result, dict) else None
    name = (
        str(current.get("model_name"))
        if isinstance(current, dict) and current.get("model_name")
        else model_tag.partition(":")[0]
    )
    now = current_model(base, name, deadline=deadline)
    if now.get("bentoml_tag") != model_tag:
        raise RolloutFailed(
            f"after the rollout the service reports {now.get('bentoml_tag')}, not {model_tag}",
            where=base,
        )
    return result

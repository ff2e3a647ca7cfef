"""Client side of a rollout: ask the running service to switch to a model tag, and check it did.

The service does the work (load, smoke test, atomic swap: see :mod:`serving.service`); this module
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


def _get(url: str, path: str, timeout: float, deadline: float) -> httpx.Response:
    try:
        return request("GET", f"{url.rstrip('/')}{path}", timeout=timeout, deadline=deadline)
    except httpx.HTTPError as exc:
        raise RolloutFailed(f"the prediction service at {url} is not reachable: {exc}", fix="start it: mloop serve") from exc


def served_models(url: str, timeout: float = 10.0, deadline: float = 10.0) -> dict[str, dict[str, Any]]:
    """Every model the service at ``url`` serves, by name (``GET /models``: the ``GET /model`` fields
    plus ``loaded``); retried until ``deadline`` seconds. Never ``{}`` for an unreachable service:
    that raises :class:`RolloutFailed`."""
    resp = _get(url, "/models", timeout, deadline)
    if resp.status_code != 200:
        raise RolloutFailed(f"the prediction service at {url} did not list its models: {_error_text(resp)}")
    models: dict[str, dict[str, Any]] = resp.json()["models"]
    return models


def current_model(url: str, name: str | None = None, timeout: float = 10.0, *, deadline: float = 10.0) -> dict[str, Any]:
    """What the service at ``url`` serves now: model ``name`` (``GET /models/<name>``), or the one
    model of a one-model service (``GET /model``; 409 with several); retried until ``deadline`` seconds."""
    if name is not None:
        resp = _get(url, f"/models/{name}", timeout, deadline)
        if resp.status_code != 200:
            raise RolloutFailed(f"the prediction service at {url} does not serve model {name!r}: {_error_text(resp)}")
        return resp.json()  # type: ignore[no-any-return]
    resp = _get(url, "/model", timeout, deadline)
    if resp.status_code != 200:
        raise RolloutFailed(f"the prediction service at {url} has no model loaded: {_error_text(resp)}")
    return resp.json()  # type: ignore[no-any-return]


def rollout(
    url: str, model_tag: str, *, token: str | None = None, timeout: float = 120.0, deadline: float = 60.0
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
            "POST", f"{base}/admin/rollout", json={"model_tag": model_tag}, headers=headers, timeout=timeout, deadline=deadline
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
    name = str(current.get("model_name")) if isinstance(current, dict) and current.get("model_name") else model_tag.partition(":")[0]
    now = current_model(base, name, deadline=deadline)
    if now.get("bentoml_tag") != model_tag:
        raise RolloutFailed(f"after the rollout the service reports {now.get('bentoml_tag')}, not {model_tag}", where=base)
    return result

"""One retried HTTP request, shared by every hand-written client (Prefect REST, events outbox,
prediction service, rollout).

Like Prefect's own client, a call is retried on connection errors, 5xx, 408 and 429 with
exponential backoff until a deadline; the caller then gets the last answer (or the last transport
error). :func:`retry_env` gives the environment that makes Prefect's and MLflow's own clients do
the same in every process the platform starts.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import httpx

RETRY_STATUS = frozenset({408, 429})
"""Retried besides every 5xx (as Prefect's own client does)."""


def backoff(attempt: int) -> float:
    """Seconds before retry ``attempt`` (0-based): 0.1, 0.2, 0.4, ... capped at 2 s. Pure."""
    return float(min(0.1 * 2**attempt, 2.0))


def plain_http_tls(url: str) -> dict[str, Any]:
    """For a plain ``http://`` URL, a TLS context that trusts no certificate: httpx builds its default one
    (certifi's CA bundle, about 25 ms of CPU) for every request otherwise, and none is ever used on a
    plain connection (no redirects are followed; one to https would fail closed). Empty for https. Pure."""
    if not url.lower().startswith("http://"):
        return {}
    import ssl

    return {"verify": ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)}


def retryable(status: int) -> bool:
    """True for an answer worth another try (5xx, 408, 429). Pure."""
    return status >= 500 or status in RETRY_STATUS


def request(
    method: str,
    url: str,
    *,
    deadline: float = 15.0,
    timeout: float = 10.0,
    delays: Callable[[int], float] = backoff,
    **kwargs: Any,
) -> httpx.Response:
    """One HTTP request, retried on connection errors, 5xx, 408 and 429 until ``deadline`` seconds.

    Returns the last response (the caller decides about its status); re-raises the last
    transport error when the deadline passes without an answer. ``deadline=0``: one attempt.
    """
    end = time.monotonic() + deadline
    attempt = 0
    while True:
        try:
            response = httpx.request(
                method, url, timeout=timeout, **{**plain_http_tls(url), **kwargs}
            )
            if not retryable(response.status_code):
                return response
        except httpx.TransportError:
            if time.monotonic() + delays(attempt) > end:
                raise
        else:
            if time.monotonic() + delays(attempt) > end:
                return response
        time.sleep(delays(attempt))
        attempt += 1


def basic_auth_header(auth_string: str) -> dict[str, str]:
    """``Authorization: Basic base64(auth_string)``, as Prefect's client sends its ``api.auth_string``. Pure."""
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()}


def retry_env() -> dict[str, str]:
    """Retry settings of Prefect's and MLflow's own HTTP clients for a child's environment. Pure.

    Prefect retries 429/502/503 (and connection errors once it has connected) by itself; 500 and
    504 are added, with more attempts, so a server restart of ~20 s is ridden out. MLflow's REST
    client retries 429/5xx with backoff (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``).
    """
    return {
        "PREFECT_CLIENT_MAX_RETRIES": "8",
        "PREFECT_CLIENT_RETRY_EXTRA_CODES": "500,504",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "8",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }

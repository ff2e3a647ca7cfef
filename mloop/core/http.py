"""One retried HTTP request, shared by every hand-written client (Prefect REST, events outbox,
prediction service, rollout).

Like Prefect's own client, a call is retried (tenacity) on connection errors, 5xx, 408 and 429
with exponential backoff until a deadline; the caller then gets the last answer (or the last transport
error). :func:`retry_env` gives the environment that makes Prefect's and MLflow's own clients do
the same in every process the platform starts.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from tenacity import RetryCallState

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
    # imported here: tenacity costs ~80 ms (it loads asyncio and tornado) and the CLI must start fast
    from tenacity import Retrying, retry_if_exception_type, retry_if_result, stop_before_delay

    retrying = Retrying(
        retry=retry_if_exception_type(httpx.TransportError)
        | retry_if_result(lambda response: retryable(response.status_code)),
        wait=lambda state: delays(state.attempt_number - 1),
        stop=stop_before_delay(deadline),  # no sleep that would end past the deadline
        retry_error_callback=_last_outcome,
    )
    return retrying(
        httpx.request, method, url, timeout=timeout, **{**plain_http_tls(url), **kwargs}
    )


def _last_outcome(state: RetryCallState) -> httpx.Response:
    """The last attempt's response, or its transport error raised: what a caller gets at the deadline."""
    if state.outcome is None:  # tenacity calls this only after an attempt
        raise AssertionError("no attempt was made")
    return state.outcome.result()


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

"""The light HTTP client's retries: connection errors and 5xx are retried with backoff until a deadline."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from mloop.platform import client
from mloop.platform.client import PrefectApi, backoff, request


class Script:
    """Stands in for ``httpx.request``: answers (or raises) from a list, counting calls."""

    def __init__(self, *outcomes: int | Exception) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0

    def __call__(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, Exception):
            raise outcome
        return httpx.Response(outcome, json={"ok": outcome}, request=httpx.Request(method, url))


def no_wait(attempt: int) -> float:
    return 0.0


def test_retries_connection_errors_and_5xx_until_an_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(httpx.ConnectError("refused"), 503, 500, 200)
    monkeypatch.setattr(client.httpx, "request", script)
    assert request("GET", "http://x/api/health", delays=no_wait).status_code == 200
    assert script.calls == 4


def test_client_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    script = Script(404, 200)
    monkeypatch.setattr(client.httpx, "request", script)
    assert request("GET", "http://x/api/work_pools/p", delays=no_wait).status_code == 404
    assert script.calls == 1


def test_deadline_ends_the_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = Script(httpx.ConnectError("refused"))
    monkeypatch.setattr(client.httpx, "request", refused)
    with pytest.raises(httpx.ConnectError):
        request("GET", "http://x/api/health", deadline=0.3, delays=lambda n: 0.05)
    assert 2 <= refused.calls <= 8
    failing = Script(502)
    monkeypatch.setattr(client.httpx, "request", failing)
    assert request("GET", "http://x/api/health", deadline=0.0, delays=no_wait).status_code == 502  # one attempt
    assert failing.calls == 1


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]


def test_prefect_api_is_healthy_only_when_the_server_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client.httpx, "request", Script(httpx.ConnectError("refused")))
    assert not PrefectApi("http://x/api").healthy()
    monkeypatch.setattr(client.httpx, "request", Script(200))
    assert PrefectApi("http://x/api/").healthy()


def test_post_event_accepts_an_empty_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server answers POST /events with 204 and no body."""
    monkeypatch.setattr(client.httpx, "request", lambda method, url, **kw: httpx.Response(204, request=httpx.Request(method, url)))
    assert len(PrefectApi("http://x/api").post_event("mloop.drift.detected", "mloop.model.m", {})) == 36

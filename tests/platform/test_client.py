"""The light HTTP clients' retries: connection errors and 5xx are retried with backoff until a deadline
(the Prefect REST client and the prediction service client)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mloop.core.processes import free_port
from mloop.platform import client
from mloop.platform.client import PrefectApi, ServingClient, backoff, request
from tests.core.test_outbox import DROP, ScriptedServer, serve


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
    assert (
        request("GET", "http://x/api/health", deadline=0.0, delays=no_wait).status_code == 502
    )  # one attempt
    assert failing.calls == 1


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0]


def test_prefect_api_is_healthy_only_when_the_server_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client.httpx, "request", Script(httpx.ConnectError("refused")))
    assert not PrefectApi("http://x/api").healthy()
    monkeypatch.setattr(client.httpx, "request", Script(200))
    assert PrefectApi("http://x/api/").healthy()


def test_post_event_accepts_an_empty_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server answers POST /events with 204 and no body."""
    monkeypatch.setattr(
        client.httpx,
        "request",
        lambda method, url, **kw: httpx.Response(204, request=httpx.Request(method, url)),
    )
    assert (
        len(PrefectApi("http://x/api").post_event("mloop.drift.detected", "mloop.model.m", {}))
        == 36
    )


# -- the prediction service client, against a flaky loopback server (tests/core/test_outbox.py)


@contextlib.contextmanager
def _serving(
    *script: int, body: Any = None, deadline: float = 5.0
) -> Iterator[tuple[ScriptedServer, ServingClient]]:
    data = json.dumps(body if body is not None else {}).encode()
    with serve(ScriptedServer(list(script), body=data)) as server:
        yield server, ServingClient(server.url, token="t0ken", deadline=deadline)


def test_predict_is_retried_on_overload_and_dropped_connections() -> None:
    answer = [{"prediction_id": "p1", "model_version": "1"}]
    with _serving(503, DROP, 200, body=answer) as (server, serving):
        assert serving.predict([{"x": 1}]) == answer
        assert [(s.method, s.path) for s in server.seen] == [("POST", "/predict")] * 3
        assert all(s.json() == {"records": [{"x": 1}]} for s in server.seen)
        assert all(s.headers["Authorization"] == "Bearer t0ken" for s in server.seen)


def test_predict_gives_up_at_the_deadline_with_the_last_answer() -> None:
    with _serving(503, deadline=0.3) as (server, serving):
        with pytest.raises(httpx.HTTPStatusError, match="503"):
            serving.predict([{"x": 1}])
        # At least the first attempt; how many more fit in 0.3 s depends on the machine's load (a busy CI
        # machine answered the first one after the deadline), so only the stop is asserted, not the count.
        assert 1 <= len(server.seen) <= 6


def test_a_client_error_is_not_retried() -> None:
    with _serving(422, 200) as (server, serving):
        with pytest.raises(httpx.HTTPStatusError, match="422"):
            serving.predict([{"x": 1}])
        assert len(server.seen) == 1


def test_feedback_is_retried() -> None:
    with _serving(502, 200, body={"recorded": 1, "duplicates": 0}) as (server, serving):
        assert serving.feedback([{"prediction_id": "p1", "label": 1}])["recorded"] == 1
        assert len(server.seen) == 2


def test_served_model_rides_out_a_blip_and_is_none_while_down() -> None:
    with _serving(DROP, 200, body={"model_version": "3"}) as (server, serving):
        assert serving.served_model() == {"model_version": "3"}
        assert len(server.seen) == 2
    nothing = ServingClient(f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    assert nothing.served_model(deadline=0.2) is None
    assert time.monotonic() - started < 3


def test_served_models_lists_every_model_or_the_one_of_an_older_service() -> None:
    both = {
        "models": {
            "loans": {"model_version": "3", "loaded": True},
            "rates": {"model_version": "1", "loaded": False},
        }
    }
    with _serving(DROP, 200, body=both) as (server, serving):
        assert serving.served_models() == both["models"]
        assert [(s.method, s.path) for s in server.seen] == [("GET", "/models")] * 2
    with _serving(404, 200, body={"model_name": "loans", "model_version": "3"}) as (
        server,
        serving,
    ):
        assert serving.served_models() == {
            "loans": {"model_name": "loans", "model_version": "3", "loaded": True}
        }
        assert [s.path for s in server.seen] == ["/models", "/model"]
    with _serving(500, body={"error": "boom"}) as (server, serving):
        assert serving.served_models(deadline=0.2) is None
    assert ServingClient(f"http://127.0.0.1:{free_port()}").served_models(deadline=0.2) is None


def test_send_traffic_counts_labels_a_retry_had_already_recorded() -> None:
    """A retried /feedback answers "duplicate" for labels its lost first attempt recorded: they count."""
    import pandas as pd

    frame = pd.DataFrame(
        {"x": [1, 2], "target": [0, 1], "event_time": ["2024-01-01", "2024-01-02"]}
    )
    answers = [
        {"prediction_id": "a", "model_version": "1"},
        {"prediction_id": "b", "model_version": "1"},
    ]

    class Canned(ServingClient):
        def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return answers

        def feedback(
            self, labels: list[dict[str, Any]], token: str | None = None
        ) -> dict[str, Any]:
            return {"recorded": 1, "duplicates": 1}

    assert Canned("http://unused").send_traffic(frame, with_feedback=True) == (2, {"1"})

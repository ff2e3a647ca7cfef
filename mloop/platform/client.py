"""Light HTTP clients of a running platform: its Prefect REST API and its prediction service.

:class:`PrefectApi` is the one hand-written Prefect client. It exists for start-up time: ``mloop
status``/``up``/``down``, the CLI's "is a server there?" check, the demo, the loop benchmark and
the platform tests read a few JSON documents and must not import Prefect (about 2 s) nor touch
the calling process's own Prefect settings (the tests' process talks to a session server of its
own). Code that imports Prefect anyway uses Prefect's client (``get_client(sync_client=True)``)
instead; mloop's own events go through the durable outbox (:mod:`mloop.core.outbox`). Like
Prefect's client, every call is retried on connection errors and 5xx answers with exponential
backoff until a deadline (:func:`request`).

Both authenticate when the platform requires it (``Settings.auth``, the default): the Prefect
client sends ``Authorization: Basic base64(auth string)`` (Prefect's server basic auth; its
``/api/health`` stays open), the serving client ``Authorization: Bearer <token>`` on every request.

:class:`ServingClient` talks to the BentoML prediction service (``/models``, ``/model``, ``/predict``,
``/feedback``), never to Prefect. Nothing is cached; every call is one request (plus retries).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

import httpx

from mloop.core.http import RETRY_STATUS, backoff, basic_auth_header, request
from mloop.core.outbox import build_event
from mloop.core.processes import poll
from mloop.core.web import bearer_header

__all__ = [
    "RETRY_STATUS",
    "PrefectApi",
    "ServingClient",
    "backoff",
    "basic_auth_header",
    "parse_time",
    "request",
    "records_of",
    "wait_for",
]

if TYPE_CHECKING:
    from mloop.core.settings import Settings

T = TypeVar("T")

TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


def parse_time(text: object) -> datetime | None:
    """An ISO timestamp from the Prefect API (None when missing or unreadable). Pure."""
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def records_of(frame: Any) -> list[dict[str, Any]]:
    """The feature records of a generated frame (without ``target`` and ``event_time``), as JSON sends them."""
    return list(json.loads(frame.drop(columns=["target", "event_time"]).to_json(orient="records")))


def wait_for(
    check: Callable[[], T | None | bool], timeout: float, what: str, every: float = 1.0
) -> T:
    """Poll ``check`` until it returns something truthy (:func:`~mloop.core.processes.poll`); raise
    TimeoutError naming ``what``."""
    value = poll(check, timeout, every)
    if not value:
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
    # a truthy bool only comes from a check typed `-> bool`, whose callers read no value from it
    return cast(T, value)


class PrefectApi:
    """The REST API of one Prefect server (``api`` is its URL, ending in ``/api``); JSON in, JSON out.

    ``auth_string`` (``user:password``) is the server's basic auth; None takes
    ``PREFECT_API_AUTH_STRING`` from the environment, ``""`` sends none.
    """

    def __init__(self, api: str, *, deadline: float = 15.0, auth_string: str | None = None) -> None:
        self.api = api.rstrip("/")
        self.deadline = deadline
        if auth_string is None:
            auth_string = os.environ.get("PREFECT_API_AUTH_STRING", "")
        self._headers = basic_auth_header(auth_string) if auth_string else {}

    @classmethod
    def of(cls, settings: Settings, *, deadline: float = 15.0) -> PrefectApi:
        """The platform's own server (``settings.prefect_api_url``) with the platform's auth string, if any."""
        auth = settings.client_auth_env().get("PREFECT_API_AUTH_STRING", "")
        return cls(settings.prefect_api_url, deadline=deadline, auth_string=auth)

    def __repr__(self) -> str:  # the auth header never shows
        return f"PrefectApi({self.api!r}, auth={bool(self._headers)})"

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return request(
            method, f"{self.api}{path}", deadline=self.deadline, headers=self._headers, **kwargs
        )

    def _json(self, method: str, path: str, body: Any = None) -> Any:
        resp = self._request(method, path, json=body)
        resp.raise_for_status()
        return resp.json() if resp.content else None  # 204: nothing to decode

    def healthy(self, *, deadline: float = 0.0, timeout: float = 2.0) -> bool:
        """True when ``/health`` answers 200 (one attempt unless ``deadline`` allows retries)."""
        try:
            resp = request(
                "GET",
                f"{self.api}/health",
                deadline=deadline,
                timeout=timeout,
                headers=self._headers,
            )
            return resp.status_code == 200
        except httpx.HTTPError:
            return False

    # -- flow runs and deployments

    def run_deployment(
        self, name: str, parameters: dict[str, Any], *, work_queue: str | None = None
    ) -> str:
        """Create a flow run of deployment ``<flow>/<deployment>``; returns its id (a worker runs it). With
        ``work_queue``, the run waits in that queue of the pool (only a worker polling it takes it)."""
        flow, dep = name.split("/")
        deployment = self._json("GET", f"/deployments/name/{flow}/{dep}")
        body: dict[str, Any] = {"parameters": parameters}
        if work_queue is not None:
            body["work_queue_name"] = work_queue
        run = self._json("POST", f"/deployments/{deployment['id']}/create_flow_run", body)
        return str(run["id"])

    def flow_runs(
        self, flow_name: str | None = None, limit: int = 200, *, newest_first: bool = False
    ) -> list[dict[str, Any]]:
        """Flow runs by expected start (oldest first unless ``newest_first``), of one flow when ``flow_name`` is given."""
        body: dict[str, Any] = {
            "sort": "EXPECTED_START_TIME_DESC" if newest_first else "EXPECTED_START_TIME_ASC",
            "limit": limit,
        }
        if flow_name:
            body["flows"] = {"name": {"any_": [flow_name]}}
        return list(self._json("POST", "/flow_runs/filter", body))

    def flow_runs_in_states(
        self, states: Sequence[str], *, pool: str, limit: int = 200
    ) -> list[dict[str, Any]]:
        """The flow runs of work pool ``pool`` whose state type is one of ``states`` (oldest first)."""
        body = {
            "flow_runs": {"state": {"type": {"any_": list(states)}}},
            "work_pools": {"name": {"any_": [pool]}},
            "sort": "EXPECTED_START_TIME_ASC",
            "limit": limit,
        }
        return list(self._json("POST", "/flow_runs/filter", body))

    def subflow_runs_in_states(
        self, states: Sequence[str], *, limit: int = 200
    ) -> list[dict[str, Any]]:
        """The flow runs started from inside another flow run (subflows) whose state type is one of ``states``."""
        body = {
            "flow_runs": {
                "state": {"type": {"any_": list(states)}},
                "parent_task_run_id": {"is_null_": False},
            },
            "sort": "EXPECTED_START_TIME_ASC",
            "limit": limit,
        }
        return list(self._json("POST", "/flow_runs/filter", body))

    def task_runs_by_id(self, run_ids: list[str]) -> list[dict[str, Any]]:
        """The task runs with these ids (one request; unknown ids are simply absent)."""
        body = {"task_runs": {"id": {"any_": list(run_ids)}}, "limit": max(len(run_ids), 1)}
        return list(self._json("POST", "/task_runs/filter", body))

    def set_flow_run_state(self, run_id: str, state_type: str, message: str) -> str:
        """Propose state ``state_type`` (``CRASHED``, ...) for a flow run; returns the server's verdict
        (``ACCEPT``, ``REJECT``, ``ABORT`` or ``WAIT``)."""
        name = state_type.capitalize()
        body = {"state": {"type": state_type, "name": name, "message": message}}
        return str(self._json("POST", f"/flow_runs/{run_id}/set_state", body).get("status", ""))

    def flow_runs_by_id(self, run_ids: list[str]) -> list[dict[str, Any]]:
        """The flow runs with these ids (one request; unknown ids are simply absent)."""
        body = {"flow_runs": {"id": {"any_": list(run_ids)}}, "limit": max(len(run_ids), 1)}
        return list(self._json("POST", "/flow_runs/filter", body))

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/flow_runs/{run_id}"))

    def wait_run(self, run_id: str, timeout: float = 300) -> dict[str, Any]:
        """Wait until the flow run reaches a terminal state; returns the run."""
        return wait_for(
            lambda: (fr := self.flow_run(run_id)) and fr["state_type"] in TERMINAL_STATES and fr,
            timeout,
            f"flow run {run_id}",
        )

    def flow_names(self) -> dict[str, str]:
        """Flow id -> flow name."""
        return {f["id"]: f["name"] for f in self._json("POST", "/flows/filter", {})}

    def deployments(self) -> list[dict[str, Any]]:
        """Every deployment (``id``, ``name``, ``flow_id``, ...)."""
        return list(self._json("POST", "/deployments/filter", {}))

    # -- work pools

    def work_pool_exists(self, pool: str) -> bool:
        resp = self._request("GET", f"/work_pools/{pool}")
        if resp.status_code == 404:
            return False
        resp.raise_for_status()
        return True

    def ensure_work_queue(self, pool: str, queue: str) -> None:
        """Create work queue ``queue`` in ``pool`` unless it exists."""
        if self._request("GET", f"/work_pools/{pool}/queues/{queue}").status_code == 200:
            return
        resp = self._request("POST", f"/work_pools/{pool}/queues", json={"name": queue})
        if resp.status_code != 409:  # 409: created meanwhile by another worker
            resp.raise_for_status()

    def online_workers(self, pool: str) -> set[str]:
        """Names of the pool's workers whose heartbeat the server still counts as ONLINE."""
        workers = self._json("POST", f"/work_pools/{pool}/workers/filter", {"limit": 50})
        return {w["name"] for w in workers if w.get("status", "ONLINE") == "ONLINE"}

    # -- events

    def post_event(self, event: str, resource_id: str, payload: dict[str, Any]) -> str:
        """Send one event (as ``emit_event`` would, without importing Prefect); returns its id."""
        body = [build_event(event, {"prefect.resource.id": resource_id}, payload)]
        self._json("POST", "/events", body)
        return str(body[0]["id"])

    def events(
        self, *, names: list[str] | None = None, prefixes: list[str] | None = None, limit: int = 1
    ) -> list[dict[str, Any]]:
        """The newest events with one of ``names`` or name ``prefixes``, newest first."""
        event_filter: dict[str, Any] = {}
        if names:
            event_filter["name"] = names
        if prefixes:
            event_filter["prefix"] = prefixes
        page = self._json(
            "POST",
            "/events/filter",
            {"filter": {"event": event_filter, "order": "DESC"}, "limit": limit},
        )
        return list(page.get("events", []))


class ServingClient:
    """HTTP client of the BentoML prediction service at ``url`` (not Prefect).

    ``token``: the platform's bearer token (``Settings.bearer_token()``), sent on every request.
    Every call goes through :func:`request`: connection errors, 5xx (BentoML answers 503 when
    overloaded), 408 and 429 are retried with backoff until ``deadline`` seconds. A retried
    ``POST /predict`` whose first attempt was answered by the server but never reached us (the
    worker died mid-answer) logs those rows twice, under different prediction ids; the caller holds
    only the ids of the answer it got, so the first rows simply never get feedback. That is accepted:
    the alternative is losing the request. ``POST /feedback`` is idempotent (the first label per
    prediction id wins; sending the same label again counts as a duplicate, not a conflict).
    """

    def __init__(self, url: str, token: str | None = None, *, deadline: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.deadline = deadline
        self._token = token
        self._headers = bearer_header(token)

    def __repr__(self) -> str:  # the token never shows
        return f"ServingClient({self.url!r}, auth={bool(self._headers)})"

    def served_model(self, *, deadline: float = 2.0) -> dict[str, Any] | None:
        """What the service reports it is serving (GET /model), or None while it is down.

        ``deadline`` is short: callers poll this to learn whether the service is up.
        """
        try:
            r = request(
                "GET", f"{self.url}/model", headers=self._headers, timeout=3, deadline=deadline
            )
            return dict(r.json()) if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def served_models(self, *, deadline: float = 2.0) -> dict[str, dict[str, Any]] | None:
        """Every model the service holds (GET /models: name -> its /model fields and ``loaded``), or
        None while it is down or answers an error. A service without ``/models`` (404) is asked
        ``GET /model`` (its one model): :func:`serving.control.rollout_client.served_models` with a short
        ``deadline``, as for :meth:`served_model`."""
        from serving.control.rollout_client import (  # the one GET /models reader (light)
            RolloutFailed,
            served_models,
        )

        try:
            return served_models(self.url, timeout=3, deadline=deadline, token=self._token)
        except (RolloutFailed, ValueError):
            return None

    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """POST /predict (retried on transient errors, see the class doc); the answers in record order."""
        r = request(
            "POST",
            f"{self.url}/predict",
            json={"records": records},
            headers=self._headers,
            timeout=60,
            deadline=self.deadline,
        )
        r.raise_for_status()
        return list(r.json())

    def feedback(self, labels: list[dict[str, Any]], token: str | None = None) -> dict[str, Any]:
        """POST /feedback (retried, idempotent); ``token`` overrides the client's own."""
        headers = bearer_header(token) if token else self._headers
        r = request(
            "POST",
            f"{self.url}/feedback",
            json={"labels": labels},
            headers=headers,
            timeout=60,
            deadline=self.deadline,
        )
        r.raise_for_status()
        return dict(r.json())

    def send_traffic(
        self, frame: Any, *, with_feedback: bool, batch: int = 250
    ) -> tuple[int, set[str]]:
        """POST a generated frame to /predict in batches (and its true labels to /feedback).

        Returns (answered, model versions seen); raises when /feedback keeps fewer labels than sent
        (a label our own retried POST had already recorded comes back as a duplicate: it is kept).
        """
        answered, versions = 0, set()
        for start in range(0, len(frame), batch):
            chunk = frame.iloc[start : start + batch]
            answers = self.predict(records_of(chunk))
            versions |= {str(a["model_version"]) for a in answers}
            if with_feedback:
                labels = [
                    {"prediction_id": a["prediction_id"], "label": int(y)}
                    for a, y in zip(answers, chunk["target"], strict=True)
                ]
                answer = self.feedback(labels)
                recorded = int(answer["recorded"]) + int(answer.get("duplicates", 0))
                if recorded != len(labels):
                    raise RuntimeError(f"/feedback recorded {recorded} of {len(labels)} labels")
            answered += len(answers)
        return answered, versions

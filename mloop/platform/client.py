"""A small client of a running platform over HTTP only: the Prefect REST API and the prediction service.

Used by the demo, the loop benchmark and the platform tests: they drive a platform started by
``mloop up`` exactly as an outside user would, without touching the calling process's own Prefect
settings. Nothing is cached; every call is one request.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def records_of(frame: Any) -> list[dict[str, Any]]:
    """The feature records of a generated frame (without ``target`` and ``event_time``), as JSON sends them."""
    import json

    return json.loads(frame.drop(columns=["target", "event_time"]).to_json(orient="records"))


def wait_for(check: Callable[[], T | None | bool], timeout: float, what: str, every: float = 1.0) -> T:
    """Poll ``check`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


class PlatformClient:
    """HTTP client of one platform: ``api`` is the Prefect API URL, ``serve_url`` the prediction service."""

    def __init__(self, api: str, serve_url: str, webhook_url: str = "") -> None:
        self.api = api.rstrip("/")
        self.serve_url = serve_url.rstrip("/")
        self.webhook_url = webhook_url.rstrip("/")

    # -- Prefect

    def run_deployment(self, name: str, parameters: dict[str, Any]) -> str:
        """Create a flow run of deployment ``<flow>/<deployment>``; returns its id (the worker runs it)."""
        flow, dep = name.split("/")
        d = httpx.get(f"{self.api}/deployments/name/{flow}/{dep}", timeout=10)
        d.raise_for_status()
        r = httpx.post(
            f"{self.api}/deployments/{d.json()['id']}/create_flow_run", json={"parameters": parameters}, timeout=10
        )
        r.raise_for_status()
        return str(r.json()["id"])

    def flow_runs(self, flow_name: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Flow runs (oldest first), of one flow when ``flow_name`` is given."""
        body: dict[str, Any] = {"sort": "EXPECTED_START_TIME_ASC", "limit": limit}
        if flow_name:
            body["flows"] = {"name": {"any_": [flow_name]}}
        r = httpx.post(f"{self.api}/flow_runs/filter", json=body, timeout=10)
        r.raise_for_status()
        return list(r.json())

    def flow_names(self) -> dict[str, str]:
        r = httpx.post(f"{self.api}/flows/filter", json={}, timeout=10)
        r.raise_for_status()
        return {f["id"]: f["name"] for f in r.json()}

    def flow_run(self, run_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.api}/flow_runs/{run_id}", timeout=10)
        r.raise_for_status()
        return dict(r.json())

    def wait_run(self, run_id: str, timeout: float = 300) -> dict[str, Any]:
        """Wait until the flow run reaches a terminal state; returns the run."""
        return wait_for(
            lambda: (fr := self.flow_run(run_id)) and fr["state_type"] in TERMINAL_STATES and fr,
            timeout,
            f"flow run {run_id}",
        )

    def post_event(self, event: str, resource_id: str, payload: dict[str, Any]) -> str:
        event_id = str(uuid.uuid4())
        body = [
            {
                "id": event_id,
                "occurred": datetime.now(UTC).isoformat(),
                "event": event,
                "resource": {"prefect.resource.id": resource_id},
                "payload": payload,
            }
        ]
        r = httpx.post(f"{self.api}/events", json=body, timeout=10)
        r.raise_for_status()
        return event_id

    # -- prediction service

    def served_model(self) -> dict[str, Any] | None:
        """What the service reports it is serving (GET /model), or None while it is down."""
        try:
            r = httpx.get(f"{self.serve_url}/model", timeout=3)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        r = httpx.post(f"{self.serve_url}/predict", json={"records": records}, timeout=60)
        r.raise_for_status()
        return list(r.json())

    def send_traffic(self, frame: Any, *, with_feedback: bool, batch: int = 250) -> tuple[int, set[str]]:
        """POST a generated frame to /predict in batches (and its true labels to /feedback).

        Returns (answered, model versions seen); raises when /feedback records fewer labels than sent.
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
                recorded = self.feedback(labels)["recorded"]
                if recorded != len(labels):
                    raise RuntimeError(f"/feedback recorded {recorded} of {len(labels)} labels")
            answered += len(answers)
        return answered, versions

    def feedback(self, labels: list[dict[str, Any]], token: str | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = httpx.post(f"{self.serve_url}/feedback", json={"labels": labels}, headers=headers, timeout=60)
        r.raise_for_status()
        return dict(r.json())

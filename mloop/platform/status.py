"""``mloop status``: services, models, the last drift verdict and recent flow runs of the local platform.

Fast by design: plain HTTP (the light Prefect client, MLflow's REST API, the service's ``/model``),
no Prefect import; every part answers "nothing" while its server is down. With auth on, each
request carries the platform's credentials (Prefect basic auth, MLflow admin user, bearer token).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel, Field

from mloop.core.http import request
from mloop.core.outbox import outbox_dir, pending_count
from mloop.core.processes import read_pid
from mloop.core.settings import Settings
from mloop.platform.client import PrefectApi, ServingClient
from mloop.platform.services import SERVICE_ORDER, ServiceState, pid_files, urls

DRIFT_EVENT_PREFIXES = ["mloop.drift.", "mloop.quality."]


class FlowRunInfo(BaseModel):
    name: str
    flow: str
    deployment: str | None = None
    state: str
    start_time: str | None = None
    end_time: str | None = None


class ModelStatus(BaseModel):
    name: str
    champion: str | None = None
    challenger: str | None = None
    deployed: str | None = None


class PlatformStatus(BaseModel):
    home: str
    urls: dict[str, str]
    services: list[ServiceState]
    models: list[ModelStatus] = Field(default_factory=list)
    last_drift: dict[str, Any] | None = None
    recent_flow_runs: list[FlowRunInfo] = Field(default_factory=list)
    queued_events: int = Field(default=0, description="Events waiting in the outbox for the Prefect server.")
    notes: list[str] = Field(default_factory=list)


def service_states(settings: Settings) -> list[ServiceState]:
    """Every known service and every pid file: running when its pid file names a live process."""
    run_dir = settings.state.run
    u = urls(settings)
    names = list(SERVICE_ORDER) + [n for n in pid_files(run_dir) if n not in SERVICE_ORDER]
    where = {"prefect-server": u["prefect_ui"], "mlflow": u["mlflow_ui"], "webhook": u["webhook"], "serve": u["serving"]}
    out = []
    for name in names:
        pid = read_pid(run_dir, name)
        out.append(
            ServiceState(name=name, pid=pid, running=pid is not None, url=where.get(name, ""), log=str(run_dir / f"{name}.log"))
        )
    return out


def _prefect(settings: Settings) -> PrefectApi | None:
    """The platform's Prefect API when its server answers (one quick try), else None."""
    api = PrefectApi.of(settings, deadline=5.0)
    return api if api.healthy(timeout=2.0) else None


def flow_run_infos(runs: list[dict[str, Any]], flows: dict[str, str], deployments: dict[str, str]) -> list[FlowRunInfo]:
    """Flow-run rows from the REST API's JSON (``flows``, ``deployments``: id -> name). Pure."""
    return [
        FlowRunInfo(
            name=r["name"],
            flow=flows.get(r["flow_id"], "?"),
            deployment=deployments.get(r.get("deployment_id") or ""),
            state=(r.get("state") or {}).get("name") or r.get("state_type") or "?",
            start_time=r.get("start_time"),
            end_time=r.get("end_time"),
        )
        for r in runs
    ]


def recent_flow_runs(settings: Settings, limit: int = 10) -> list[FlowRunInfo]:
    """The newest flow runs on the platform's Prefect server (empty when it is down)."""
    api = _prefect(settings)
    if api is None:
        return []
    try:
        deployments = {d["id"]: d["name"] for d in api.deployments()}
        return flow_run_infos(api.flow_runs(limit=limit, newest_first=True), api.flow_names(), deployments)
    except (httpx.HTTPError, ValueError):
        return []


def last_drift_event(settings: Settings) -> dict[str, Any] | None:
    """The newest mloop.drift.* / quality event the Prefect server has seen (None if none or down)."""
    api = _prefect(settings)
    if api is None:
        return None
    try:
        events = api.events(prefixes=DRIFT_EVENT_PREFIXES, limit=1)
    except (httpx.HTTPError, ValueError):
        return None
    if not events:
        return None
    e = events[0]
    return {"event": e["event"], "occurred": e["occurred"], "resource": e["resource"].get("prefect.resource.id"), "payload": e.get("payload", {})}


def last_drift_verdict(settings: Settings) -> dict[str, Any] | None:
    """The newest drift check's verdict (``<reports>/<model>/<stamp>/result.json``), drift or not.

    Falls back to the newest drift/quality event on the Prefect server when no report exists.
    """
    reports = sorted(settings.state.reports.glob("*/*/result.json"), key=lambda p: p.stat().st_mtime)
    if not reports:
        return last_drift_event(settings)
    try:
        r = json.loads(reports[-1].read_text())
    except (OSError, ValueError):
        return last_drift_event(settings)
    quality = r.get("quality") or {}
    return {
        "model": r.get("model_name"),
        "version": r.get("model_version"),
        "verdict": "drift" if r.get("dataset_drift") else "no drift",
        "drift_share": round(float(r.get("drift_share") or 0.0), 4),
        "threshold": r.get("drift_share_threshold"),
        "drifted_columns": r.get("drifted_columns", []),
        "quality_degraded": quality.get("degraded") if isinstance(quality, dict) else None,
        "report": r.get("report_path") or str(reports[-1].with_name("drift.html")),
        "checked_at": datetime.fromtimestamp(reports[-1].stat().st_mtime, UTC).isoformat(),
    }


def model_statuses(settings: Settings) -> list[ModelStatus]:
    """Champion/challenger per registered model and the version the service is serving.

    Asks the running MLflow server's REST API (fast); falls back to the tracking store itself.
    """
    deployed = served_version(settings)
    rows: list[tuple[str, dict[str, str]]]
    auth = settings.client_auth_env()
    user, password = auth.get("MLFLOW_TRACKING_USERNAME"), auth.get("MLFLOW_TRACKING_PASSWORD")
    try:
        resp = request(
            "GET",
            f"{urls(settings)['mlflow_ui']}/api/2.0/mlflow/registered-models/search",
            params={"max_results": 100},
            auth=(user, password) if user and password else None,
            timeout=5,
            deadline=2.0,
        )
        resp.raise_for_status()
        registered = resp.json().get("registered_models", [])
        # Most recently changed model first (the one `up` serves when several have a champion).
        registered.sort(key=lambda rm: -int(rm.get("last_updated_timestamp", 0)))
        rows = [(rm["name"], {a["alias"]: a["version"] for a in rm.get("aliases", [])}) for rm in registered]
    except (httpx.HTTPError, ValueError, KeyError):
        if not settings.state.mlflow_db.exists() and settings.mlflow_tracking_uri is None:
            return []
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=settings.tracking_uri)
        rows = [(rm.name, dict(getattr(rm, "aliases", {}) or {})) for rm in client.search_registered_models()]
    return [
        ModelStatus(
            name=name,
            champion=aliases.get("champion"),
            challenger=aliases.get("challenger"),
            deployed=deployed.get(name),
        )
        for name, aliases in rows
    ]


def served_version(settings: Settings) -> dict[str, str]:
    """Model name -> version the prediction service reports (GET /model); empty when it is down."""
    info = ServingClient(urls(settings)["serving"], token=settings.bearer_token()).served_model(deadline=0.5) or {}
    name = info.get("model_name") or info.get("name")
    version = info.get("model_version") or info.get("version")
    return {str(name): str(version)} if name and version is not None else {}


def status(settings: Settings, *, runs: int = 10) -> PlatformStatus:
    """URLs, services, champion/deployed versions, last drift verdict, recent flow runs."""
    notes: list[str] = []
    try:
        models = model_statuses(settings)
    except Exception as exc:  # the registry may be mid-migration or locked: status still answers
        models = []
        notes.append(f"model registry unavailable: {exc}")
    queued = pending_count(settings.state.root)
    if queued:
        notes.append(f"{queued} event(s) queued in {outbox_dir(settings.state.root)}: "
                     "delivered when the Prefect server answers (`mloop up` delivers them)")
    return PlatformStatus(
        home=str(settings.state.root),
        urls=urls(settings),
        services=service_states(settings),
        models=models,
        last_drift=last_drift_verdict(settings),
        recent_flow_runs=recent_flow_runs(settings, runs),
        queued_events=queued,
        notes=notes,
    )

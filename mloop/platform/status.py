"""``mloop status``: services, every model, the last drift verdict and recent flow runs of the local platform.

The models table has one row per registered model: champion and challenger (MLflow aliases), the
version the prediction service serves and whether it is loaded now (``GET /models``), the model's
newest drift verdict (its newest ``<reports>/<model>/<stamp>/result.json``) and its newest retrain
(the retrain ledger's newest entry for it, with its flow run's state when Prefect answers).

Fast by design: plain HTTP (the light Prefect client, MLflow's REST API, the service's ``/models``),
files, no Prefect import; every part answers "nothing" while its server is down. With auth on, each
request carries the platform's credentials (Prefect basic auth, MLflow admin user, bearer token).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field

from mloop.core.http import request
from mloop.core.outbox import outbox_dir, pending_count
from mloop.core.processes import read_pid
from mloop.core.settings import Settings
from mloop.core.team import is_team
from mloop.platform.client import PrefectApi, ServingClient
from mloop.platform.services import (
    ServiceState,
    pid_files,
    service_order,
    urls,
    wanted_workers,
    worker_index,
    worker_name,
)

DRIFT_EVENT_PREFIXES = ["mloop.drift.", "mloop.quality."]


class FlowRunInfo(BaseModel):
    name: str
    flow: str
    deployment: str | None = None
    state: str
    start_time: str | None = None
    end_time: str | None = None


class DriftVerdict(BaseModel):
    """A model's newest drift check (its result.json)."""

    verdict: str = Field(description="drift or no drift")
    drifted: bool
    drift_share: float
    threshold: float | None = None
    version: str | None = Field(default=None, description="The model version the check looked at.")
    quality_degraded: bool | None = None
    checked_at: str
    report: str


class RetrainInfo(BaseModel):
    """A model's newest retrain (its newest retrain ledger entry)."""

    started_at: str
    trigger: str
    flow_run_id: str | None = None
    state: str | None = Field(
        default=None, description="Its flow run's state (None: unknown, Prefect down or no run id)."
    )


class ModelStatus(BaseModel):
    name: str
    champion: str | None = None
    challenger: str | None = None
    deployed: str | None = Field(
        default=None, description="The version the prediction service serves (None: not served)."
    )
    loaded: bool | None = Field(
        default=None, description="Served and in memory now (None: not served)."
    )
    last_drift: DriftVerdict | None = None
    last_retrain: RetrainInfo | None = None


class PlatformStatus(BaseModel):
    home: str
    urls: dict[str, str]
    services: list[ServiceState]
    models: list[ModelStatus] = Field(default_factory=list)
    last_drift: dict[str, Any] | None = None
    recent_flow_runs: list[FlowRunInfo] = Field(default_factory=list)
    queued_events: int = Field(
        default=0, description="Events waiting in the outbox for the Prefect server."
    )
    notes: list[str] = Field(default_factory=list)


def service_states(settings: Settings) -> list[ServiceState]:
    """Every known service (each of the workers the last ``up`` asked for) and every pid file: running when its
    pid file names a live process. A worker's note is its name in the Prefect pool."""
    run_dir = settings.state.run
    u = urls(settings)
    known = service_order(wanted_workers(run_dir, settings.workers))
    names = list(known) + [n for n in pid_files(run_dir) if n not in known]
    where = {
        "prefect-server": u["prefect_ui"],
        "mlflow": u["mlflow_ui"],
        "webhook": u["webhook"],
        "serve": u["serving"],
    }
    out = []
    for name in names:
        pid = read_pid(run_dir, name)
        prefect_name = worker_name(settings, name) if worker_index(name) is not None else None
        out.append(
            ServiceState(
                name=name,
                pid=pid,
                running=pid is not None,
                url=where.get(name, ""),
                log=str(run_dir / f"{name}.log"),
                note=f"Prefect worker {prefect_name}" if prefect_name else "",
            )
        )
    return out


def _prefect(settings: Settings) -> PrefectApi | None:
    """The platform's Prefect API when its server answers (one quick try), else None."""
    api = PrefectApi.of(settings, deadline=5.0)
    return api if api.healthy(timeout=2.0) else None


def flow_run_infos(
    runs: list[dict[str, Any]], flows: dict[str, str], deployments: dict[str, str]
) -> list[FlowRunInfo]:
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


def recent_flow_runs(api: PrefectApi | None, limit: int = 10) -> list[FlowRunInfo]:
    """The newest flow runs on the platform's Prefect server ``api`` (empty when it is down: None)."""
    if api is None:
        return []
    try:
        deployments = {d["id"]: d["name"] for d in api.deployments()}
        return flow_run_infos(
            api.flow_runs(limit=limit, newest_first=True), api.flow_names(), deployments
        )
    except (httpx.HTTPError, ValueError):
        return []


def last_drift_event(api: PrefectApi | None) -> dict[str, Any] | None:
    """The newest mloop.drift.* / quality event the Prefect server ``api`` has seen (None if none or down)."""
    if api is None:
        return None
    try:
        events = api.events(prefixes=DRIFT_EVENT_PREFIXES, limit=1)
    except (httpx.HTTPError, ValueError):
        return None
    if not events:
        return None
    e = events[0]
    return {
        "event": e["event"],
        "occurred": e["occurred"],
        "resource": e["resource"].get("prefect.resource.id"),
        "payload": e.get("payload", {}),
    }


def last_drift_verdict(settings: Settings, api: PrefectApi | None) -> dict[str, Any] | None:
    """The newest drift check's verdict (``<reports>/<model>/<stamp>/result.json``), drift or not.

    Falls back to the newest drift/quality event on the Prefect server ``api`` (None: down) when no
    report exists.
    """
    reports = sorted(
        settings.state.reports.glob("*/*/result.json"), key=lambda p: p.stat().st_mtime
    )
    if not reports:
        return last_drift_event(api)
    try:
        r = json.loads(reports[-1].read_text())
    except (OSError, ValueError):
        return last_drift_event(api)
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


def results_newest_first(reports_root: Path) -> dict[str, list[tuple[float, Path]]]:
    """Model name -> its ``result.json`` files under ``reports_root`` with their mtimes, newest first."""
    found: dict[str, list[tuple[float, Path]]] = {}
    for path in reports_root.glob("*/*/result.json"):
        try:
            found.setdefault(path.parent.parent.name, []).append((path.stat().st_mtime, path))
        except OSError:
            continue
    return {model: sorted(items, reverse=True) for model, items in found.items()}


def drift_verdict(result: Mapping[str, Any], checked_at: datetime, report: str) -> DriftVerdict:
    """One drift check's result.json as a status row. Pure."""
    quality = result.get("quality") or {}
    drifted = bool(result.get("dataset_drift"))
    threshold = result.get("drift_share_threshold")
    version = result.get("model_version")
    return DriftVerdict(
        verdict="drift" if drifted else "no drift",
        drifted=drifted,
        drift_share=round(float(result.get("drift_share") or 0.0), 4),
        threshold=None if threshold is None else float(threshold),
        version=None if version is None else str(version),
        quality_degraded=quality.get("degraded") if isinstance(quality, dict) else None,
        checked_at=checked_at.isoformat(),
        report=str(result.get("report_path") or report),
    )


def model_drift(reports_root: Path) -> dict[str, DriftVerdict]:
    """Model name -> its newest readable drift verdict (a torn or unreadable result.json is skipped)."""
    out: dict[str, DriftVerdict] = {}
    for model, items in results_newest_first(reports_root).items():
        for mtime, path in items:
            try:
                result = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(result, dict):
                out[model] = drift_verdict(
                    result, datetime.fromtimestamp(mtime, UTC), str(path.with_name("drift.html"))
                )
                break
    return out


def newest_retrains(records: Iterable[Any]) -> dict[str, Any]:
    """Model name -> its newest retrain ledger record (``model_name``, ``started_at``). Pure."""
    out: dict[str, Any] = {}
    for r in records:
        if r.model_name not in out or r.started_at >= out[r.model_name].started_at:
            out[r.model_name] = r
    return out


def model_retrains(settings: Settings, api: PrefectApi | None) -> dict[str, RetrainInfo]:
    """Model name -> its newest retrain (the ledger), with its flow run's state when ``api`` answers."""
    from monitoring.policy import RetrainLedger

    newest = newest_retrains(RetrainLedger.of(settings).read())
    states: dict[str, str] = {}
    ids = [r.flow_run_id for r in newest.values() if r.flow_run_id]
    if api is not None and ids:
        try:
            states = {
                str(fr["id"]): (fr.get("state") or {}).get("name") or fr.get("state_type") or "?"
                for fr in api.flow_runs_by_id(ids)
            }
        except (httpx.HTTPError, ValueError, KeyError):
            states = {}
    return {
        name: RetrainInfo(
            started_at=r.started_at.isoformat(),
            trigger=r.trigger,
            flow_run_id=r.flow_run_id,
            state=states.get(r.flow_run_id or ""),
        )
        for name, r in newest.items()
    }


def model_rows(
    registry: Iterable[tuple[str, Mapping[str, str]]],
    served: Mapping[str, Mapping[str, Any]],
    drift: Mapping[str, DriftVerdict],
    retrains: Mapping[str, RetrainInfo],
) -> list[ModelStatus]:
    """One row per registered model (by name): aliases, what is served, last drift, last retrain. Pure.

    ``registry``: (name, alias -> version); ``served``: the service's models (GET /models).
    """
    from serving.control.fleet import served_versions  # pure, light

    versions = served_versions(served)
    rows = []
    for name, aliases in sorted(registry, key=lambda row: row[0]):
        info = served.get(name)
        rows.append(
            ModelStatus(
                name=name,
                champion=aliases.get("champion"),
                challenger=aliases.get("challenger"),
                deployed=versions.get(name),
                loaded=None if info is None else bool(info.get("loaded", True)),
                last_drift=drift.get(name),
                last_retrain=retrains.get(name),
            )
        )
    return rows


def registry_aliases(settings: Settings) -> list[tuple[str, dict[str, str]]]:
    """(registered model, alias -> version) for every registered model.

    Asks the running MLflow server's REST API (fast); falls back to the tracking store itself.
    """
    auth = settings.client_auth_env()
    user, password = auth.get("MLFLOW_TRACKING_USERNAME"), auth.get("MLFLOW_TRACKING_PASSWORD")
    rows: list[tuple[str, dict[str, str]]] = []
    try:
        token: str | None = None
        while True:
            params: dict[str, Any] = {"max_results": 1000}
            if token:
                params["page_token"] = token
            resp = request(
                "GET",
                f"{urls(settings)['mlflow_ui']}/api/2.0/mlflow/registered-models/search",
                params=params,
                auth=(user, password) if user and password else None,
                timeout=5,
                deadline=2.0,
            )
            resp.raise_for_status()
            page = resp.json()
            rows += [
                (rm["name"], {a["alias"]: a["version"] for a in rm.get("aliases", [])})
                for rm in page.get("registered_models", [])
            ]
            token = page.get("next_page_token")
            if not token:
                return rows
    except (httpx.HTTPError, ValueError, KeyError):
        db = settings.local_tracking_db
        if (db is not None and not db.exists()) or is_team(
            settings
        ):  # team: the store IS that server
            return []
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=settings.tracking_uri)
        return [
            (rm.name, dict(getattr(rm, "aliases", {}) or {}))
            for rm in client.search_registered_models()
        ]


def model_statuses(settings: Settings, api: PrefectApi | None = None) -> list[ModelStatus]:
    """Every registered model: champion/challenger, the version served (and loaded or not), its last
    drift verdict and last retrain."""
    return model_rows(
        registry_aliases(settings),
        served_models(settings),
        model_drift(settings.state.reports),
        model_retrains(settings, api),
    )


def served_models(settings: Settings) -> dict[str, dict[str, Any]]:
    """Model name -> what the prediction service reports for it (GET /models); empty when it is down."""
    return (
        ServingClient(
            urls(settings)["serving"], token=settings.bearer_token(create=False)
        ).served_models(deadline=0.5)
        or {}
    )


def status(settings: Settings, *, runs: int = 10) -> PlatformStatus:
    """URLs, services, every model (champion, served version, last drift, last retrain), the last drift
    verdict of any model, recent flow runs."""
    from concurrent.futures import ThreadPoolExecutor

    notes: list[str] = []
    api = _prefect(settings)  # one health check for every Prefect part below
    # the three parts wait on different servers (registry, Prefect events, Prefect runs): at once
    with ThreadPoolExecutor(max_workers=3) as pool:
        models_asked = pool.submit(model_statuses, settings, api)
        drift_asked = pool.submit(last_drift_verdict, settings, api)
        runs_asked = pool.submit(recent_flow_runs, api, runs)
    try:
        models = models_asked.result()
    except Exception as exc:  # the registry may be mid-migration or locked: status still answers
        models = []
        notes.append(f"model registry unavailable: {exc}")
    queued = pending_count(settings.state.root)
    if queued:
        notes.append(
            f"{queued} event(s) queued in {outbox_dir(settings.state.root)}: "
            "delivered when the Prefect server answers (`mloop up` delivers them)"
        )
    return PlatformStatus(
        home=str(settings.state.root),
        urls=urls(settings),
        services=service_states(settings),
        models=models,
        last_drift=drift_asked.result(),
        recent_flow_runs=runs_asked.result(),
        queued_events=queued,
        notes=notes,
    )

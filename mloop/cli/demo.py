"""``mloop demo``: the whole loop on this machine, as ``make demo`` runs it.

Up; generate and ingest v1; the triggers train, gate, promote and deploy it; baseline traffic;
drifted traffic with feedback labels; one monitor run detects drift; the drift event retrains on
the new labelled version; the gate decides; the new champion is deployed and answers. Every
automatic step is a Prefect automation reacting to an ``mloop.*`` event: the demo only sends
traffic and starts the monitor, then watches. It prints a timeline and the links, leaves the
platform up for exploring, and exits non-zero if the loop did not close.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mloop.cli.common import console, load_settings, user_errors
from mloop.core.errors import MloopError

if TYPE_CHECKING:
    from rich.console import Console

    from mloop.core.settings import Settings
    from mloop.platform.client import PrefectApi, ServingClient

DATASET = "loans"


@dataclass
class Step:
    name: str
    how: str
    start: float
    seconds: float = 0.0
    detail: str = ""
    ok: bool = True


@dataclass
class Timeline:
    """Wall-clock steps of the demo, printed as they finish and as a table at the end."""

    t0: float = field(default_factory=time.monotonic)
    steps: list[Step] = field(default_factory=list)
    out: Console = field(default_factory=console)
    """One console for the run: a step's spinner and its result line must share it (Rich's live display)."""

    @contextmanager
    def step(self, name: str, how: str) -> Iterator[Step]:
        """Time one step; ``how`` says what started it (a command, a deployment run, an automation)."""
        step = Step(name=name, how=how, start=time.monotonic() - self.t0)
        self.steps.append(step)
        with self.out.status(f"[bold]{name}[/] ..."):
            try:
                yield step
            except BaseException:
                step.ok = False
                raise
            finally:
                step.seconds = time.monotonic() - self.t0 - step.start
                mark = "[green]ok[/]" if step.ok else "[red]FAILED[/]"
                self.out.print(f"{mark} {name} [dim]({step.seconds:.1f}s)[/] {step.detail}")

    def table(self) -> Any:
        from rich.table import Table

        t = Table("step", "started by", "start s", "took s", "result", title="demo timeline")
        for s in self.steps:
            t.add_row(
                s.name,
                s.how,
                f"{s.start:.1f}",
                f"{s.seconds:.1f}",
                s.detail,
                style=None if s.ok else "red",
            )
        return t


def _untracked_demo_data(project_dir: Path) -> Path | None:
    """``data/loans`` when git tracks nothing in it (safe to delete), else None."""
    folder = project_dir / "data" / DATASET
    if not folder.exists():
        return None
    tracked = subprocess.run(
        ["git", "-C", str(project_dir), "ls-files", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return None if tracked else folder


def reset(settings: Settings) -> None:
    """Stop the platform and delete MLOOP_HOME and the demo dataset's untracked files."""
    from mloop.platform import local

    local.down(settings)
    shutil.rmtree(settings.state.root, ignore_errors=True)
    folder = _untracked_demo_data(settings.project_dir)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _champion(settings: Settings) -> str | None:
    from models.registry import champion_version

    return champion_version(settings.tracking_uri, DATASET)


def _lineage(settings: Settings, prediction_id: str) -> Any:
    """The lineage chain of a logged prediction, or None while the log has not flushed it yet."""
    from mloop.core.errors import NotFoundError
    from serving.log.trace import resolve_prediction

    try:
        return resolve_prediction(settings, prediction_id)
    except NotFoundError:
        return None


def _lineage_table(chain: Any) -> Any:
    from rich.table import Table

    table = Table(
        title=f"Lineage of prediction {chain.prediction_id} (mloop lineage --prediction-id ...)"
    )
    table.add_column("link")
    table.add_column("value", overflow="fold")
    for link, value in chain.rows()[1:]:  # the prediction itself is in the title
        table.add_row(link, value)
    return table


def _runs_after(prefect: PrefectApi, flow: str | None, since: float) -> list[dict[str, Any]]:
    cutoff = datetime.fromtimestamp(since, UTC).isoformat()
    return [r for r in prefect.flow_runs(flow) if (r.get("created") or "") >= cutoff]


def _flow_runs_table(prefect: PrefectApi, since: float) -> Any:
    from rich.table import Table

    names = prefect.flow_names()
    t = Table(
        "flow",
        "run",
        "started by",
        "state",
        "start (UTC)",
        "seconds",
        title="Prefect flow runs of this demo",
    )
    for r in _runs_after(prefect, None, since):
        by = (r.get("created_by") or {}).get("type") or "api"
        t.add_row(
            names.get(r["flow_id"], "?"),
            r["name"],
            "automation" if by == "AUTOMATION" else by.lower(),
            r.get("state_name") or r.get("state_type") or "?",
            (r.get("start_time") or "")[11:19],
            f"{r.get('total_run_time') or 0:.1f}",
        )
    return t


def run_demo(settings: Settings, *, rows: int, traffic: int, timeout: float) -> None:
    """The whole loop; raises MloopError/TimeoutError when it did not close (timeline printed either way)."""
    tl = Timeline()
    try:
        links = _loop(settings, tl, rows=rows, traffic=traffic, timeout=timeout)
    finally:
        tl.out.print(tl.table())
    for line in links:
        tl.out.print(line)


def _loop(
    settings: Settings, tl: Timeline, *, rows: int, traffic: int, timeout: float
) -> list[Any]:
    """The steps; returns what to print after the timeline (flow-run table, links)."""
    from mloop.core.generate import generate
    from mloop.platform import local
    from mloop.platform.client import PrefectApi, ServingClient, records_of, wait_for
    from mloop.platform.serve_command import serve_command
    from mloop.platform.services import urls as service_urls

    wall0 = time.time()
    urls = service_urls(settings)

    with tl.step("platform up", "mloop up") as st:
        up = local.up(settings, serve_command=lambda: serve_command(settings))
        st.detail = f"{len(up.deployments)} deployments"
    # The platform's credentials exist now (up creates them): every call below carries them.
    prefect = PrefectApi.of(settings)
    service = ServingClient(urls["serving"], token=settings.bearer_token())

    v1 = _first_champion(settings, tl, prefect, service, rows=rows, timeout=timeout)
    verdict, retrain_since = _drift(
        settings, tl, prefect, service, traffic=traffic, timeout=timeout
    )
    v2 = _new_champion(settings, tl, prefect, service, v1, retrain_since, timeout=timeout)
    with tl.step("trace a served prediction", "mloop lineage") as st:
        answer = service.predict(records_of(generate("regime-change", 1, 5)))[0]
        chain = wait_for(
            lambda: _lineage(settings, answer["prediction_id"]),
            30,
            "the prediction in the log",
            every=0.5,
        )
        st.detail = f"v{chain.model_version} <- data md5 {chain.dataset_md5}"

    return [
        _flow_runs_table(prefect, wall0),
        _lineage_table(chain),
        f"Prefect UI   {urls['prefect_ui']}  (flow runs, artifacts, automations)",
        f"MLflow UI    {urls['mlflow_ui']}/#/models/{DATASET}",
        f"Drift report {verdict.get('report', '-')}",
        f"Serving      {urls['serving']}  (champion {v2}; OpenAPI at /docs.json)",
        "The platform is still running for you to explore (the UIs ask for credentials: `mloop token`). "
        "Stop it with [bold]make down[/] (or `mloop down`).",
    ]


def _first_champion(
    settings: Settings,
    tl: Timeline,
    prefect: PrefectApi,
    service: ServingClient,
    *,
    rows: int,
    timeout: float,
) -> str:
    """Generate and ingest v1, wait for the train run it triggers and for its deploy: the champion."""
    from mloop.core.generate import generate, write_frame
    from mloop.platform.client import wait_for

    with tl.step(f"generate v1 ({rows} rows)", "mloop generate") as st:
        source = write_frame(generate("baseline", rows, 1), settings.state.tmp / "loans-v1.parquet")
        st.detail = str(source)

    with tl.step("ingest v1: contract + DVC", "ingest deployment") as st:
        run = prefect.run_deployment(
            "ingest/local",
            {
                "path": str(source),
                "dataset": DATASET,
                "target": "target",
                "time_column": "event_time",
            },
        )
        final = prefect.wait_run(run, timeout)
        if final["state_type"] != "COMPLETED":
            raise MloopError(
                f"ingest run ended {final['state_type']}",
                where=str(settings.state.run / "prefect-worker.log"),
            )

    with tl.step("train, gate, promote v1", "on mloop.dataset.versioned") as st:
        v1 = wait_for(
            lambda: _champion(settings), timeout, "a champion from the triggered train run", every=2
        )
        st.detail = f"champion = version {v1}"

    with tl.step("deploy v1", "on mloop.model.promoted") as st:
        wait_for(
            lambda: (m := service.served_model()) and str(m["model_version"]) == v1,
            timeout,
            f"version {v1} serving",
            every=1,
        )
        st.detail = f"{service.url} answers with version {v1}"

    return v1


def _drift(
    settings: Settings,
    tl: Timeline,
    prefect: PrefectApi,
    service: ServingClient,
    *,
    traffic: int,
    timeout: float,
) -> tuple[dict[str, Any], float]:
    """Baseline then drifted traffic with labels, and a monitor run that must see the drift: its
    verdict, and when the check started (the retrain it triggers starts after)."""
    from mloop.core.generate import generate
    from mloop.platform.status import last_drift_verdict

    with tl.step("baseline traffic", "POST /predict") as st:
        n, _ = service.send_traffic(generate("baseline", traffic // 2, 2), with_feedback=False)
        st.detail = f"{n} answered and logged"

    with tl.step("drifted traffic + labels", "POST /predict, /feedback") as st:
        n, _ = service.send_traffic(generate("regime-change", traffic, 3), with_feedback=True)
        st.detail = f"{n} answered, {n} labels fed back"

    retrain_since = time.time()  # a retrain run started after this is the one the drift triggered
    with tl.step("drift + quality check", "monitor deployment") as st:
        run = prefect.run_deployment(
            "monitor/local", {"model_name": DATASET, "window_size": traffic}
        )
        final = prefect.wait_run(run, timeout)
        verdict = last_drift_verdict(settings, prefect) or {}
        st.detail = f"{verdict.get('verdict', '?')}: share {verdict.get('drift_share', '?')}"
        if final["state_type"] != "COMPLETED" or verdict.get("verdict") != "drift":
            raise MloopError(
                "the monitor run did not detect drift", where=str(verdict.get("report", ""))
            )

    return verdict, retrain_since


def _new_champion(
    settings: Settings,
    tl: Timeline,
    prefect: PrefectApi,
    service: ServingClient,
    v1: str,
    retrain_since: float,
    *,
    timeout: float,
) -> str | None:
    """The retrain the drift triggered must produce a new champion, and the service must answer with it."""
    from mloop.core.generate import generate
    from mloop.platform.client import wait_for

    with tl.step("retrain on new labels, gate", "on mloop.drift.detected") as st:
        retrain = wait_for(
            lambda: _runs_after(prefect, "retrain", retrain_since), 120, "a triggered retrain run"
        )[-1]
        final = prefect.wait_run(retrain["id"], timeout)
        v2 = _champion(settings)
        st.detail = f"retrain {final['state_type'].lower()}; champion {v1} -> {v2}"
        if final["state_type"] != "COMPLETED" or v2 == v1:
            raise MloopError(
                "the retrain did not produce a new champion", where=f"flow run {retrain['name']}"
            )

    with tl.step("deploy the new champion", "on mloop.model.promoted") as st:
        wait_for(
            lambda: (m := service.served_model()) and str(m["model_version"]) == v2,
            timeout,
            f"version {v2} serving",
            every=1,
        )
        _, versions = service.send_traffic(generate("regime-change", 5, 4), with_feedback=False)
        st.detail = f"answers now come from version(s) {sorted(versions)}"
        if versions != {v2}:
            raise MloopError(f"answers came from {sorted(versions)}, expected {v2}")

    return v2


def demo(
    rows: Annotated[int, typer.Option(help="Rows of the first dataset version.")] = 10_000,
    traffic: Annotated[
        int,
        typer.Option(
            help="Drifted predictions sent (with labels fed back); the retrain keeps the newest rows-many rows, so traffic > rows/2 puts new-regime rows in both its train and holdout split."
        ),
    ] = 6_000,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh/--keep",
            help="Start from a clean state: stop the platform, delete MLOOP_HOME and data/loans (if untracked).",
        ),
    ] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for any one step.")] = 420.0,
) -> None:
    """Run the whole closed loop on this machine and print its timeline (make demo)."""
    # The demo runs its own monitor at a chosen moment; a scheduled sweep at a 10-minute mark could
    # check the traffic before its labels are in and spend the retrain cooldown on a retrain without
    # data. Its platform is deployed with the sweep schedule paused (resume it in the Prefect UI, or
    # `mloop up` again without the demo).
    with user_errors():
        settings = load_settings().model_copy(update={"monitor_sweep_schedule": False})
        if fresh:
            reset(settings)
            settings.apply_env()
        if settings.credentials() is not None:  # before any service environment is built
            settings.apply_env()
        try:
            run_demo(settings, rows=rows, traffic=traffic, timeout=timeout)
        except TimeoutError as exc:
            raise MloopError(
                str(exc),
                where=str(settings.state.run),
                fix="see the logs there; `mloop status` shows the runs",
            ) from exc


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)

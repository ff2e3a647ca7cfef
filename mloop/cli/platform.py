"""CLI commands for the local platform: ``mloop up``, ``mloop down``, ``mloop status``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mloop.cli.common import (
    ClickUsageError,
    StepPrinter,
    console,
    load_settings,
    print_json,
    read_settings,
    user_errors,
)

if TYPE_CHECKING:
    from rich.table import Table

    from mloop.platform.status import ModelStatus


def up(
    deploy: Annotated[
        bool | None,
        typer.Option(
            "--deploy/--no-deploy",
            help="Force (or skip) deploying prefect.yaml. Default: deploy when the server was just started "
            "or prefect.yaml/settings changed since the last deploy.",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="How many local Prefect worker processes to run on the platform's pool (default: "
            "MLOOP_WORKERS, 1). "
            "Fewer than are running stops the extra ones.",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Start the local platform (Prefect server + workers, MLflow UI, webhook receiver, prediction service, watchdog); idempotent.

    Every service requires the platform's credentials (created on first start; `mloop token` shows them).
    """
    from mloop.core.settings import MAX_WORKERS
    from mloop.platform import local
    from mloop.platform.services import urls

    if (
        workers is not None and workers > MAX_WORKERS
    ):  # the bound of MLOOP_WORKERS (a usage error, 2)
        raise ClickUsageError(f"--workers {workers} is above the most local workers, {MAX_WORKERS}")
    with user_errors(json_out):
        settings = load_settings()
        if (
            workers is not None
        ):  # in range (Typer checked it): every service gets it as MLOOP_WORKERS
            settings = settings.model_copy(update={"workers": workers})
        if settings.credentials() is not None:  # created before any environment is built
            settings.apply_env()  # this process's own Prefect client authenticates too
        from mloop.platform.serve_command import (
            serve_command,  # packages the champion first if the store lacks it
        )

        result = local.up(
            settings,
            do_deploy=deploy,
            serve_command=lambda: serve_command(settings),
            progress=StepPrinter(),
        )
    if json_out:
        print_json(result)
        return
    for s in result.services:
        what = "started" if s.started else ("running" if s.running else "not running")
        extra = f"  {s.note}" if s.note else ""
        console().print(f"{s.name:15} {what:12} pid={s.pid or '-':<8} {s.url}{extra}")
    if result.deployed:
        console().print(f"deployed prefect.yaml: {', '.join(result.deployments)}")
    if result.reconcile:
        console().print(f"reconcile: {result.reconcile}")
    if result.queued_events:
        console().print(
            f"{result.queued_events} event(s) still queued in the outbox: delivered when the Prefect "
            "server takes them (the watchdog retries every cycle; `mloop status` counts them)"
        )
    u = urls(settings)
    console().print(
        f"Prefect UI {u['prefect_ui']}   MLflow UI {u['mlflow_ui']}   (stop with `mloop down`)"
    )
    if settings.auth:
        console().print("Both ask for credentials: `mloop token` prints them.")


def down(
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Stop every service `mloop up` started (each one's whole process tree, by pid) and wait until they are gone."""
    from mloop.platform import local

    with user_errors(json_out):
        result = local.down(read_settings(), progress=StepPrinter())
    if json_out:
        print_json(result)
        return
    if not result.stopped:
        console().print("nothing was running")
    for name, pid in result.stopped.items():
        console().print(f"stopped {name} (pid {pid})")
    if result.still_alive:
        console().print(f"[red]still alive:[/] {result.still_alive}")
        raise typer.Exit(1)


def status(
    runs: Annotated[int, typer.Option(help="How many recent flow runs to show.")] = 10,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Show URLs, services, every model (champion, served version, last drift check, last retrain) and recent flow runs."""
    from mloop.platform.status import status as platform_status

    with user_errors(json_out):
        st = platform_status(read_settings(), runs=runs)
    if json_out:
        print_json(st)
        return
    from rich.table import Table

    console().print(f"MLOOP_HOME {st.home}")
    for key, url in st.urls.items():
        console().print(f"  {key:12} {url}")
    t = Table("service", "running", "pid", "url")
    for s in st.services:
        t.add_row(s.name, "yes" if s.running else "no", str(s.pid or "-"), s.url or s.note)
    console().print(t)
    if st.models:
        console().print(models_table(st.models))
    else:
        console().print("no registered models yet")
    d = st.last_drift
    if d and "verdict" in d:
        console().print(
            f"last drift check: [bold]{d['verdict']}[/] on {d['model']} v{d['version']} at {d['checked_at']} "
            f"(share {d['drift_share']}, threshold {d['threshold']}); report {d['report']}"
        )
    elif d:
        console().print(
            f"last drift/quality event: {d['event']} at {d['occurred']} on {d['resource']}"
        )
    else:
        console().print("last drift verdict: no drift check yet")
    if st.recent_flow_runs:
        r = Table("flow run", "flow", "deployment", "state", "start")
        for fr in st.recent_flow_runs:
            r.add_row(fr.name, fr.flow, fr.deployment or "-", fr.state, fr.start_time or "-")
        console().print(r)
    for note in st.notes:
        console().print(f"[yellow]note:[/] {note}")


def models_table(models: list[ModelStatus]) -> Table:
    """The models of ``mloop status`` as a rich table: one row per registered model."""
    from rich.table import Table

    t = Table(
        "model", "champion", "challenger", "served", "loaded", "last drift check", "last retrain"
    )
    for ms in models:
        loaded = "-" if ms.loaded is None else ("yes" if ms.loaded else "no (on demand)")
        d = ms.last_drift
        drift = (
            "-"
            if d is None
            else f"{d.verdict} (share {d.drift_share}) v{d.version or '?'} at {d.checked_at[:19]}"
        )
        r = ms.last_retrain
        retrain = (
            "-"
            if r is None
            else f"{r.started_at[:19]} {r.trigger}" + (f", {r.state}" if r.state else "")
        )
        t.add_row(
            ms.name,
            ms.champion or "-",
            ms.challenger or "-",
            ms.deployed or "-",
            loaded,
            drift,
            retrain,
        )
    return t


def worker(
    name: Annotated[
        str | None,
        typer.Option(
            help="The worker's name in the pool. Default: mloop-worker-<host>-<random>, new at each start."
        ),
    ] = None,
    work_queue: Annotated[
        list[str] | None,
        typer.Option(
            "--work-queue",
            help="Poll only this queue of the pool (repeatable; created if missing). "
            "Default: every queue. Runs reach a named queue when created for it (the UI's 'Work queue', "
            "or `work_queue_name`).",
        ),
    ] = None,
) -> None:
    """Run one more worker of the platform's pool in the foreground (Ctrl-C stops it).

    On the platform's own MLOOP_HOME it adds parallel runs; with the team settings (docs/team-mode.md) it
    joins from another home or host, whose paths and caches its runs then use. It needs the platform's
    credentials in this home (copy secrets/platform.json from the platform's MLOOP_HOME) and, from another
    host, MLOOP_HOST / MLOOP_PREFECT_PORT / MLOOP_MLFLOW_PORT of the platform's host.
    """
    from mloop.platform.worker import run_worker

    with user_errors():
        run_worker(load_settings(), name, work_queue or ())


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("up")(up)
    app.command("worker")(worker)
    app.command("down")(down)
    app.command("status")(status)

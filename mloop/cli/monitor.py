"""CLI command for the monitoring stage: ``mloop monitor`` runs the monitor flow and prints its verdict."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from mloop.cli.common import (
    console,
    err_console,
    load_flow_settings,
    print_json,
    user_errors,
)
from mloop.cli.data import name_check


def monitor_cmd(
    model: Annotated[str, typer.Argument(help="Registered model (== dataset) name.", callback=name_check("model"))],
    window: Annotated[int, typer.Option("--window", min=1, help="Check the newest N logged predictions.")] = 5000,
    since: Annotated[
        datetime | None, typer.Option(help="Only predictions at/after this time (ISO, UTC when naive).")
    ] = None,
    version: Annotated[
        str, typer.Option(help="Model version or alias whose training data is the reference.")
    ] = "champion",
    min_rows: Annotated[int, typer.Option(min=1, help="Skip the check below this many predictions.")] = 100,
    no_publish: Annotated[
        bool, typer.Option("--no-publish", help="Do not write the HTML report, MLflow run and Evidently snapshot.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the typed result as one JSON document.")] = False,
) -> None:
    """Compare the newest predictions with the champion's training data (Evidently drift, quality
    when feedback labels exist); emit mloop.drift.detected / mloop.quality.degraded."""
    with user_errors():
        load_flow_settings()
        from flows.monitor import MonitorOptions, monitor_flow

        with err_console.status(f"checking the newest {window:,} predictions of {model}"):
            result = monitor_flow(
                model, window_size=window, since=since, version=version,
                options=MonitorOptions(min_rows=min_rows, publish=not no_publish),
            )
    if json_out:
        print_json(result)
        return
    _print_result(result)


def _print_result(result) -> None:  # noqa: ANN001 - flows.monitor.MonitorResult (imported lazily)
    from rich.table import Table

    colour = {"ok": "green", "skipped": "yellow"}.get(result.status, "bold red")
    console.print(f"[{colour}]{result.status}[/]: {result.model_name} v{result.model_version}: {result.reason}")
    drift = result.drift
    if drift is None:
        return
    table = Table("column", "method", "score", "threshold", "drifted")
    for c in sorted(drift.columns, key=lambda c: (not c.drifted, c.column)):
        name = f"{c.column} (prediction)" if c.is_prediction else c.column
        table.add_row(name, c.method, f"{c.score:.4f}", f"{c.threshold:g}", "[red]yes[/]" if c.drifted else "no")
    console.print(table)
    if drift.quality is not None:
        q = drift.quality
        for comp in q.comparisons:
            console.print(
                f"quality {comp.metric}: {comp.current:.4f} vs champion holdout {comp.baseline:.4f} "
                f"(drop {comp.drop:+.4f}, tolerance {comp.tolerance:g})"
            )
    if result.report_path:
        console.print(f"report: {result.report_path}")
    if result.events:
        console.print(f"events: {', '.join(result.events)}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("monitor")(monitor_cmd)

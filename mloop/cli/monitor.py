"""CLI commands of the monitoring stage (``mloop monitor ...``).

- ``mloop monitor [check] MODEL``: the monitor flow for one model, its verdict printed (``check`` is
  the default sub-command, so ``mloop monitor loans`` works as before);
- ``mloop monitor configure MODEL [--window N --min-rows N --cooldown-minutes M --daily-budget N]``:
  the model's own monitoring and retrain values (shown when no option is given);
- ``mloop monitor sweep [MODEL...]``: the monitor sweep over every served model (or the named ones), one line
  per model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from typer.core import TyperGroup

from mloop.cli.common import (
    HELP_MARKUP,
    console,
    deprecated,
    err_console,
    load_flow_settings,
    print_json,
    read_settings,
    user_errors,
)
from mloop.cli.data import name_check

WINDOW_HELP = "Check the newest N logged predictions"


def monitor_cmd(
    model: Annotated[
        str,
        typer.Argument(help="Registered model (== dataset) name.", callback=name_check("model")),
    ],
    window: Annotated[
        int | None,
        typer.Option("--window", min=1, help=f"{WINDOW_HELP} (default: the model's)."),
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(help="Only predictions at/after this time (ISO, UTC when naive)."),
    ] = None,
    model_version: Annotated[
        str | None,
        typer.Option(
            "--model-version",
            help="Model version or alias whose training data is the reference.",
            show_default="champion",
        ),
    ] = None,
    min_rows: Annotated[
        int | None,
        typer.Option(
            min=1, help="Skip the check below this many predictions (default: the model's)."
        ),
    ] = None,
    no_publish: Annotated[
        bool,
        typer.Option(
            "--no-publish", help="Do not write the HTML report, MLflow run and Evidently snapshot."
        ),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the typed result as one JSON document.")
    ] = False,
    old_version: Annotated[str | None, typer.Option("--version", hidden=True)] = None,
) -> None:
    """Compare the newest predictions with the champion's training data (Evidently drift, quality
    when feedback labels exist); emit mloop.drift.detected / mloop.quality.degraded."""
    from mloop.platform.registry_view import require_version

    version = (
        deprecated(model_version, old_version, old="--version", new="--model-version") or "champion"
    )
    with user_errors(json_out):
        # an unknown model (3) or no champion (5) answers now, before a Prefect server is started
        require_version(read_settings(), model, version)
        load_flow_settings()
        from flows.monitor import MonitorOptions, monitor_flow

        with err_console().status(
            f"checking the newest {f'{window:,}' if window else ''} predictions of {model}"
        ):
            result = monitor_flow(
                model,
                window_size=window,
                since=since,
                version=version,
                options=MonitorOptions(min_rows=min_rows, publish=not no_publish),
            )
    if json_out:
        print_json(result)
        return
    _print_result(result)


def _print_result(result) -> None:
    from rich.table import Table

    colour = {"ok": "green", "skipped": "yellow"}.get(result.status, "bold red")
    console().print(
        f"[{colour}]{result.status}[/]: {result.model_name} v{result.model_version}: {result.reason}"
    )
    drift = result.drift
    if drift is None:
        return
    table = Table("column", "method", "score", "threshold", "drifted")
    for c in sorted(drift.columns, key=lambda c: (not c.drifted, c.column)):
        name = f"{c.column} (prediction)" if c.is_prediction else c.column
        table.add_row(
            name,
            c.method,
            f"{c.score:.4f}",
            f"{c.threshold:g}",
            "[red]yes[/]" if c.drifted else "no",
        )
    console().print(table)
    if drift.quality is not None:
        q = drift.quality
        for comp in q.comparisons:
            console().print(
                f"quality {comp.metric}: {comp.current:.4f} vs champion holdout {comp.baseline:.4f} "
                f"(drop {comp.drop:+.4f}, tolerance {comp.tolerance:g})"
            )
    if result.report_path:
        console().print(f"report: {result.report_path}")
    if result.events:
        console().print(f"events: {', '.join(result.events)}")


class _CheckByDefault(TyperGroup):
    """``mloop monitor MODEL ...`` means ``mloop monitor check MODEL ...`` (the command before it was a group)."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["check", *args]
        return super().parse_args(ctx, args)


def configure_cmd(
    model: Annotated[
        str,
        typer.Argument(help="Registered model (== dataset) name.", callback=name_check("model")),
    ],
    window: Annotated[int | None, typer.Option("--window", min=1, help=f"{WINDOW_HELP}.")] = None,
    min_rows: Annotated[
        int | None, typer.Option(min=1, help="Skip the check below this many predictions.")
    ] = None,
    cooldown_minutes: Annotated[
        float | None,
        typer.Option(min=0, help="No retrain within this many minutes of the model's last one."),
    ] = None,
    daily_budget: Annotated[
        int | None,
        typer.Option(
            min=0, help="At most this many automatic retrains of the model a day (0: none)."
        ),
    ] = None,
    reset: Annotated[
        bool,
        typer.Option("--reset", help="Drop the model's own values first (back to the globals)."),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the values in force as one JSON document.")
    ] = False,
    old_window: Annotated[int | None, typer.Option("--window-size", min=1, hidden=True)] = None,
) -> None:
    """Set (without options: show) a model's own monitor window, min rows, retrain cooldown and daily budget.

    Unset values follow MLOOP_MONITOR_WINDOW_SIZE, MLOOP_MONITOR_MIN_ROWS, MLOOP_RETRAIN_COOLDOWN_MINUTES and
    MLOOP_DAILY_RETRAIN_BUDGET. The sweep and the retrain policy read them on every run.
    """
    from mloop.cli.common import load_settings

    window_size = deprecated(window, old_window, old="--window-size", new="--window")
    with user_errors(
        json_out
    ):  # a model not trained yet may be configured ahead of its first check
        settings = load_settings()
        from monitoring.model_config import (
            CONFIG_FIELDS,
            GLOBAL_SETTINGS,
            resolve_config,
            update_model_config,
        )

        changes = {
            "window_size": window_size,
            "min_rows": min_rows,
            "retrain_cooldown_minutes": cooldown_minutes,
            "daily_retrain_budget": daily_budget,
        }
        if reset or any(v is not None for v in changes.values()):
            config = update_model_config(settings, model, changes, reset=reset)
        else:
            config = resolve_config(settings, model)
    if json_out:
        print_json(config)
        return
    from rich.table import Table

    table = Table("setting", "value", "source", title=f"monitoring of {model}")
    for field in CONFIG_FIELDS:
        source = (
            "model"
            if field in config.overridden
            else f"global (MLOOP_{GLOBAL_SETTINGS[field].upper()})"
        )
        table.add_row(field, f"{getattr(config, field):g}", source)
    console().print(table)


def sweep_cmd(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Only these models; default: every served model.", show_default=False),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads", min=1, help="Models checked at once, in threads (default: settings)."
        ),
    ] = None,
    check_all: Annotated[
        bool,
        typer.Option(
            "--all", help="Check every model, even one with nothing new since its last check."
        ),
    ] = False,
    full_reports: Annotated[
        bool,
        typer.Option(
            "--full-reports",
            help="Build the Evidently report of every model, not only of those "
            "with a finding (slower).",
        ),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the typed result as one JSON document.")
    ] = False,
    old_model: Annotated[list[str] | None, typer.Option("--model", hidden=True)] = None,
    old_workers: Annotated[int | None, typer.Option("--workers", min=1, hidden=True)] = None,
) -> None:
    """Check every served model (each registered model with a champion) with its own window and minimum.

    The same flow the `monitor-sweep/local` deployment runs on its schedule; one line per model.
    """
    from mloop.platform.registry_view import require_version

    model = deprecated(names or [], old_model or [], old="--model", new="the MODEL arguments")
    workers = deprecated(threads, old_workers, old="--workers", new="--threads")
    check = name_check("model")
    for name in model:
        check(name)
    with user_errors(json_out):
        settings = read_settings()
        for (
            name
        ) in model:  # a named model unknown (3) or without a champion (5): before anything starts
            require_version(settings, name)
        load_flow_settings()
        from flows.monitor import monitor_sweep_flow

        with err_console().status("sweeping the served models"):
            result = monitor_sweep_flow(
                models=model or None,
                workers=workers,
                skip_unchanged=not check_all,
                full_reports=full_reports,
            )
    if json_out:
        print_json(result)
        return
    for e in result.models:
        colour = {"ok": "green", "skipped": "yellow", "unchanged": "yellow"}.get(
            e.status, "bold red"
        )
        console().print(
            f"[{colour}]{e.status}[/] {e.model_name} v{e.model_version or '-'}: {e.reason}"
        )
    if result.unknown:
        console().print(f"[yellow]not served[/] (no champion): {', '.join(result.unknown)}")
    console().print(f"{len(result.models)} models in {result.seconds:.1f} s")
    if result.failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``monitor`` command group to the main app."""
    group = typer.Typer(
        cls=_CheckByDefault,
        no_args_is_help=True,
        rich_markup_mode=HELP_MARKUP,
        help="Drift and quality checks: one model (check), every served model (sweep), per-model settings.",
    )
    group.command("check")(monitor_cmd)
    group.command("configure")(configure_cmd)
    group.command("sweep")(sweep_cmd)
    app.add_typer(group, name="monitor")

"""``mloop infra up|down|status|env``: a real PostgreSQL server and S3 store on loopback for team mode;
``mloop infra import-home``: copy a single-machine home into the team's stores (:mod:`mloop.platform.migrate`).

The servers live under ``MLOOP_HOME/infra`` and are independent of the platform (``mloop down``
leaves them running). Only ``mloop infra env`` prints credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mloop.cli.common import (
    HELP_MARKUP,
    StepPrinter,
    console,
    load_settings,
    print_json,
    user_errors,
)

if TYPE_CHECKING:
    from rich.table import Table

    from mloop.platform.infra import InfraStatus

DEFAULT_PG_PORT = 55432
DEFAULT_S3_PORT = 8333

infra_app = typer.Typer(
    name="infra",
    rich_markup_mode=HELP_MARKUP,
    help="Local team-mode infrastructure: a real PostgreSQL server and S3 store (SeaweedFS) on loopback, under MLOOP_HOME/infra.",
    no_args_is_help=True,
)


def status_table(result: InfraStatus) -> Table:
    """The Rich table of ``mloop infra status``/``up`` (no secret in it). Pure."""
    from rich.table import Table

    table = Table(title="mloop infra")
    for column in ("server", "state", "pid", "port", "data", "note"):
        table.add_column(column)
    for s in result.servers:
        state = (
            "started"
            if s.started and s.healthy
            else ("healthy" if s.healthy else ("running, not healthy" if s.running else "stopped"))
        )
        table.add_row(s.name, state, str(s.pid or "-"), str(s.port), s.data_dir, s.note)
    return table


@infra_app.command("up")
def up(
    pg_port: Annotated[
        int, typer.Option("--pg-port", help="Port of PostgreSQL on 127.0.0.1.")
    ] = DEFAULT_PG_PORT,
    s3_port: Annotated[
        int, typer.Option("--s3-port", help="Port of the S3 endpoint on 127.0.0.1.")
    ] = DEFAULT_S3_PORT,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for each server to answer.")
    ] = 60.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Start PostgreSQL and the S3 store on loopback (idempotent: what runs is left as it is and reported)."""
    from mloop.platform import infra

    with user_errors(json_out):
        settings = load_settings()
        result = infra.up(
            settings.state.root,
            pg_port=pg_port,
            s3_port=s3_port,
            timeout=timeout,
            progress=StepPrinter(),
        )
    if json_out:
        print_json(result)
        return
    console().print(status_table(result))
    console().print(
        'Point mloop at it: eval "$(mloop infra env)"   (stop with `mloop infra down`)',
        highlight=False,
    )


@infra_app.command("down")
def down(
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Stop both servers (whole process trees, by pid) and wait until their ports are free; idempotent."""
    from mloop.platform import infra

    with user_errors(json_out):
        result = infra.down(load_settings().state.root)
    if json_out:
        print_json(result)
    else:
        if not result.stopped:
            console().print("nothing was running")
        for name, pid in result.stopped.items():
            console().print(f"stopped {name} (pid {pid})")
    if result.still_alive:
        if not json_out:
            console().print(f"[red]still alive:[/] {result.still_alive}")
        raise typer.Exit(1)


@infra_app.command("status")
def status(
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Each server's pid, port, health (a SQL query / a signed S3 request) and data folder."""
    from mloop.platform import infra

    with user_errors(json_out):
        result = infra.status(load_settings().state.root)
    if json_out:
        print_json(result)
        return
    console().print(status_table(result))


@infra_app.command("env")
def env() -> None:
    """Print the team-mode settings as `export NAME=VALUE` lines (credentials included): eval "$(mloop infra env)"."""
    from mloop.platform import infra

    with user_errors():
        lines = infra.env_lines(infra.env(load_settings().state.root))
    typer.echo("\n".join(lines))


@infra_app.command("import-home")
def import_home(
    source: Annotated[
        Path,
        typer.Argument(
            help="The single-machine MLOOP_HOME to copy from (only read; stop its platform first)."
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be copied.")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Copy a single-machine home's DVC remote, prediction log, feedback labels, audit log, retrain ledger and
    dataset index into the team's S3 and PostgreSQL (the team settings must be set); safe to run again."""
    from mloop.core.s3 import s3_client
    from mloop.core.shared import shared_records
    from mloop.core.team import require_team
    from mloop.platform.migrate import S3Store
    from mloop.platform.migrate import import_home as run_import

    with user_errors(json_out):
        settings = load_settings()
        layout = require_team(settings).artifacts
        store = S3Store(s3_client(layout.endpoint_url), layout.bucket)
        result = run_import(
            source.expanduser().resolve(), shared_records(settings), store, layout, dry_run=dry_run
        )
    if json_out:
        print_json(result)
        return
    from rich.table import Table

    table = Table(
        title=f"import of {result.source}" + (" (dry run: nothing copied)" if dry_run else "")
    )
    for column in ("what", "copied" if not dry_run else "to copy", "already there", "note"):
        table.add_column(column)
    for step in result.steps:
        table.add_row(step.what, str(step.copied), str(step.already_there), step.note)
    console().print(table)
    console().print("Not moved: " + "; ".join(result.not_moved), highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``infra`` command group to the main app."""
    app.add_typer(infra_app, name="infra")

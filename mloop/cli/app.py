"""The ``mloop`` command line (Typer).

Command groups live in the ``mloop/cli/`` modules (data, models, serving, monitor, platform, token, demo), one per lifecycle stage; each registers its
commands here. Start-up stays light: heavy libraries are imported inside the commands.

Conventions every command keeps: ``-h``/``--help``, ``--json`` for one JSON document on stdout (errors
included), the model name as a positional argument, and the exit codes of :data:`mloop.core.errors.EXIT_CODES`
(shown at the end of ``mloop --help``; :class:`mloop.cli.common.MloopGroup` applies them).
"""

from __future__ import annotations

from typing import Annotated

import typer

from mloop.cli import data as cli_data
from mloop.cli import demo as cli_demo
from mloop.cli import infra as cli_infra
from mloop.cli import models as cli_models
from mloop.cli import monitor as cli_monitor
from mloop.cli import platform as cli_platform
from mloop.cli import serving as cli_serving
from mloop.cli import token as cli_token
from mloop.cli.common import HELP_MARKUP, MloopGroup, exit_code_epilog

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
"""``-h`` beside ``--help`` in every command (click hands it down to each sub-command)."""


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"mloop {version('mloop')}")
        raise typer.Exit()


def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print mloop's version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """mloop: a closed-loop ML lifecycle platform (ingest, train, gate, promote, serve, monitor, remediate)."""


app = typer.Typer(
    name="mloop",
    cls=MloopGroup,
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings=HELP_OPTIONS,
    epilog=exit_code_epilog(),
)
app.callback()(_root)

for module in (
    cli_data,
    cli_models,
    cli_serving,
    cli_monitor,
    cli_platform,
    cli_infra,
    cli_token,
    cli_demo,
):
    module.register(app)


if __name__ == "__main__":  # pragma: no cover
    app()

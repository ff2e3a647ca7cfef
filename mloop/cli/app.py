"""The ``mloop`` command line (Typer).

Command groups live in the ``mloop/cli/`` modules (data, models, serving, monitor, platform, token, demo), one per lifecycle stage; each registers its
commands here. Start-up stays light: heavy libraries are imported inside the commands.
"""

from __future__ import annotations

import typer

from mloop.cli import data as cli_data
from mloop.cli import demo as cli_demo
from mloop.cli import infra as cli_infra
from mloop.cli import models as cli_models
from mloop.cli import monitor as cli_monitor
from mloop.cli import platform as cli_platform
from mloop.cli import serving as cli_serving
from mloop.cli import token as cli_token

app = typer.Typer(
    name="mloop",
    help="mloop: a closed-loop ML lifecycle platform (ingest, train, gate, promote, serve, monitor, remediate).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

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

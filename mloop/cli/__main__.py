"""``python -m mloop.cli``: the same as the ``mloop`` command."""

from mloop.cli.app import app

app(prog_name="mloop")

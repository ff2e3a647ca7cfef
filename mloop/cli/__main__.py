"""``python -m mloop.cli``: the same command as the ``mloop`` script."""

from mloop.cli.app import app

app()

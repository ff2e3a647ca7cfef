"""The README stays in step with the code: every setting and every CLI command is documented."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main
from typer.core import TyperGroup

from mloop.cli.app import app
from mloop.core.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _section(title: str) -> str:
    """The README text under the ``## <title>`` heading, up to the next ``## `` heading."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def _commands() -> list[str]:
    """Every command path of the Typer app, e.g. ``ingest`` and ``data list``."""
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup), "the mloop app should be a command group"
    paths: list[str] = []
    for name, cmd in root.commands.items():
        paths.append(name)
        for sub in getattr(
            cmd, "commands", {}
        ):  # a group such as `mloop data`: its subcommands too
            paths.append(f"{name} {sub}")
    return paths


def test_settings_table_lists_every_field() -> None:
    table = _section("Settings")
    missing = [
        f"MLOOP_{name.upper()}"
        for name in Settings.model_fields
        if f"`MLOOP_{name.upper()}`" not in table
    ]
    assert not missing, f"README.md settings table lacks {missing}"


def test_cli_reference_lists_every_command() -> None:
    reference = _section("CLI reference")
    commands = _commands()
    assert {"ingest", "train", "monitor", "up", "down", "data list"} <= set(commands)
    missing = [c for c in commands if f"`mloop {c}" not in reference]
    assert not missing, f"README.md CLI reference lacks {missing}"

"""Every ``mloop`` command exits with the code of the exit-code table (mloop.core.errors.EXIT_CODES) for
each condition that applies to it: usage error 2, not found 3, rejected input 4, not ready 5.

Most conditions need no running platform: an empty temporary MLOOP_HOME (unknown model or dataset, no
champion, a file that is missing or lacks columns), one with a registered model without a champion
(no champion, nothing to roll back to), and the session's PREFECT_API_URL with no server behind it
(platform not running). Under ``--json`` the same error is one JSON object on stdout with the same
code. :func:`test_every_command_has_a_case` fails when a command is added without a case here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer
from typer.core import TyperCommand, TyperGroup
from typer.testing import CliRunner

from mloop.cli.app import app
from mloop.core.errors import EXIT_CODES
from mloop.core.settings import Settings
from tests.cli.helpers import empty_home_env


@dataclass(frozen=True)
class Case:
    command: str
    """The command path, e.g. ``data list``."""
    condition: str
    argv: list[str]
    """``{tmp}`` stands for the test's temporary folder."""
    code: int
    env: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.command}: {self.condition}"


ID = "f" * 32

EMPTY_HOME = [
    Case("generate", "ok", ["generate", "--rows", "20", "--out", "{tmp}/g.csv"], 0),
    Case(
        "generate", "unknown scenario", ["generate", "--scenario", "x", "--out", "{tmp}/g.csv"], 2
    ),
    Case("ingest", "file not found", ["ingest", "{tmp}/missing.csv", "--dataset", "loans"], 3),
    Case("ingest", "platform not running", ["ingest", "{tmp}/labels.csv", "--dataset", "loans"], 5),
    Case("data list", "ok", ["data", "list"], 0),
    Case("data list", "unknown dataset", ["data", "list", "loans"], 3),
    Case("data get", "unknown dataset", ["data", "get", "loans", "--out", "{tmp}/o.parquet"], 3),
    Case("data contract", "unknown dataset", ["data", "contract", "loans"], 3),
    Case("train", "no dataset named", ["train"], 2),
    Case("train", "unknown dataset", ["train", "loans"], 3),
    Case("train", "unknown estimator", ["train", "loans", "--model", "nope"], 2),
    Case("promote", "unknown model", ["promote", "loans", "1", "--reason", "r"], 3),
    Case("rollback", "unknown model", ["rollback", "loans", "--reason", "r"], 3),
    Case("models", "unknown model", ["models", "loans"], 3),
    Case("audit", "unknown model", ["audit", "loans"], 3),
    Case("reproduce", "unknown model", ["reproduce", "loans", "1"], 3),
    Case("package", "unknown model", ["package", "loans"], 3),
    Case("package", "no champion", ["package"], 5),
    Case("serve", "unknown model", ["serve", "loans"], 3),
    Case("serve", "no champion", ["serve"], 5),
    Case("deploy", "unknown model", ["deploy", "loans"], 3),
    Case("deploy", "no champion", ["deploy"], 5),
    Case("lineage", "unknown prediction", ["lineage", "--prediction-id", ID], 3),
    Case("feedback", "file not found", ["feedback", "{tmp}/missing.csv", "loans"], 3),
    Case("feedback", "file lacks columns", ["feedback", "{tmp}/nolabel.csv", "loans"], 4),
    Case("feedback", "unknown model", ["feedback", "{tmp}/labels.csv", "loans"], 3),
    Case("feedback", "no champion", ["feedback", "{tmp}/labels.csv"], 5),
    Case("monitor check", "unknown model", ["monitor", "check", "loans"], 3),
    Case("monitor check", "unknown model (default command)", ["monitor", "loans"], 3),
    Case("monitor configure", "ok", ["monitor", "configure", "loans"], 0),
    Case("monitor sweep", "unknown model", ["monitor", "sweep", "loans"], 3),
    Case("up", "too many workers", ["up", "--workers", "99"], 2),
    Case("down", "nothing running", ["down"], 0),
    Case("status", "ok", ["status"], 0),
    Case("status", "invalid setting", ["status"], 4, {"MLOOP_WORKERS": "many"}),
    Case("models", "invalid setting", ["models", "loans"], 4, {"MLOOP_WORKERS": "many"}),
    Case("worker", "platform not running", ["worker"], 5),
    Case("token", "ok", ["token"], 0),
    Case("infra up", "bad port", ["infra", "up", "--pg-port", "x"], 2),
    Case("infra down", "nothing running", ["infra", "down"], 0),
    Case("infra status", "nothing running", ["infra", "status"], 0),
    Case("infra env", "no infra started", ["infra", "env"], 5),
    Case("infra import-home", "team mode off", ["infra", "import-home", "{tmp}"], 5),
    Case("demo", "bad option value", ["demo", "--rows", "x"], 2),
]

REGISTERED = [  # model `loans` has version 1 and no alias
    Case("models", "ok", ["models", "loans"], 0),
    Case("audit", "ok (no records)", ["audit", "loans"], 0),
    Case("monitor check", "no champion", ["monitor", "loans"], 5),
    Case("monitor sweep", "no champion", ["monitor", "sweep", "loans"], 5),
    Case("package", "no champion", ["package", "loans"], 5),
    Case("package", "unknown version", ["package", "loans", "--model-version", "9"], 3),
    Case("serve", "no champion", ["serve", "loans"], 5),
    Case("deploy", "no champion", ["deploy", "loans"], 5),
    Case("reproduce", "no champion", ["reproduce", "loans", "champion"], 5),
    Case("promote", "unknown version", ["promote", "loans", "9", "--reason", "r"], 3),
    Case("promote", "platform not running", ["promote", "loans", "1", "--reason", "r"], 5),
    Case("rollback", "no previous champion", ["rollback", "loans", "--reason", "r"], 5),
    Case("feedback", "ids not in the log", ["feedback", "{tmp}/labels.csv", "loans"], 4),
]


def leaf_commands() -> dict[str, TyperCommand]:
    """Command path -> command, for every command of the app (groups walked)."""
    out: dict[str, TyperCommand] = {}

    def walk(group: TyperGroup, prefix: str) -> None:
        for name, command in group.commands.items():
            path = f"{prefix} {name}".strip()
            if isinstance(command, TyperGroup):
                walk(command, path)
            else:
                out[path] = command  # pyright: ignore[reportArgumentType]  # why: click's Command, a TyperCommand at run time

    walk(typer.main.get_command(app), "")  # pyright: ignore[reportArgumentType]  # why: the root is a TyperGroup (MloopGroup)
    return out


@pytest.fixture
def cli_home(tmp_path: Path) -> Iterator[Path]:
    """An empty MLOOP_HOME and project dir, ports nobody serves; os.environ restored afterwards (the CLI
    exports its settings into it)."""
    (tmp_path / "labels.csv").write_text(f"prediction_id,label\n{ID},1\n")
    (tmp_path / "nolabel.csv").write_text(f"prediction_id,other\n{ID},1\n")
    with empty_home_env(tmp_path) as root:
        yield root


def _register_without_champion(home: Path, tmp: Path) -> None:
    from models.registry import mlflow_client

    settings = Settings(home=home)
    settings.state.ensure()
    client = mlflow_client(settings.tracking_uri)
    client.create_registered_model("loans")
    (tmp / "artifact").mkdir()
    client.create_model_version("loans", source=(tmp / "artifact").as_uri(), run_id=None)


def _check(case: Case, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The case exits with its code; with --json (where the command has it) its error is JSON on stdout."""
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    argv = [a.replace("{tmp}", str(tmp)) for a in case.argv]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == case.code, (str(case), result.output, result.exception)
    assert "Traceback" not in result.output, (str(case), result.output)
    takes_json = any("--json" in p.opts for p in leaf_commands()[case.command].params)
    if case.code not in (0, 2) and takes_json:
        as_json = CliRunner().invoke(app, [*argv, "--json"])
        error = json.loads(as_json.stdout)
        assert as_json.exit_code == error["code"] == case.code, (str(case), as_json.output)
        assert error["error"] and "hint" in error


@pytest.mark.parametrize("case", EMPTY_HOME, ids=str)
def test_empty_home(case: Case, cli_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _check(case, cli_home, monkeypatch)


def test_registered_model_without_champion(cli_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _register_without_champion(cli_home / "home", cli_home)
    for case in REGISTERED:
        _check(case, cli_home, monkeypatch)


@pytest.mark.parametrize("command", sorted(leaf_commands()))
def test_usage_error_is_2_and_json_under_json(command: str, cli_home: Path) -> None:
    argv = [*command.split(), "--no-such-option"]
    assert CliRunner().invoke(app, argv).exit_code == 2
    as_json = CliRunner().invoke(app, [*argv, "--json"])
    assert as_json.exit_code == 2 and json.loads(as_json.stdout)["code"] == 2, as_json.output


def test_every_command_has_a_case() -> None:
    covered = {c.command for c in EMPTY_HOME + REGISTERED}
    missing = sorted(set(leaf_commands()) - covered)
    assert not missing, f"commands without an exit-code case (add them above): {missing}"
    codes = {c.code for c in EMPTY_HOME + REGISTERED} | {4}  # 4 for a dataset: below
    assert codes == set(EXIT_CODES) - {1}, codes  # every documented condition is driven


def test_the_table_is_in_the_help() -> None:
    shown = CliRunner().invoke(app, ["-h"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    for code, meaning in EXIT_CODES.items():
        assert f"{code}  {meaning.split(':')[0]}" in shown.stdout


@pytest.mark.integration
def test_rejected_dataset_is_4(prefect_server: object, settings: Settings, tmp_path: Path) -> None:
    """A file the contract rules refuse (here: empty) is rejected input, 4, not a usage error."""
    saved = dict(os.environ)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    try:
        os.environ.update(settings.service_env())
        result = CliRunner().invoke(app, ["ingest", str(empty), "--dataset", "loans"])
        assert result.exit_code == 4 and "rejected" in result.stderr, result.output
        as_json = CliRunner().invoke(app, ["ingest", str(empty), "--dataset", "loans", "--json"])
        doc = json.loads(as_json.stdout)
        assert as_json.exit_code == doc["code"] == 4 and doc["rejected"] is True, as_json.output
    finally:
        os.environ.clear()
        os.environ.update(saved)


OLD_SPELLINGS = [  # (old argv, exit code on an empty home): the same as the new spelling's
    (["train", "--dataset", "loans"], 3),
    (["train", "loans", "--version", "abc123"], 3),
    (["data", "get", "loans", "--version", "abc123", "--out", "{tmp}/o.parquet"], 3),
    (["package", "loans", "--version", "1"], 3),
    (["deploy", "loans", "--version", "1"], 3),
    (["serve", "--name", "loans"], 3),
    (["feedback", "{tmp}/labels.csv", "--model", "loans"], 3),
    (["monitor", "check", "loans", "--version", "1"], 3),
    (["monitor", "configure", "loans", "--window-size", "500"], 0),
    (["monitor", "sweep", "--model", "loans", "--workers", "2"], 3),
]


@pytest.mark.parametrize(("argv", "code"), OLD_SPELLINGS, ids=lambda v: str(v))
def test_old_spellings_still_work_with_a_warning(
    argv: list[str], code: int, cli_home: Path
) -> None:
    result = CliRunner().invoke(app, [a.replace("{tmp}", str(cli_home)) for a in argv])
    assert result.exit_code == code, result.output
    assert "is deprecated, use" in result.stderr


def test_old_and_new_spelling_with_different_values_is_a_usage_error(cli_home: Path) -> None:
    result = CliRunner().invoke(app, ["train", "loans", "--dataset", "rates"])
    assert result.exit_code == 2 and "same option" in result.output

"""Helpers every CLI module shares: settings, JSON output, readable errors, the exit-code table.

Start-up stays light: nothing here imports pydantic, the settings or Rich at module level (``mloop
--help`` must answer in a fraction of a second); each helper imports what it needs when called.

Exit codes (the same condition exits with the same code in every command; :data:`EXIT_CODES`, shown in
``mloop --help`` and docs/architecture.md): 0 ok, 1 failure, 2 usage, 3 not found, 4 rejected input,
5 not ready or conflict. An :class:`~mloop.core.errors.MloopError` carries its code; a usage error is
click's (2).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from typer._click.exceptions import (  # Typer vendors click: its errors are these classes
    ClickException,
)
from typer._click.exceptions import UsageError as ClickUsageError
from typer.core import TyperGroup

from mloop.core.errors import (
    EXIT_CODES,
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_NOT_READY,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    MloopError,
    RejectedError,
)

if TYPE_CHECKING:
    from pydantic import ValidationError
    from rich.console import Console

    from mloop.core.settings import Settings

__all__ = [
    "EXIT_CODES",
    "EXIT_FAILURE",
    "EXIT_NOT_FOUND",
    "EXIT_NOT_READY",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_USAGE",
]


HELP_MARKUP = None
"""Every group's ``rich_markup_mode``: plain click help. Typer's Rich help formatter imports Rich and
markdown-it (about 0.1 s of CPU), which would double the start-up of ``mloop --help`` (goal: 0.3 s)."""


def exit_code_epilog() -> str:
    """The exit-code table as the epilog of ``mloop --help``. Pure."""
    rows = "\n\n".join(f"{code}  {meaning}" for code, meaning in EXIT_CODES.items())
    return f"Exit codes (every command):\n\n{rows}"


def console() -> Console:
    """A Rich console on stdout, made now: its width follows the terminal (or ``COLUMNS``) when the
    command prints, not when the CLI was imported (a module-level console fixes it once per process)."""
    from rich.console import Console

    return Console()


def err_console() -> Console:
    """:func:`console` on stderr (status spinners, errors)."""
    from rich.console import Console

    return Console(stderr=True)


def settings_error(exc: ValidationError) -> MloopError:
    """An invalid ``MLOOP_*`` value as an error naming the variable and the rule, never the value (it may be a
    secret, e.g. MLOOP_DATABASE_URL); rejected input (exit 4). Pure."""
    problems = []
    for e in exc.errors():
        loc = e.get("loc") or ()
        name = f"MLOOP_{str(loc[0]).upper()}" if loc else "an MLOOP_* setting"
        problems.append(f"{name}: {e.get('msg', 'invalid')}")
    return RejectedError(
        f"invalid setting {'; '.join(problems)}",
        where="environment (MLOOP_* variables)",
        fix="set a valid value or unset it; README.md's settings table describes each setting",
    )


def read_settings() -> Settings:
    """Settings from the environment, without touching the disk or this process's environment: for
    read-only commands (``status``, ``models``, ``data list``...), which must leave MLOOP_HOME as it is. An
    invalid value is an MloopError (:func:`settings_error`), not a traceback."""
    from pydantic import ValidationError

    from mloop.core.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        raise settings_error(exc) from None


def load_settings() -> Settings:
    """:func:`read_settings`, applied to this process (state folders created, library variables set):
    for commands that write. Call it inside :func:`user_errors`."""
    settings = read_settings()
    settings.apply_env()
    return settings


def use_prefect_api(settings: Settings) -> None:
    """Point Prefect at PREFECT_API_URL, else at a running local server, else its ephemeral server.

    Called before Prefect is imported (Prefect reads its settings then), so the check is the light
    client's. Prefect's own console logs are kept to CRITICAL: the command prints the outcome
    itself (a rejection report, not a flow traceback); the flow run, its logs and artifact are in
    the Prefect UI as usual.
    """
    from mloop.core.errors import NotReadyError
    from mloop.platform.client import PrefectApi

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    # A first temporary server on a fresh PREFECT_HOME runs migrations: give it time on 2 cores.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        if not PrefectApi(configured).healthy(deadline=5.0, timeout=5.0):
            raise NotReadyError(
                "the Prefect API is not reachable",
                where=f"PREFECT_API_URL={configured}",
                fix="start it with `mloop up`, or unset PREFECT_API_URL to run with a temporary server",
            )
        return
    if PrefectApi(settings.prefect_api_url).healthy(timeout=1.0):
        os.environ["PREFECT_API_URL"] = settings.prefect_api_url
    # else: no server, Prefect starts a temporary one for this run


def load_flow_settings() -> Settings:
    """:func:`load_settings` for a command that runs a Prefect flow: Prefect pointed at its API
    (:func:`use_prefect_api`). Call it inside :func:`user_errors` (an unreachable API is an MloopError)."""
    settings = load_settings()
    use_prefect_api(settings)
    return settings


def to_jsonable(value: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    """One JSON document on stdout (nothing else is printed to stdout with --json)."""
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, default=str) + "\n")
    sys.stdout.flush()


def error_document(
    code: int, what: str, *, hint: str | None = None, where: str | None = None
) -> dict[str, Any]:
    """An error as the JSON object ``--json`` prints on stdout: ``error``, ``code``, ``hint``, ``where``. Pure."""
    return {"error": what, "code": code, "hint": hint or "", "where": where or ""}


def report_error(exc: MloopError, *, json_out: bool) -> None:
    """Print ``exc`` for people: a JSON object on stdout under ``--json``, else red lines on stderr."""
    if json_out:
        print_json(error_document(exc.exit_code, exc.what, hint=exc.fix, where=exc.where))
        return
    err = err_console()
    err.print(f"[bold red]error:[/] {exc.what}", highlight=False)
    if exc.where:
        err.print(f"  [bold]where:[/] {exc.where}", highlight=False)
    if exc.fix:
        err.print(f"  [bold]fix:[/] {exc.fix}", highlight=False)


@contextmanager
def user_errors(json_out: bool = False) -> Iterator[None]:
    """Turn an MloopError into its message (JSON on stdout with ``json_out``, else red on stderr) and its
    exit code (no traceback)."""
    try:
        yield
    except MloopError as exc:
        report_error(exc, json_out=json_out)
        raise typer.Exit(exc.exit_code) from None


def deprecated(new_value: Any, old_value: Any, *, old: str, new: str) -> Any:
    """The value of an option renamed from ``old`` to ``new``: the old spelling still works for one release,
    with a warning on stderr; both given with different values is a usage error (exit 2)."""
    if old_value is None or old_value == [] or old_value is False:
        return new_value
    print(
        f"warning: {old} is deprecated, use {new} (the old spelling goes in the next release)",
        file=sys.stderr,
    )
    if new_value not in (None, [], False) and new_value != old_value:
        raise ClickUsageError(f"{old} and {new} are the same option; give only {new}")
    return old_value


def _fail(exc: ClickException, json_out: bool, rich_markup_mode: Any) -> NoReturn:
    """A click error (usage, bad parameter) as JSON or as Typer prints it, then its exit code."""
    if json_out:
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "mloop"
        print_json(
            error_document(
                exc.exit_code, exc.format_message(), hint=f"see `{where} --help`", where=where
            )
        )
    elif rich_markup_mode is not None:
        from typer import rich_utils

        rich_utils.rich_format_error(exc)
    else:
        exc.show()
    sys.exit(exc.exit_code)


class MloopGroup(TyperGroup):
    """The top-level group: every error of every command leaves with its code from the table and without
    a traceback, as JSON on stdout when ``--json`` is on the command line (usage errors included)."""

    def main(  # type: ignore[override]  # click's signature, with Typer's extra keyword
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        json_out = "--json" in argv
        try:
            rv = super().main(argv, prog_name, complete_var, False, **extra)
        except ClickException as exc:
            _fail(exc, json_out, self.rich_markup_mode)
        except typer.Abort:
            print("Aborted!", file=sys.stderr)
            sys.exit(EXIT_FAILURE)
        except MloopError as exc:  # raised outside a command's user_errors (e.g. in a callback)
            report_error(exc, json_out=json_out)
            sys.exit(exc.exit_code)
        sys.exit(rv if isinstance(rv, int) else EXIT_OK)


class StepPrinter:
    """Renders the platform's step events (:mod:`mloop.platform.progress`) on stderr: a Rich status line
    while a step runs, then ``step ... ok (7.2 s) detail``. Stdout stays free for ``--json``."""

    def __init__(self) -> None:
        self._err = err_console()
        self._status: Any = None

    def __call__(self, event: Any) -> None:
        if event.state == "start":
            self._status = self._err.status(f"{event.step} ...")
            self._status.start()
            return
        if self._status is not None:
            self._status.stop()
            self._status = None
        mark = "[green]ok[/]" if event.state == "ok" else "[bold red]failed[/]"
        detail = f"  [dim]{event.detail}[/]" if event.detail else ""
        self._err.print(f"{event.step} ... {mark} ({event.seconds:.1f} s){detail}", highlight=False)

"""Helpers every CLI module shares: settings, JSON output, readable errors."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console

from mloop.core.errors import MloopError
from mloop.core.settings import Settings


def console() -> Console:
    """A Rich console on stdout, made now: its width follows the terminal (or ``COLUMNS``) when the
    command prints, not when the CLI was imported (a module-level console fixes it once per process)."""
    return Console()


def err_console() -> Console:
    """:func:`console` on stderr (status spinners, errors)."""
    return Console(stderr=True)


def settings_error(exc: ValidationError) -> MloopError:
    """An invalid ``MLOOP_*`` value as an error naming the variable and the rule, never the value (it may be a
    secret, e.g. MLOOP_DATABASE_URL). Pure."""
    problems = []
    for e in exc.errors():
        loc = e.get("loc") or ()
        name = f"MLOOP_{str(loc[0]).upper()}" if loc else "an MLOOP_* setting"
        problems.append(f"{name}: {e.get('msg', 'invalid')}")
    return MloopError(
        f"invalid setting {'; '.join(problems)}",
        where="environment (MLOOP_* variables)",
        fix="set a valid value or unset it; README.md's settings table describes each setting",
    )


def load_settings() -> Settings:
    """Settings from the environment, applied to this process (entry points only); an invalid value is an
    MloopError (:func:`settings_error`), not a traceback."""
    try:
        settings = Settings()
    except ValidationError as exc:
        raise settings_error(exc) from None
    settings.apply_env()
    return settings


def use_prefect_api(settings: Settings) -> None:
    """Point Prefect at PREFECT_API_URL, else at a running local server, else its ephemeral server.

    Called before Prefect is imported (Prefect reads its settings then), so the check is the light
    client's. Prefect's own console logs are kept to CRITICAL: the command prints the outcome
    itself (a rejection report, not a flow traceback); the flow run, its logs and artifact are in
    the Prefect UI as usual.
    """
    from mloop.platform.client import PrefectApi

    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    # A first temporary server on a fresh PREFECT_HOME runs migrations: give it time on 2 cores.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        if not PrefectApi(configured).healthy(deadline=5.0, timeout=5.0):
            raise MloopError(
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


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn an MloopError into a red message on stderr and its exit code (no traceback)."""
    try:
        yield
    except MloopError as exc:
        err_console().print(f"[bold red]error:[/] {exc.what}")
        if exc.where:
            err_console().print(f"  [bold]where:[/] {exc.where}")
        if exc.fix:
            err_console().print(f"  [bold]fix:[/] {exc.fix}")
        raise typer.Exit(exc.exit_code) from None

"""Errors users see. Each says what went wrong, where, and how to fix it.

Each kind carries the CLI's exit code for its condition (the table is :data:`EXIT_CODES`, shown by
``mloop --help`` and docs/architecture.md): the same condition exits with the same code in every
command.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_REJECTED = 4
EXIT_NOT_READY = 5

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "ok",
    EXIT_FAILURE: "failure: an unexpected error, or a step that failed (a flow run, a server that would not start)",
    EXIT_USAGE: "usage: a wrong command line (unknown option, missing or invalid argument, bad name)",
    EXIT_NOT_FOUND: "not found: unknown model, dataset, version, prediction, run or file",
    EXIT_REJECTED: "rejected input: a dataset refused by its contract, an unreadable or malformed file, an invalid setting",
    EXIT_NOT_READY: "not ready or conflict: no champion, the platform (or a server) not running, a lock held elsewhere",
}
"""Exit code -> the condition it means, for every ``mloop`` command."""


class MloopError(Exception):
    """An error with a message meant for people: what, where, how to fix."""

    exit_code: int = EXIT_FAILURE

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        parts = [what]
        if where:
            parts.append(f"where: {where}")
        if fix:
            parts.append(f"fix: {fix}")
        super().__init__("\n".join(parts))


class UsageError(MloopError):
    """A command line the command cannot act on (e.g. two values for one thing, an unknown estimator)."""

    exit_code = EXIT_USAGE


class NotFoundError(MloopError):
    """A dataset, version, model or prediction that does not exist."""

    exit_code = EXIT_NOT_FOUND


class RejectedError(MloopError):
    """Input refused: data that breaks its contract, a file that cannot be read, an invalid setting."""

    exit_code = EXIT_REJECTED


class NotReadyError(MloopError):
    """The thing exists but is not in a state to act on: no champion yet, a server not running, a lock
    held by another process."""

    exit_code = EXIT_NOT_READY

"""Errors users see. Each says what went wrong, where, and how to fix it."""

from __future__ import annotations


class MloopError(Exception):
    """An error with a message meant for people: what, where, how to fix."""

    exit_code: int = 1

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


class NotFoundError(MloopError):
    """A dataset, version, model or prediction that does not exist."""

    exit_code = 3

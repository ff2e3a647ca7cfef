"""Names that come from outside (datasets, models, alerts): one rule, checked at every entry.

A name becomes part of file paths under MLOOP_HOME (``locks/registry-<name>.lock``,
``audit/<name>.jsonl``, report folders), of MLflow filter strings and of Prefect resource ids, so
it is checked before any of that happens: letters, digits, ``-``, ``_`` or ``.``, starting with a
letter or digit, at most 100 characters, never ``.``/``..``. Pure: no I/O.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, WithJsonSchema

from mloop.core.errors import MloopError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
NAME_RULE = (
    "letters, digits, '-', '_' or '.', starting with a letter or digit (at most 100 characters)"
)


def check_name(name: str, what: str = "dataset") -> str:
    """``name`` when it follows the rule; else an error naming ``what`` it was and the rule."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or ".." in name:
        raise MloopError(f"invalid {what} name {name!r}", fix=f"use {NAME_RULE}")
    return name


def _check_model_name(name: str) -> str:
    try:
        return check_name(name, "model")
    except MloopError as exc:  # pydantic turns a ValueError into a readable validation error
        raise ValueError(str(exc)) from exc


def _check_dataset_name(name: str) -> str:
    try:
        return check_name(name, "dataset")
    except MloopError as exc:
        raise ValueError(str(exc)) from exc


_SCHEMA = {"type": "string", "pattern": NAME_PATTERN.pattern, "maxLength": 100}
"""What forms (the Prefect UI's parameter form) show and check before a run is even created."""

ModelName = Annotated[str, AfterValidator(_check_model_name), WithJsonSchema(_SCHEMA)]
"""A registered model name (= its dataset's name) as a validated pydantic / flow parameter type."""
DatasetName = Annotated[str, AfterValidator(_check_dataset_name), WithJsonSchema(_SCHEMA)]
"""A dataset name as a validated pydantic / flow parameter type."""


def child_path(root: Path, *parts: str) -> Path:
    """``root / parts...`` resolved, refused when it would leave ``root`` (a second line of defence)."""
    base = root.resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        raise MloopError(
            f"path {'/'.join(parts)!r} leaves {base}", fix=f"use names made of {NAME_RULE}"
        )
    return path

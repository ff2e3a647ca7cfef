"""The value of a Prefect call made from synchronous code.

Prefect's ``async_dispatch`` methods (``Automation.read``, ``Block.load``, ``run_deployment`` ...)
run their synchronous twin outside an event loop and return its value, but are annotated
``R | Coroutine[..., R]`` for both cases. The flows call them from synchronous code only.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

R = TypeVar("R")


def sync_result(value: R | Coroutine[Any, Any, R]) -> R:
    """``value`` itself; RuntimeError if it is a coroutine (the call was made inside an event loop,
    where its ``a``-prefixed twin must be awaited instead)."""
    if isinstance(value, Coroutine):
        value.close()  # never awaited: close it so Python does not warn about it
        raise RuntimeError(
            "a Prefect call returned a coroutine: it ran inside an event loop; await its async twin"
        )
    return value

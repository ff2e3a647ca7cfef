"""Step-by-step progress of the long platform commands (``mloop up``, ``down``, ``infra up``).

The platform layer reports each step through a :class:`Progress` callback and prints nothing itself;
the CLI renders the events (a Rich status line per step, then ``... ok (7.2 s)``). Without a callback
the steps run silently, as library calls should.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, Protocol

StepState = Literal["start", "ok", "failed"]


@dataclass(frozen=True)
class StepEvent:
    """One step starting, or ending ``ok`` or ``failed`` after ``seconds`` (``detail``: what it did)."""

    step: str
    state: StepState
    seconds: float = 0.0
    detail: str = ""


class Progress(Protocol):
    """Receives each :class:`StepEvent` as it happens (the CLI prints it)."""

    def __call__(self, event: StepEvent, /) -> None: ...


@dataclass
class StepNote:
    """What a running step may say about its outcome (shown after ``ok``)."""

    detail: str = ""


@contextmanager
def step(progress: Progress | None, name: str) -> Iterator[StepNote]:
    """Report ``name`` started, then ended ok (or failed, re-raising) with its duration; a no-op without
    ``progress``."""
    note = StepNote()
    if progress is None:
        yield note
        return
    t0 = time.monotonic()
    progress(StepEvent(name, "start"))
    try:
        yield note
    except BaseException:
        progress(StepEvent(name, "failed", time.monotonic() - t0, note.detail))
        raise
    progress(StepEvent(name, "ok", time.monotonic() - t0, note.detail))

"""The models one prediction service holds: name -> served tag, loaded or not, last use, memory cost.

One service process serves many models (issue 12), the way ModelMesh and Triton share servers:
every model has a *slot* (its served tag, what ``GET /models/<name>`` says about it, its schema
signature, whether it is loaded, its cost in MB, when it was last used). Rules:

- **Budget** (``MLOOP_SERVE_MEMORY_MB``; 0 = no limit): after a load, while the loaded models'
  costs add up to more than the budget, the least recently used loaded model is unloaded, never
  the one just loaded and never one a request is being answered with (``in_use``). A model that
  alone is over the budget stays loaded (the service must answer); the budget is then exceeded
  and the :attr:`ModelSet.over_budget_mb` says by how much.
- **On demand**: a request to an unloaded model loads it again from the BentoML store (the
  ``load`` callable), under that model's own lock, so concurrent requests load it once; other
  models answer meanwhile.
- **Cost**: what one load adds to the process's resident memory (``rss_mb`` before and after), but
  at least the model's own estimate (``estimate_mb``: its files' size): RSS deltas are noisy while
  other threads allocate and can even be negative after a collection; a reload keeps the
  highest cost measured for the model (a reload into memory the allocator kept from the last
  unload looks free, but the model costs the same). The sum of the recorded
  costs (not the process RSS: freed memory is not always returned to the OS) is what the budget
  is checked against, so the rule is deterministic and testable.
- **Isolation**: a rollout replaces one slot's model (:meth:`ModelSet.put`); no other slot is
  read or written, except that the budget may unload a cold one (which then reloads unchanged).

Thread-safe (one lock for the slots, one per model for loading); generic in the model type, so
it is unit-testable without BentoML or ONNX (``tests/serving/test_modelset.py``).
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger(__name__)


class Servable(Protocol):
    """What the model set needs from a loaded model (``serving.api.runtime.LiveModel`` has it)."""

    tag: str
    model_name: str

    @property
    def signature(self) -> Any: ...

    def describe(self) -> dict[str, Any]: ...


M = TypeVar("M", bound=Servable)


class UnknownModel(KeyError):
    """No model of that name is served."""


@dataclass
class Slot(Generic[M]):
    """One served model."""

    name: str
    tag: str
    info: dict[str, Any]  # describe() of the served version (kept while unloaded)
    signature: Any  # its schema signature (kept while unloaded: a rollout checks against it)
    live: M | None
    cost_mb: float
    last_used: int
    in_use: int = 0
    loads: int = 0
    evictions: int = 0
    load_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


@dataclass(frozen=True)
class Change:
    """What :meth:`ModelSet.put` did: ``status`` is ``added`` or ``switched``; ``previous`` the
    replaced version's description (None when added); ``evicted`` the models unloaded to fit."""

    status: str
    previous: dict[str, Any] | None
    evicted: list[str]


def _no_rss() -> float:
    return 0.0


class ModelSet(Generic[M]):
    """The served models (see the module docstring)."""

    def __init__(
        self,
        load: Callable[[str], M],
        *,
        budget_mb: float = 0.0,
        rss_mb: Callable[[], float] = _no_rss,
        estimate_mb: Callable[[M], float] = lambda model: 0.0,
        on_load: Callable[[str, str, float], None] | None = None,
        on_evict: Callable[[str, str], None] | None = None,
    ) -> None:
        self._load = load
        self.budget_mb = float(budget_mb)
        self._rss_mb = rss_mb
        self._estimate_mb = estimate_mb
        self._on_load = on_load
        self._on_evict = on_evict
        self._slots: dict[str, Slot[M]] = {}
        self._lock = threading.Lock()
        self._clock = itertools.count(1)

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, name: object) -> bool:
        return name in self._slots

    def names(self) -> list[str]:
        """The served model names, sorted."""
        return sorted(self._slots)

    def slot(self, name: str) -> Slot[M]:
        """The slot of ``name`` (raises :class:`UnknownModel`)."""
        try:
            return self._slots[name]
        except KeyError:
            raise UnknownModel(name) from None

    def describe(self, name: str) -> dict[str, Any]:
        """``GET /models/<name>``: the served version's description plus ``loaded``."""
        slot = self.slot(name)
        return {**slot.info, "loaded": slot.live is not None}

    def describe_all(self) -> dict[str, dict[str, Any]]:
        """``GET /models``: :meth:`describe` of every model, by name."""
        return {name: self.describe(name) for name in self.names()}

    def sole(self) -> M | None:
        """The loaded model when exactly one model is served (the legacy routes' fast path), else None."""
        if len(self._slots) != 1:
            return None
        for slot in self._slots.values():
            return slot.live
        return None

    @property
    def loaded(self) -> list[str]:
        """Names of the loaded models."""
        return sorted(n for n, s in self._slots.items() if s.live is not None)

    @property
    def used_mb(self) -> float:
        """The recorded costs of the loaded models, summed."""
        return sum(s.cost_mb for s in self._slots.values() if s.live is not None)

    @property
    def over_budget_mb(self) -> float:
        """How far the loaded models are over the budget (0 when within it or with no budget)."""
        return max(0.0, self.used_mb - self.budget_mb) if self.budget_mb > 0 else 0.0

    # ------------------------------------------------------------------ loading

    def measure(self, make: Callable[[], M]) -> tuple[M, float]:
        """Run ``make`` (a load) and return its model with its cost in MB (see the module docstring)."""
        before = self._rss_mb()
        model = make()
        delta = self._rss_mb() - before
        return model, max(delta, self._estimate_mb(model), 0.0)

    def put(self, model: M, cost_mb: float) -> Change:
        """Serve ``model`` under its name: add a slot, or replace the slot's model (a rollout). Only
        that slot changes; then cold models are unloaded to fit the budget."""
        name = model.model_name
        with self._lock:
            old = self._slots.get(name)
            previous = old.info if old is not None else None
            slot: Slot[M] = Slot(
                name=name,
                tag=model.tag,
                info=model.describe(),
                signature=model.signature,
                live=model,
                cost_mb=cost_mb,
                last_used=next(self._clock),
                loads=(old.loads if old is not None else 0) + 1,
                evictions=old.evictions if old is not None else 0,
            )
            if old is not None:
                slot.load_lock = old.load_lock
                slot.in_use = (
                    old.in_use
                )  # requests answering with the old version still release here
            self._slots[name] = slot  # the switch: one dict entry replaced
            evicted = self._fit(keep=name)
        self._loaded(name, model.tag, cost_mb)
        self._evicted(evicted)
        return Change(
            status="added" if old is None else "switched",
            previous=previous,
            evicted=[n for n, _ in evicted],
        )

    def checkout(self, name: str) -> M | None:
        """The loaded model of ``name``, marked in use (pair with :meth:`checkin`); None when it is
        not loaded (then call :meth:`checkout_loading` off the event loop). Raises :class:`UnknownModel`."""
        with self._lock:
            slot = self.slot(name)
            live = slot.live
            if live is None:
                return None
            slot.in_use += 1
            slot.last_used = next(self._clock)
            return live

    def checkout_loading(self, name: str) -> M:
        """:meth:`checkout`, loading the model first if it is unloaded (blocking: under the model's
        own lock, from the ``load`` callable; other models answer meanwhile)."""
        while True:
            live = self.checkout(name)
            if live is not None:
                return live
            with self.slot(name).load_lock:
                live = self.checkout(name)  # another request loaded it while this one waited
                if live is not None:
                    return live
                tag = self.slot(name).tag
                model, cost = self.measure(partial(self._load, tag))  # this loop's tag, bound now
                with self._lock:
                    current = self.slot(name)
                    if current.tag != tag:
                        continue  # a rollout replaced the model meanwhile: serve the new one
                    if current.live is not None:
                        current.in_use += 1
                        current.last_used = next(self._clock)
                        return current.live
                    evicted = self._adopt_locked(current, model, cost)
            self._loaded(name, tag, cost)
            self._evicted(evicted)
            return model

    def _adopt_locked(self, slot: Slot[M], model: M, cost: float) -> list[tuple[str, str]]:
        slot.live = model
        slot.cost_mb = max(cost, slot.cost_mb) if slot.tag == model.tag else cost
        slot.loads += 1
        slot.in_use += 1
        slot.last_used = next(self._clock)
        return self._fit(keep=slot.name)

    def checkin(self, name: str) -> None:
        """A request answered with ``name``'s model is done."""
        with self._lock:
            slot = self._slots.get(name)
            if slot is not None and slot.in_use > 0:
                slot.in_use -= 1

    @contextmanager
    def using(self, name: str) -> Iterator[M]:
        """:meth:`checkout_loading` ... :meth:`checkin` (blocking; for threads)."""
        live = self.checkout_loading(name)
        try:
            yield live
        finally:
            self.checkin(name)

    # ------------------------------------------------------------------ the budget

    def _fit(self, keep: str) -> list[tuple[str, str]]:
        """Unload least recently used models (not ``keep``, not in use) until within the budget.
        Called with the lock held; returns (name, tag) of the unloaded ones."""
        evicted: list[tuple[str, str]] = []
        if self.budget_mb <= 0:
            return evicted
        while self.used_mb > self.budget_mb:
            cold = [
                s
                for s in self._slots.values()
                if s.live is not None and s.name != keep and s.in_use == 0
            ]
            if not cold:
                busy = {
                    s.name: s.in_use
                    for s in self._slots.values()
                    if s.live is not None and s.name != keep
                }
                log.log(
                    logging.WARNING if busy else logging.INFO,
                    "the loaded models need %.0f MB, over the %.0f MB budget (MLOOP_SERVE_MEMORY_MB); %s",
                    self.used_mb,
                    self.budget_mb,
                    f"the others are answering requests now (in use: {busy})"
                    if busy
                    else f"{keep} alone needs more",
                )
                break
            victim = min(cold, key=lambda s: s.last_used)
            victim.live = None
            victim.evictions += 1
            evicted.append((victim.name, victim.tag))
        return evicted

    def _loaded(self, name: str, tag: str, cost: float) -> None:
        log.info(
            "loaded model %s (%s, %.1f MB); %d of %d models loaded, %.0f MB",
            name,
            tag,
            cost,
            len(self.loaded),
            len(self),
            self.used_mb,
        )
        if self._on_load is not None:
            self._on_load(name, tag, cost)

    def _evicted(self, evicted: list[tuple[str, str]]) -> None:
        for name, tag in evicted:
            log.info(
                "unloaded the least recently used model %s (%s) to stay within %.0f MB",
                name,
                tag,
                self.budget_mb,
            )
            if self._on_evict is not None:
                self._on_evict(name, tag)

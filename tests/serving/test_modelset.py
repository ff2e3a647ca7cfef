"""The model set of a many-model service (serving/api/modelset.py), without BentoML: LRU order, the
memory budget, on-demand loads, rollout isolation; one negative test per rule."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from serving.api.modelset import ModelSet, UnknownModel


@dataclass
class Fake:
    """A loaded model as the set sees it."""

    tag: str
    cost: float = 10.0
    shape: str = "a"
    loaded_at: float = field(default_factory=time.monotonic)
    # a plain attribute, as Servable declares it (a read-only property does not fit the protocol)
    model_name: str = field(init=False)

    def __post_init__(self) -> None:
        self.model_name = self.tag.partition(":")[0]

    @property
    def signature(self) -> Any:
        return self.shape

    def describe(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "bentoml_tag": self.tag,
            "model_version": self.tag.partition(":v")[2],
        }


class Store:
    """The BentoML store stand-in: counts loads per tag; ``slow`` holds a load for a while."""

    def __init__(self, costs: dict[str, float] | None = None, slow: float = 0.0) -> None:
        self.costs = costs or {}
        self.slow = slow
        self.loads: list[str] = []
        self._lock = threading.Lock()

    def load(self, tag: str) -> Fake:
        if self.slow:
            time.sleep(self.slow)
        with self._lock:
            self.loads.append(tag)
        return Fake(tag, self.costs.get(tag, 10.0))


def make(
    budget: float = 0.0, store: Store | None = None
) -> tuple[ModelSet[Fake], Store, list[str]]:
    store = store or Store()
    evicted: list[str] = []
    models: ModelSet[Fake] = ModelSet(
        store.load,
        budget_mb=budget,
        estimate_mb=lambda m: m.cost,
        on_evict=lambda name, tag: evicted.append(name),
    )
    return models, store, evicted


def put(models: ModelSet[Fake], tag: str, cost: float = 10.0, shape: str = "a") -> Any:
    live, measured = models.measure(lambda: Fake(tag, cost, shape))
    return models.put(live, measured)


def use(models: ModelSet[Fake], name: str) -> Fake:
    with models.using(name) as live:
        return live


def test_models_are_added_and_listed_with_their_loaded_state() -> None:
    models, _, _ = make()
    assert put(models, "loans:v1").status == "added"
    assert put(models, "rates:v1").status == "added"
    assert models.names() == ["loans", "rates"]
    assert models.describe_all()["loans"] == {
        "model_name": "loans",
        "bentoml_tag": "loans:v1",
        "model_version": "1",
        "loaded": True,
    }
    assert models.sole() is None  # several models: no legacy fast path


def test_one_model_is_the_sole_model() -> None:
    models, _, _ = make()
    put(models, "loans:v1")
    sole = models.sole()
    assert sole is not None and sole.tag == "loans:v1"


def test_an_unknown_name_raises() -> None:
    models, _, _ = make()
    put(models, "loans:v1")
    with pytest.raises(UnknownModel):
        models.checkout("rates")
    with pytest.raises(UnknownModel):
        models.describe("rates")


def test_the_budget_unloads_the_least_recently_used_model() -> None:
    models, _, evicted = make(budget=25)
    put(models, "a:v1")
    put(models, "b:v1")
    use(models, "a")  # b is now the least recently used
    change = put(models, "c:v1")
    assert change.evicted == ["b"] and evicted == ["b"]
    assert models.loaded == ["a", "c"] and models.used_mb == 20
    assert models.describe("b")["loaded"] is False
    assert models.describe("b")["bentoml_tag"] == "b:v1"  # still served, just unloaded


def test_without_a_budget_nothing_is_unloaded() -> None:
    models, _, evicted = make(budget=0)
    for i in range(30):
        put(models, f"m{i}:v1", cost=100)
    assert len(models.loaded) == 30 and evicted == []


def test_an_unloaded_model_is_loaded_again_on_demand_from_the_store() -> None:
    models, store, _ = make(budget=15)
    put(models, "a:v1")
    put(models, "b:v1")  # unloads a
    assert models.loaded == ["b"]
    live = use(models, "a")
    assert live.tag == "a:v1" and store.loads == ["a:v1"]
    assert models.loaded == ["a"]  # ... and b made room for it
    assert models.slot("a").loads == 2 and models.slot("a").evictions == 1


def test_concurrent_requests_load_an_unloaded_model_once() -> None:
    models, store, _ = make(budget=15, store=Store(slow=0.2))
    put(models, "a:v1")
    put(models, "b:v1")
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(use(models, "a").tag)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == ["a:v1"] * 8 and store.loads == ["a:v1"]


def test_a_load_does_not_block_other_models() -> None:
    models, _, _ = make(budget=25, store=Store(slow=1.0))
    put(models, "a:v1")
    put(models, "b:v1")
    put(models, "c:v1")  # unloads a
    loader = threading.Thread(target=use, args=(models, "a"))
    loader.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    assert use(models, "c").tag == "c:v1"
    assert time.monotonic() - t0 < 0.5  # not behind a's one-second load
    loader.join()


def test_a_model_in_use_is_never_unloaded() -> None:
    models, _, evicted = make(budget=15)
    put(models, "a:v1")
    held = models.checkout("a")  # a request is being answered with a
    assert held is not None
    put(models, "b:v1")
    assert evicted == [] and models.loaded == ["a", "b"] and models.over_budget_mb == 5
    models.checkin("a")
    put(models, "c:v1")
    assert "a" in evicted


def test_the_model_just_loaded_is_kept_even_alone_over_the_budget() -> None:
    models, _, evicted = make(budget=5)
    put(models, "big:v1", cost=50)
    assert models.loaded == ["big"] and evicted == [] and models.over_budget_mb == 45


def test_a_rollout_replaces_one_entry_and_leaves_the_others_alone() -> None:
    models, _, _ = make()
    put(models, "a:v1")
    put(models, "b:v1")
    before_b = models.slot("b")
    b_live = models.sole() or models.slot("b").live
    change = put(models, "a:v2")
    assert (
        change.status == "switched"
        and change.previous is not None
        and change.previous["bentoml_tag"] == "a:v1"
    )
    assert models.slot("a").tag == "a:v2"
    assert (
        models.slot("b") is before_b and models.slot("b").live is b_live
    )  # the very same entry and model


def test_a_request_racing_a_rollout_is_answered_by_one_whole_version() -> None:
    models, _, _ = make()
    put(models, "a:v1")
    held = models.checkout("a")
    put(models, "a:v2")
    assert held is not None and held.tag == "a:v1"  # in flight: finishes on the old version
    models.checkin("a")
    assert use(models, "a").tag == "a:v2"
    assert models.slot("a").in_use == 0


def test_an_on_demand_load_racing_a_rollout_serves_the_rolled_out_version() -> None:
    store = Store(slow=0.5)
    models, _, _ = make(budget=15, store=store)
    put(models, "a:v1")
    put(models, "b:v1")  # unloads a
    got: list[str] = []
    loader = threading.Thread(target=lambda: got.append(use(models, "a").tag))
    loader.start()
    time.sleep(0.1)
    put(models, "a:v2")  # while a:v1 loads
    loader.join()
    assert got == ["a:v2"] and models.slot("a").tag == "a:v2"


def test_the_cost_is_the_rss_growth_but_at_least_the_estimate() -> None:
    rss = iter([100.0, 180.0, 200.0, 199.0])
    models: ModelSet[Fake] = ModelSet(
        Store().load, rss_mb=lambda: next(rss), estimate_mb=lambda m: m.cost
    )
    _, cost = models.measure(lambda: Fake("a:v1", cost=5))
    assert cost == 80  # the process grew by 80 MB
    _, cost = models.measure(lambda: Fake("b:v1", cost=5))
    assert cost == 5  # shrank (a collection ran): the estimate is the floor


def test_a_reload_keeps_the_highest_cost_measured() -> None:
    rss = iter([0.0, 30.0, 0.0, 0.0, 0.0, 1.0])  # the reload of a looks almost free (memory reused)
    store = Store(costs={"a:v1": 1.0, "b:v1": 1.0})
    models: ModelSet[Fake] = ModelSet(
        store.load, budget_mb=35, rss_mb=lambda: next(rss), estimate_mb=lambda m: m.cost
    )
    a, cost = models.measure(lambda: Fake("a:v1", 1.0))
    models.put(a, cost)
    models.slot("a").live = None  # as if unloaded
    b, cost_b = models.measure(lambda: Fake("b:v1", 1.0))
    models.put(b, cost_b)
    use(models, "a")
    assert models.slot("a").cost_mb == 30

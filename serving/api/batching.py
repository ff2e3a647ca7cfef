"""A fix for BentoML 1.4's adaptive-batching wait after a burst (applied once per service process).

BentoML's ``CorkDispatcher`` holds a request back ("corks") while the number waiting times their
wait stays under the optimizer's ``wait``, and the optimizer learns ``wait`` as the mean wait of
its last 50 batches: waits that include the corking it imposed itself. After a burst of load the
burst's queueing time becomes the learned wait, and lone requests then keep waiting about that
long (measured with bench/serving.py: c=1 p50 1.2 ms before a c=32 burst, 12-15 ms after it), since
the estimate only decays by 5% per 5-second refresh.

The rule added: a cork that caught nobody (a batch of one) was useless, so corking stops at once
(wait 0; a positive wait still holds a lone request for about that long), and stays off at the
next refresh while batches of one continue. Under load, batches hold several requests and BentoML's learned
wait applies unchanged, so throughput under load is kept.
"""

from __future__ import annotations

from typing import Any


def _drop_useless_wait(optimizer: Any) -> None:
    optimizer.wait = 0.0


def bound_batching_wait() -> None:
    """Patch BentoML's batching ``Optimizer`` (idempotent) with the rule above."""
    from bentoml._internal.marshal.dispatcher import Optimizer

    if getattr(Optimizer, "_mloop_wait_bounded", False):
        return
    record, learn = Optimizer.log_outbound, Optimizer.trigger_refresh

    def log_outbound(self: Any, n: int, wait: float, duration: float) -> None:
        record(self, n, wait, duration)
        if n == 1:
            _drop_useless_wait(self)

    def trigger_refresh(self: Any) -> None:
        learn(self)
        if self.o_stat and self.o_stat[-1][0] == 1:
            _drop_useless_wait(self)

    Optimizer.log_outbound = log_outbound
    Optimizer.trigger_refresh = trigger_refresh
    Optimizer._mloop_wait_bounded = True  # pyright: ignore[reportAttributeAccessIssue]  # why: our mark on BentoML's class: patched once per process

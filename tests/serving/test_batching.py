"""The batching-wait rule (serving/api/batching.py) on BentoML's real Optimizer class."""

from __future__ import annotations

from serving.api.batching import bound_batching_wait


def _optimizer_after_a_burst():
    from bentoml._internal.marshal.dispatcher import Optimizer

    opt = Optimizer(max_latency=5.0)
    for _ in range(10):  # a burst: batches of 24 that each waited 12 ms
        opt.log_outbound(24, 0.012, 0.004)
    opt.trigger_refresh()
    return opt


def test_a_lone_request_drops_the_learned_wait() -> None:
    bound_batching_wait()
    opt = _optimizer_after_a_burst()
    assert opt.wait > 0.01  # BentoML learned the burst's wait
    opt.log_outbound(1, 0.012, 0.0004)  # the cork caught nobody
    assert opt.wait == 0.0
    opt.trigger_refresh()  # the refresh does not bring the burst's wait back while batches are of one
    assert opt.wait == 0.0


def test_batches_under_load_keep_bentomls_wait() -> None:
    bound_batching_wait()
    opt = _optimizer_after_a_burst()
    learned = opt.wait
    opt.log_outbound(16, 0.011, 0.003)
    opt.trigger_refresh()
    assert opt.wait >= 0.9 * learned

"""Unit tests of the promotion gate (pure): each rule can pass and can fail."""

from __future__ import annotations

import numpy as np
import pytest

from models.gate_decision import GateReport, decide, paired_bootstrap
from tests.models.helpers import gate_config

N = 1500


def _labels(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, N)


def _scores(y: np.ndarray, signal: float, seed: int) -> np.ndarray:
    """Probabilities whose separation grows with ``signal``."""
    rng = np.random.default_rng(seed)
    z = signal * (y - 0.5) + rng.normal(size=len(y))
    return 1 / (1 + np.exp(-z))


def _decide(y, chal, champ, *, slices=None, task="classification", **cfg) -> GateReport:
    base = np.full(len(y), float(np.mean(y)))
    return decide(
        model_name="m",
        task=task,
        y=y,
        challenger_scores=chal,
        champion_scores=champ,
        baseline_scores=base,
        config=gate_config(**cfg),
        slices=slices,
        challenger_version="2",
        champion_version="1" if champ is not None else None,
    )


def test_clearly_better_challenger_is_promoted() -> None:
    y = _labels()
    report = _decide(y, _scores(y, 2.5, 1), _scores(y, 1.0, 2))
    assert report.decision == "promote", report.summary()
    assert report.ci_low > 0 and report.gain >= 0.002


def test_worse_challenger_is_rejected() -> None:
    y = _labels()
    report = _decide(y, _scores(y, 1.0, 1), _scores(y, 2.5, 2))
    assert report.decision == "reject"
    assert report.gain < 0


def test_noise_only_difference_is_not_promoted() -> None:
    y = _labels()
    rng = np.random.default_rng(5)
    champ = _scores(y, 1.5, 1)
    chal = np.clip(champ + rng.normal(scale=0.01, size=N), 0, 1)  # same model, tiny jitter
    report = _decide(y, chal, champ, min_gain=0.0)
    assert report.decision == "reject"
    assert report.ci_low <= 0 <= report.ci_high


def test_gain_below_min_gain_is_rejected_even_if_significant() -> None:
    y = _labels()
    report = _decide(y, _scores(y, 2.5, 1), _scores(y, 1.0, 2), min_gain=0.5)
    assert report.decision == "reject"
    assert "min_gain" in report.reasons[0]


def test_slice_regression_blocks_promotion() -> None:
    y = _labels()
    segment = np.arange(N) % 4 == 0
    champ = _scores(y, 1.5, 2)
    chal = _scores(y, 3.0, 1)
    chal[segment] = np.random.default_rng(9).random(
        segment.sum()
    )  # challenger useless on the slice
    slices = {("segment", "B"): segment, ("segment", "A"): ~segment}
    blocked = _decide(y, chal, champ, slices=slices)
    assert blocked.decision == "reject", blocked.summary()
    assert blocked.gain > 0 and blocked.ci_low > 0  # better overall: only the slice blocks
    assert [s.level for s in blocked.slices if s.blocked] == ["B"]
    assert any("slice regression" in r for r in blocked.reasons)
    tolerant = _decide(y, chal, champ, slices=slices, slice_tolerance=1.0)
    assert tolerant.decision == "promote"


def test_first_model_must_beat_dummy_baseline_by_margin() -> None:
    y = _labels()
    good = _decide(y, _scores(y, 1.5, 1), None)
    assert good.decision == "promote" and good.reference == "baseline"
    useless = _decide(y, _scores(y, 0.0, 1), None)
    assert useless.decision == "reject"
    assert useless.ci_low <= 0
    short = _decide(y, _scores(y, 1.5, 1), None, baseline_margin=0.5)
    assert short.decision == "reject"
    assert "does not beat the dummy baseline" in short.reasons[0]


def test_lower_is_better_metric_is_signed_correctly() -> None:
    y = _labels()
    better = _decide(y, _scores(y, 2.5, 1), _scores(y, 1.0, 2), metric="log_loss")
    worse = _decide(y, _scores(y, 1.0, 1), _scores(y, 2.5, 2), metric="log_loss")
    assert not better.higher_is_better
    assert (
        better.challenger_value < better.reference_value
        and better.gain > 0
        and better.decision == "promote"
    )
    assert worse.gain < 0 and worse.decision == "reject"


def test_regression_task_uses_rmse_when_metric_does_not_apply() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=N)
    report = _decide(
        y, y + rng.normal(scale=0.2, size=N), y + rng.normal(scale=0.8, size=N), task="regression"
    )
    assert report.metric == "rmse" and report.decision == "promote"


def test_bootstrap_is_seeded_and_paired() -> None:
    y = _labels()
    a, b = _scores(y, 2.0, 1), _scores(y, 1.0, 2)
    g1 = paired_bootstrap("roc_auc", y, a, b, resamples=1000, seed=3)
    g2 = paired_bootstrap("roc_auc", y, a, b, resamples=1000, seed=3)
    g3 = paired_bootstrap("roc_auc", y, a, b, resamples=1000, seed=4)
    assert len(g1) == 1000 and np.array_equal(g1, g2) and not np.array_equal(g1, g3)
    assert np.allclose(
        paired_bootstrap("roc_auc", y, a, a, resamples=1000, seed=3), 0
    )  # paired: same model, zero gain


def test_config_requires_1000_resamples() -> None:
    with pytest.raises(ValueError):
        gate_config(resamples=100)


def test_report_renders_markdown_with_verdict_table_and_interval() -> None:
    y = _labels()
    seg = np.arange(N) % 2 == 0
    report = _decide(y, _scores(y, 2.5, 1), _scores(y, 1.0, 2), slices={("segment", "A"): seg})
    md = report.to_markdown()
    assert "PROMOTE" in md and "| roc_auc |" in md and "95% interval" in md and "segment=A" in md
    assert GateReport.model_validate_json(report.model_dump_json()) == report

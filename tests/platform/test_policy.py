"""Retrain policy: cooldown, daily budget, force, and the locked ledger (pure logic + a file)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitoring.policy import RetrainLedger, RetrainRecord, decide_retrain, ledger_path

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def rec(minutes: float, model: str = "loans") -> RetrainRecord:
    return RetrainRecord(model_name=model, started_at=T0 + timedelta(minutes=minutes))


def decide(history, now_min: float, *, cooldown=30.0, budget=6, force=False, model="loans"):
    return decide_retrain(
        history,
        model_name=model,
        now=T0 + timedelta(minutes=now_min),
        cooldown_minutes=cooldown,
        daily_budget=budget,
        force=force,
    )


def test_first_retrain_is_allowed() -> None:
    d = decide([], 0)
    assert d.allowed and d.retrains_in_window == 0 and d.last_retrain_at is None


def test_retrain_inside_cooldown_is_skipped_with_reason() -> None:
    d = decide([rec(0)], 29.9)
    assert not d.allowed
    assert d.reason.startswith("cooldown")
    assert d.next_allowed_at == T0 + timedelta(minutes=30)


def test_retrain_after_cooldown_is_allowed() -> None:
    assert decide([rec(0)], 30.0).allowed


def test_cooldown_is_per_model() -> None:
    assert decide([rec(0, model="other")], 1).allowed


def test_daily_budget_caps_retrains() -> None:
    history = [rec(m) for m in (0, 60, 120)]
    d = decide(history, 180, budget=3)
    assert not d.allowed and d.reason.startswith("daily budget")
    assert d.next_allowed_at == T0 + timedelta(hours=24)


def test_budget_window_is_rolling_24h() -> None:
    history = [rec(m) for m in (0, 60, 120)]
    assert decide(history, 24 * 60 + 1, budget=3).allowed


def test_budget_zero_switches_retraining_off() -> None:
    d = decide([], 0, budget=0)
    assert not d.allowed and d.reason.startswith("daily budget: 0") and d.next_allowed_at is None


def test_force_skips_cooldown_and_budget() -> None:
    d = decide([rec(0)], 1, budget=1, force=True)
    assert d.allowed and d.reason.startswith("forced")


def test_ledger_claim_appends_only_allowed(tmp_path: Path) -> None:
    ledger = RetrainLedger(ledger_path(tmp_path))
    first = ledger.claim(rec(0), cooldown_minutes=30, daily_budget=6)
    second = ledger.claim(rec(1), cooldown_minutes=30, daily_budget=6)
    assert first.allowed and not second.allowed
    assert len(ledger.read()) == 1


def test_ledger_burst_lets_exactly_one_through(tmp_path: Path) -> None:
    """Five claims at the same moment from threads: the lock lets exactly one pass."""
    ledger = RetrainLedger(ledger_path(tmp_path))

    def claim(i: int) -> bool:
        return (
            RetrainLedger(ledger.path)
            .claim(rec(0.01 * i), cooldown_minutes=30, daily_budget=6)
            .allowed
        )

    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(claim, range(5)))
    assert results.count(True) == 1
    assert len(ledger.read()) == 1

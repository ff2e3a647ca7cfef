"""A deterministic, loan-default-like demo dataset with drift scenarios.

``generate(scenario, rows, seed)`` is pure: the same arguments give the same DataFrame, and
:func:`write_frame` turns it into the same bytes (CSV or parquet). Each row is one loan
application at ``event_time``; ``target`` is 1 when the loan defaulted (about 15% of rows).

Scenarios (all but ``baseline`` cover the half-year *after* the baseline window):

- ``baseline``: the reference population. A few numeric columns have natural nulls (1-3%).
- ``covariate-shift``: the applicants change (lower incomes and credit scores, bigger loans, more
  small-business loans); the default mechanism is the same, so the default rate rises.
- ``concept-drift``: the same applicants (feature distributions unchanged) but the default
  mechanism changes: credit score and debt-to-income matter much less, loan purpose and
  employment type matter differently.
- ``new-category``: ``loan_purpose`` gets a level never seen in the baseline (``crypto``).
- ``missing-surge``: the null share of several numeric columns jumps (an upstream field broke).
- ``regime-change``: covariate shift and concept drift at once (the applicants change AND default
  for other reasons). The monitor sees the feature drift; the changed mechanism is what lets a model
  retrained on labelled traffic beat the old champion at the gate. The demo's drifted traffic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mloop.core.frames import write_frame

__all__ = ["FEATURE_ORDER", "SCENARIOS", "TASKS", "generate", "write_frame"]

TASKS = ("classification", "regression")
MIN_FEATURES = 3
FEATURE_ORDER = (
    "credit_score",
    "annual_income",
    "loan_amount",
    "debt_to_income",
    "loan_purpose",
    "employment_type",
    "age",
    "employment_years",
    "home_ownership",
    "region",
    "loan_term_months",
    "interest_rate",
    "num_open_accounts",
    "num_delinquencies",
)
"""The generator's features, most telling first: ``generate(features=N)`` keeps the first N."""
SCENARIOS = (
    "baseline",
    "covariate-shift",
    "concept-drift",
    "new-category",
    "missing-surge",
    "regime-change",
)

HOME_OWNERSHIP = {"RENT": 0.40, "MORTGAGE": 0.42, "OWN": 0.15, "OTHER": 0.03}
LOAN_PURPOSE = {
    "debt_consolidation": 0.38,
    "credit_card": 0.22,
    "home_improvement": 0.12,
    "car": 0.09,
    "medical": 0.06,
    "small_business": 0.05,
    "education": 0.04,
    "other": 0.04,
}
REGION = {"north": 0.22, "south": 0.26, "east": 0.2, "west": 0.2, "central": 0.12}
EMPLOYMENT_TYPE = {"salaried": 0.68, "self_employed": 0.14, "contract": 0.13, "unemployed": 0.05}
NEW_PURPOSE = "crypto"

BASELINE_START = pd.Timestamp("2025-01-01")
LATER_START = pd.Timestamp("2025-07-01")
WINDOW_SECONDS = 181 * 24 * 3600


@dataclass(frozen=True)
class Mechanism:
    """Coefficients of the default log-odds (the features -> target relationship)."""

    intercept: float = -2.75
    credit_score: float = -0.014  # per point above 690
    debt_to_income: float = 5.0  # per unit above 0.25
    loan_to_income: float = 2.0  # per unit above 0.2
    delinquencies: float = 0.35
    term_60: float = 0.45
    interest_rate: float = 0.04  # per point above 13
    employment_years: float = -0.03
    purpose: dict[str, float] = field(
        default_factory=lambda: {
            "small_business": 0.7,
            "medical": 0.35,
            "education": 0.2,
            "car": -0.25,
            "home_improvement": -0.15,
            NEW_PURPOSE: 0.9,
        }
    )
    employment: dict[str, float] = field(
        default_factory=lambda: {"unemployed": 0.9, "self_employed": 0.25, "contract": 0.2}
    )
    home: dict[str, float] = field(default_factory=lambda: {"RENT": 0.2, "OWN": -0.15})


BASELINE_MECHANISM = Mechanism()
DRIFTED_MECHANISM = Mechanism(
    intercept=-2.85,
    credit_score=-0.001,
    debt_to_income=0.3,
    loan_to_income=0.2,
    delinquencies=0.05,
    term_60=1.1,
    interest_rate=0.0,
    employment_years=0.0,
    purpose={
        "small_business": -0.6,
        "medical": -0.3,
        "car": 1.0,
        "home_improvement": 0.9,
        "credit_card": 0.6,
    },
    employment={"unemployed": -0.5, "self_employed": 1.0, "contract": 1.2, "salaried": 0.0},
    home={"RENT": -0.3, "OWN": 0.5, "MORTGAGE": 0.3},
)


def _choice(rng: np.random.Generator, levels: dict[str, float], n: int) -> np.ndarray:
    names = np.array(list(levels), dtype=object)
    probs = np.array(list(levels.values()), dtype=float)
    return names[rng.choice(len(names), size=n, p=probs / probs.sum())]


def _lookup(values: np.ndarray, table: dict[str, float]) -> np.ndarray:
    out = np.zeros(len(values))
    for level, coef in table.items():
        out[values == level] = coef
    return out


def _log_odds(f: dict[str, np.ndarray], m: Mechanism) -> np.ndarray:
    lti = f["loan_amount"] / f["annual_income"]
    return (
        m.intercept
        + m.credit_score * (f["credit_score"] - 690)
        + m.debt_to_income * (f["debt_to_income"] - 0.25)
        + m.loan_to_income * (np.minimum(lti, 1.5) - 0.2)
        + m.delinquencies * f["num_delinquencies"]
        + m.term_60 * (f["loan_term_months"] == 60)
        + m.interest_rate * (f["interest_rate"] - 13)
        + m.employment_years * (np.minimum(f["employment_years"], 20) - 5)
        + _lookup(f["loan_purpose"], m.purpose)
        + _lookup(f["employment_type"], m.employment)
        + _lookup(f["home_ownership"], m.home)
    )


def _with_nulls(rng: np.random.Generator, values: np.ndarray, share: float) -> np.ndarray:
    values = values.astype(float)
    if share > 0:
        values[rng.random(len(values)) < share] = np.nan
    return values


def _check_arguments(scenario: str, rows: int, task: str, features: int | None) -> None:
    """ValueError naming the argument that :func:`generate` cannot use, and what it accepts."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: choose one of {', '.join(SCENARIOS)}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")
    if features is not None and not MIN_FEATURES <= features <= len(FEATURE_ORDER):
        raise ValueError(
            f"features must be between {MIN_FEATURES} and {len(FEATURE_ORDER)} (or None for all)"
        )
    if rows < 1:
        raise ValueError("rows must be at least 1")


def _draw_features(rng: np.random.Generator, n: int, scenario: str) -> dict[str, np.ndarray]:
    """The 14 feature columns of ``n`` applications, drawn in a fixed order (the bytes depend on it)."""
    cov = scenario in ("covariate-shift", "regime-change")

    age = np.clip(rng.normal(44 if cov else 42, 12, n), 21, 75).round().astype(np.int64)
    income = np.exp(rng.normal(np.log(46_000 if cov else 55_000), 0.5, n))
    income = np.clip(income, 8_000, 600_000).round(2)
    employment_years = np.clip(rng.gamma(2.0, 3.0, n), 0, age - 18).round(1)
    employment_type = _choice(
        rng,
        {"salaried": 0.58, "self_employed": 0.18, "contract": 0.16, "unemployed": 0.08}
        if cov
        else EMPLOYMENT_TYPE,
        n,
    )
    home = _choice(rng, HOME_OWNERSHIP, n)
    purpose_levels = dict(LOAN_PURPOSE)
    if cov:
        purpose_levels.update({"small_business": 0.12, "medical": 0.1, "debt_consolidation": 0.3})
    purpose = _choice(rng, purpose_levels, n)
    if scenario == "new-category":
        purpose = np.where(rng.random(n) < 0.08, NEW_PURPOSE, purpose).astype(object)
    region = _choice(rng, REGION, n)
    credit_score = (
        np.clip(rng.normal(665 if cov else 690, 60, n), 300, 850).round().astype(np.int64)
    )
    loan_amount = np.clip(income * rng.uniform(0.05, 0.55 if cov else 0.45, n), 1_000, 80_000)
    loan_amount = (np.round(loan_amount / 50) * 50).astype(float)
    term = np.where(rng.random(n) < (0.4 if cov else 0.3), 60, 36).astype(np.int64)
    interest_rate = np.clip(
        13 - 0.025 * (credit_score - 690) + 1.2 * (term == 60) + rng.normal(0, 2, n), 4, 32
    )
    interest_rate = interest_rate.round(2)
    dti = np.clip(rng.beta(2.2, 6.0, n) + (0.05 if cov else 0.0), 0, 0.9).round(3)
    open_accounts = rng.poisson(8, n).astype(np.int64)
    delinquencies = rng.poisson(np.where(credit_score < 620, 0.8, 0.2)).astype(np.int64)

    columns = {
        "age": age,
        "annual_income": income,
        "employment_years": employment_years,
        "employment_type": employment_type,
        "home_ownership": home,
        "loan_purpose": purpose,
        "region": region,
        "credit_score": credit_score,
        "loan_amount": loan_amount,
        "loan_term_months": term,
        "interest_rate": interest_rate,
        "debt_to_income": dti,
        "num_open_accounts": open_accounts,
        "num_delinquencies": delinquencies,
    }
    return columns


def generate(
    scenario: str = "baseline",
    rows: int = 100_000,
    seed: int = 42,
    *,
    task: str = "classification",
    features: int | None = None,
) -> pd.DataFrame:
    """A loan-application dataset of ``rows`` rows for ``scenario`` (pure, deterministic in ``seed``).

    Columns: 14 features (9 numeric, 4 categorical + ``loan_term_months``), ``event_time``
    (sorted, within a half-year window) and ``target``: for ``task="classification"`` 0/1 (default
    within 12 months), for ``task="regression"`` the expected loss in percent (the default
    probability times 100, plus noise; the same mechanism and the same drift scenarios).
    ``features`` keeps only the first N columns of :data:`FEATURE_ORDER` (3 to 14; None: all), so
    several datasets of different shapes come from one generator (the multi-model benchmark).
    """
    _check_arguments(scenario, rows, task, features)
    rng = np.random.default_rng([seed, SCENARIOS.index(scenario)])
    n = rows
    columns = _draw_features(rng, n, scenario)
    mechanism = (
        DRIFTED_MECHANISM if scenario in ("concept-drift", "regime-change") else BASELINE_MECHANISM
    )
    p_default = 1.0 / (1.0 + np.exp(-_log_odds(columns, mechanism)))
    draw = rng.random(n)  # the classification draw, as before (the same bytes as without `task`)
    if task == "regression":
        target: np.ndarray = (100 * p_default + rng.normal(0, 1.5, n)).round(3)
    else:
        target = (draw < p_default).astype(np.int64)

    # Nulls are applied after the target: the outcome depends on the true values.
    surge = scenario == "missing-surge"
    for name, share in (
        ("annual_income", 0.30 if surge else 0.02),
        ("employment_years", 0.25 if surge else 0.03),
        ("debt_to_income", 0.20 if surge else 0.015),
    ):
        columns[name] = _with_nulls(rng, columns[name], share)

    start = BASELINE_START if scenario == "baseline" else LATER_START
    offsets = np.sort(rng.integers(0, WINDOW_SECONDS, n))
    event_time = start + pd.to_timedelta(offsets, unit="s")

    keep = set(FEATURE_ORDER[: features or len(FEATURE_ORDER)])
    df = pd.DataFrame(
        {
            "event_time": event_time,
            **{k: v for k, v in columns.items() if k in keep},
            "target": target,
        }
    )
    for name in ("employment_type", "home_ownership", "loan_purpose", "region"):
        if name in df:
            df[name] = df[name].astype(object)
    return df

"""Fixtures of the monitoring tests: small generated frames and their contract (module-scoped)."""

from __future__ import annotations

import pandas as pd
import pytest

from mloop.core.contract import DatasetContract, infer_contract
from mloop.core.generate import generate


@pytest.fixture(scope="session")
def baseline() -> pd.DataFrame:
    return generate("baseline", 3000, seed=1)


@pytest.fixture(scope="session")
def contract(baseline: pd.DataFrame) -> DatasetContract:
    return infer_contract(
        baseline, name="loans", target="target", task="classification", time_column="event_time"
    )

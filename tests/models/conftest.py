"""Fixtures for the models area (helpers live in tests/models/helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from mloop.core.contract import DatasetContract
from mloop.core.settings import Settings
from tests.helpers import flow_home
from tests.models.helpers import synth_contract, synth_frame


@pytest.fixture
def frame() -> pd.DataFrame:
    return synth_frame(2000, seed=1)


@pytest.fixture
def contract() -> DatasetContract:
    return synth_contract()


@pytest.fixture(scope="module")
def models_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One MLOOP_HOME + project checkout per test module (flows read it from the environment)."""
    root = tmp_path_factory.mktemp("models")
    with flow_home(root) as (settings, _mp):
        yield settings

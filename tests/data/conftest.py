"""Fixtures of the data tests: an onboarded project shared by a module."""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from mloop.core.datasets import ingest_dataset
from mloop.core.generate import generate, write_frame
from mloop.core.settings import Settings
from tests.data.helpers import DATASET, ROWS, Onboarded
from tests.helpers import make_project


@pytest.fixture(scope="module")
def onboarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Onboarded]:
    """A project whose dataset `loans` has one version (baseline, 2,000 rows), shared by a module."""
    root = tmp_path_factory.mktemp("onboarded")
    settings = Settings(home=root / "home", project_dir=make_project(root / "project"))
    settings.state.ensure()
    base = generate("baseline", ROWS, 1)
    source = write_frame(base, root / "v1.csv")
    v1 = ingest_dataset(settings, source, dataset=DATASET)
    yield Onboarded(
        settings=settings, base=pd.read_csv(source, parse_dates=["event_time"]), v1=v1, workdir=root
    )

"""Fixtures of the serving tests (helpers live in ``tests/serving/helpers.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mloop.core.contract import DatasetContract
from mloop.core.processes import ServiceProcess, stop_pid
from tests.serving.helpers import Packaged, make_contract, make_packaged, start


@pytest.fixture(scope="session")
def contract() -> DatasetContract:
    return make_contract()


@pytest.fixture(scope="session")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Packaged:
    """Three versions of model ``loans`` in a fresh BentoML store (v1 with its Bento)."""
    return make_packaged(tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="module")
def server(packaged: Packaged) -> Iterator[ServiceProcess]:
    """A real ``bentoml serve`` of loans:v1 on a free loopback port (token set); stopped by pid."""
    proc = start(packaged)
    try:
        yield proc
    finally:
        stop_pid(proc.pid, first=15)

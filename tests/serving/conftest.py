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
    """A real ``bentoml serve`` of loans:v1 on a free loopback port (token set); stopped by pid.

    Each module's service starts as a new one: the rollout records an earlier module's service left in the
    session's MLOOP_HOME would otherwise be restored by this one (started with the same tag)."""
    forget_rollouts(packaged)
    proc = start(packaged)
    try:
        yield proc
    finally:
        stop_pid(proc.pid, first=15)


def forget_rollouts(packaged: Packaged) -> None:
    """Remove every ``<home>/serving/<model>/rolled-out.json`` (what a service restores at start)."""
    from serving.api.rollout_record import ROLLED_OUT_FILE, SERVING_DIR

    for record in (packaged.settings.state.root / SERVING_DIR).glob(f"*/{ROLLED_OUT_FILE}"):
        record.unlink()

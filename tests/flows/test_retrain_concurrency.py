"""The retrain deployment with many models, on the session Prefect server (a real 3.9 server).

Runs are created from a deployment carrying prefect.yaml's own ``concurrency_limit`` of
``retrain/local`` and driven Pending -> Running the way a worker drives them (no worker polls the
queue, so nothing executes them). With every slot busy retraining other models, a drift run of one
more model must wait for a slot and then run: never be dropped. The old single-model setting
(limit 1, CANCEL_NEW) is driven the same way to show the difference the test guards against.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
import yaml

pytestmark = pytest.mark.integration
PREFECT_YAML = Path(__file__).resolve().parents[2] / "prefect.yaml"


@pytest.fixture
def client(prefect_server: Any) -> Iterator[Any]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as c:
        yield c


def retrain_concurrency() -> dict[str, Any]:
    """The ``concurrency_limit`` block of the retrain deployment in prefect.yaml."""
    doc = yaml.safe_load(PREFECT_YAML.read_text())
    (spec,) = [d for d in doc["deployments"] if d["entrypoint"] == "flows/retrain.py:retrain_flow"]
    return spec["concurrency_limit"]


def _drift_runs(client: Any, limit: int, strategy: str, models: int) -> list[UUID]:
    """A retrain deployment with (limit, strategy) and one drift-triggered run per model (as the trigger makes them)."""
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy, ConcurrencyOptions

    deployment = client.create_deployment(
        client.create_flow_from_name("retrain"),
        f"many-{uuid4().hex[:8]}",
        concurrency_limit=limit,
        work_queue_name=f"nobody-{uuid4().hex[:8]}",
        concurrency_options=ConcurrencyOptions(
            collision_strategy=ConcurrencyLimitStrategy(strategy)
        ),
    )
    return [
        client.create_flow_run_from_deployment(
            deployment, parameters={"model_name": f"mloop.model.m{i}", "trigger": "drift"}
        ).id
        for i in range(models)
    ]


def _start(client: Any, run_id: UUID) -> str:
    """What a worker does to a run it picks up: Pending, then Running; the state the run ends up in."""
    from prefect.states import Pending, Running

    client.set_flow_run_state(run_id, Pending())
    if client.read_flow_run(run_id).state.is_pending():
        client.set_flow_run_state(run_id, Running())
    state = client.read_flow_run(run_id).state
    return f"{state.type.value}:{state.name}"


def _active_slots(client: Any, run_id: UUID) -> int:
    deployment = client.read_deployment(client.read_flow_run(run_id).deployment_id)
    return int(deployment.global_concurrency_limit.active_slots)


def test_prefect_yaml_queues_retrains_of_other_models() -> None:
    spec = retrain_concurrency()
    assert spec["collision_strategy"] == "ENQUEUE" and spec["limit"] >= 2


def test_drift_of_another_model_waits_for_a_slot_and_then_runs(client: Any) -> None:
    from prefect.states import Completed

    spec = retrain_concurrency()
    limit = int(spec["limit"])
    runs = _drift_runs(client, limit, spec["collision_strategy"], models=limit + 1)
    assert [_start(client, r) for r in runs[:limit]] == [
        "RUNNING:Running"
    ] * limit  # models retrain side by side
    waiting = _start(client, runs[limit])  # one more model drifts while every slot is busy
    assert waiting == "SCHEDULED:AwaitingConcurrencySlot", waiting  # queued, not dropped
    client.set_flow_run_state(runs[0], Completed())
    # The freed slot goes to the waiting model: its Pending (where the slot is taken) is accepted; the
    # server made it wait until its rescheduled start time (about 30 s on), when the worker runs it.
    assert _start(client, runs[limit]) == "PENDING:Pending"
    assert _active_slots(client, runs[limit]) == limit


def test_the_old_single_model_setting_dropped_the_second_model(client: Any) -> None:
    """limit 1 + CANCEL_NEW (before issue 12): model m1's drift while m0 retrains was cancelled."""
    runs = _drift_runs(client, 1, "CANCEL_NEW", models=2)
    assert _start(client, runs[0]) == "RUNNING:Running"
    assert _start(client, runs[1]).startswith("CANCELLED")

"""Crash recovery: the policy (pure) and failing the MLflow runs a crashed flow run left open."""

from __future__ import annotations

from pathlib import Path

import pytest

from mloop.core.tags import TAG_FLOW_RUN_ID
from models.recovery import (
    CrashedRun,
    RecoveryReport,
    flow_run_id_from,
    plan_recovery,
    recovery_markdown,
    retry_of,
    retry_parameters,
    retry_tag,
)

RUN = "3f2b6c1e-0000-4000-8000-000000000001"


def _crashed(**fields: object) -> CrashedRun:
    base: dict[str, object] = {
        "id": RUN,
        "name": "brave-fox",
        "flow_name": "train",
        "state_type": "CRASHED",
        "deployment_id": "d-1",
        "deployment_name": "train/local",
        "parameters": {"dataset": "loans"},
        "tags": ["mloop"],
    }
    return CrashedRun.model_validate({**base, **fields})


def test_retry_tags_round_trip_and_event_ids_are_accepted() -> None:
    assert retry_tag(RUN) == f"mloop-retry-of:{RUN}"
    assert retry_of(["mloop", retry_tag(RUN)]) == RUN
    assert retry_of(["mloop", "auto-scheduled"]) is None
    assert flow_run_id_from(f"prefect.flow-run.{RUN}") == RUN
    assert flow_run_id_from(f" {RUN} ") == RUN


@pytest.mark.parametrize("flow_name", ["train", "retrain", "deploy"])
def test_a_crashed_deployment_run_of_train_retrain_deploy_is_retried_once(flow_name: str) -> None:
    plan = plan_recovery(_crashed(flow_name=flow_name), existing_retries=[])
    assert plan.retry and plan.clean_up and "re-run once" in plan.reason


@pytest.mark.parametrize(
    ("fields", "retries", "clean_up", "reason"),
    [
        ({"state_type": "RUNNING"}, [], False, "not CRASHED: nothing to recover"),
        ({"state_type": "COMPLETED"}, [], False, "not CRASHED"),
        ({"flow_name": "monitor"}, [], False, "'monitor' is not recovered"),
        ({"flow_name": "recover"}, [], False, "nothing done"),
        ({}, ["r-2"], True, "already recovered: retried by r-2"),
        (
            {"tags": ["mloop", retry_tag("orig")]},
            [],
            True,
            "retry of orig: a crashed retry is not retried again",
        ),
        ({"parent_task_run_id": "t-1"}, [], True, "subflow"),
        ({"deployment_id": None, "deployment_name": None}, [], True, "not a deployment run"),
    ],
)
def test_everything_else_is_not_retried_and_says_why(
    fields: dict[str, object], retries: list[str], clean_up: bool, reason: str
) -> None:
    plan = plan_recovery(_crashed(**fields), existing_retries=retries)
    assert not plan.retry and plan.clean_up is clean_up
    assert reason in plan.reason


def test_a_retrain_retry_is_forced_past_the_cooldown_its_crash_claimed() -> None:
    params = {"model_name": "loans", "trigger": "drift", "force": False}
    assert retry_parameters("retrain", params) == {**params, "force": True}
    assert retry_parameters("train", {"dataset": "loans"}) == {"dataset": "loans"}
    assert params["force"] is False  # not modified in place


def test_the_markdown_says_what_was_done() -> None:
    done = recovery_markdown(
        RecoveryReport(
            flow_run_id=RUN,
            flow_name="train",
            deployment="train/local",
            retried=True,
            retry_run_id="r-9",
            reason="crashed | re-run",
            failed_mlflow_runs=["m1"],
            released_leases=[],
        )
    )
    assert done.startswith(f"# Recovery of crashed run `{RUN}`: re-run as `r-9`")
    assert "`m1`" in done and "none held" in done and "crashed \\| re-run" in done
    left = recovery_markdown(RecoveryReport(flow_run_id=RUN, reason="already recovered"))
    assert "not re-run" in left and "none open" in left


def test_fail_open_runs_fails_only_the_open_runs_of_that_flow_run(tmp_path: Path) -> None:
    from models.registry import mlflow_client
    from models.tracking import ensure_experiment, fail_open_runs, finish_run, get_run, start_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = ensure_experiment(uri, "loans", tmp_path / "artifacts")
    other_exp = ensure_experiment(uri, "other", tmp_path / "artifacts")
    open_a = start_run(uri, exp, run_name="a", tags={TAG_FLOW_RUN_ID: RUN})
    open_b = start_run(uri, other_exp, run_name="b", tags={TAG_FLOW_RUN_ID: RUN})
    done = start_run(uri, exp, run_name="done", tags={TAG_FLOW_RUN_ID: RUN})
    finish_run(uri, done)
    someone_else = start_run(uri, exp, run_name="else", tags={TAG_FLOW_RUN_ID: "another-run"})

    assert sorted(fail_open_runs(uri, RUN)) == sorted([open_a, open_b])
    assert [get_run(uri, r).status for r in (open_a, open_b, done, someone_else)] == [
        "FAILED",
        "FAILED",
        "FINISHED",
        "RUNNING",
    ]
    assert fail_open_runs(uri, RUN) == []  # idempotent
    assert mlflow_client(uri).get_run(someone_else).info.status == "RUNNING"
    with pytest.raises(ValueError):
        fail_open_runs(uri, "x' or '1'='1")

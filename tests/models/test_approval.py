"""Optional manual approval: the flow pauses after the gate; approval promotes, a timeout rejects."""

from __future__ import annotations

import threading
import time

import pytest

from flows.train import train_flow
from mloop.core.tags import TAG_REASON
from models import registry as R
from tests.models.helpers import ingest_frame, synth_frame

pytestmark = pytest.mark.integration


def _approve_when_paused(approve: bool, stop: threading.Event) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.flow_runs import resume_flow_run

    flt = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))
    )
    while not stop.is_set():
        with get_client(sync_client=True) as client:
            paused = client.read_flow_runs(flow_run_filter=flt)
        if paused:
            time.sleep(0.5)  # the run input schema is saved right after the state change
            resume_flow_run(
                paused[0].id,
                run_input={"approve": approve, "comment": "looks good" if approve else "no"},
            )
            return
        time.sleep(0.3)


def test_timeout_rejects_and_approval_promotes(models_settings, prefect_server) -> None:
    s, name = models_settings, "approval"
    md5 = ingest_frame(s, synth_frame(2500, seed=21), name)
    timed_out = train_flow(
        dataset=name, version=md5, require_approval=True, approval_timeout_seconds=3
    )
    assert timed_out.gate is not None and timed_out.version is not None
    assert timed_out.gate.decision == "promote"  # the gate passed ...
    assert (
        timed_out.decision == "reject" and not timed_out.promoted and timed_out.champion is None
    )  # ... nobody approved
    info = R.get_version_info(s.tracking_uri, name, timed_out.version)
    assert info.decision == "reject" and "timed out" in info.tags[TAG_REASON]

    stop = threading.Event()
    helper = threading.Thread(target=_approve_when_paused, args=(True, stop), daemon=True)
    helper.start()
    try:
        approved = train_flow(
            dataset=name, version=md5, seed=7, require_approval=True, approval_timeout_seconds=120
        )
    finally:
        stop.set()
        helper.join(timeout=10)
    assert (
        approved.decision == "promote"
        and approved.promoted
        and approved.champion == approved.version
        and approved.version is not None
    )
    assert (
        "approved by a person: looks good"
        in R.get_version_info(s.tracking_uri, name, approved.version).tags["mloop.promoted_reason"]
    )

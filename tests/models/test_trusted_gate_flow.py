"""Poisoned feedback cannot steer the gate: the retrain flow in-process on the session Prefect server.

A champion is trained on 3,000 ingested rows. 2,500 served predictions (logged as the service
logs them) get feedback labels, then ``retrain_flow(force=True)`` builds a feedback version (the
newest 3,000 rows: 500 ingested + 2,500 fed back) and trains on it. Its gate holdout is the newest
20%: all fed-back rows.

* Flipped labels: the challenger wins the newest rows by far (gain and 95% CI above 0) and loses on
  the trusted holdout (the ingested version's): rejected there, the champion does not move.
* Honest labels (the control): the trusted check passes; the gate decides as before.

Each test has its own model/dataset name, so their logs, feedback and versions do not mix.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pandas as pd
import pytest

from mloop.core.datasets import ingest_dataset, list_versions
from mloop.core.frames import write_frame
from mloop.core.generate import generate
from mloop.core.settings import Settings
from mloop.core.tags import (
    TAG_DECISION,
    TAG_GATE_METRICS,
    TAG_GATE_TRUSTED,
    TAG_LABEL_SOURCE,
    TAG_REASON,
)
from tests.helpers import flow_home

pytestmark = pytest.mark.integration
ROWS, TRAFFIC = 3000, 2500


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, prefect_server) -> Iterator[Settings]:
    root = tmp_path_factory.mktemp("trusted")
    with flow_home(root) as (settings, mp):
        mp.setenv("MLOOP_WEBHOOK_PORT", "9")  # nothing listens: notifications must not fail a flow
        yield settings


def _champion(settings: Settings, name: str) -> str:
    """Ingest 3,000 baseline rows as ``name`` and train the champion on them."""
    from flows.train import train_flow

    src = write_frame(generate("baseline", ROWS, seed=1), settings.state.tmp / f"{name}-v1.parquet")
    ingest_dataset(
        settings,
        src,
        dataset=name,
        target="target",
        task="classification",
        time_column="event_time",
    )
    trained = train_flow(dataset=name)
    assert trained.promoted and trained.label_source == "ingested"
    return str(trained.version)


def _served_with_feedback(settings: Settings, name: str, version: str, *, flip: bool) -> None:
    """2,500 predictions of ``version`` in the prediction log, then feedback labels for each (flipped or true)."""
    from mloop.core.contract import load_contract
    from monitoring.scoring import add_predictions
    from serving.log.feedback import record_feedback
    from serving.log.predictions import PredictionLogger, new_prediction_ids

    traffic = generate("baseline", TRAFFIC, seed=7)
    contract = load_contract(settings.project_dir, name)
    scored = add_predictions(settings.tracking_uri, name, version, traffic, contract)
    feats = [c.name for c in contract.feature_columns]
    ids = new_prediction_ids(TRAFFIC)
    logger = PredictionLogger(settings.state.predictions, flush_seconds=60)
    logger.log(
        ids=ids,
        model_name=name,
        model_version=version,
        features={
            c: traffic[c].astype(object).where(traffic[c].notna(), None).tolist() for c in feats
        },
        predictions=scored["prediction"].tolist(),
        values=scored["probability"].tolist(),
    )
    logger.close()
    labels = 1 - traffic["target"] if flip else traffic["target"]
    record_feedback(
        settings.state.feedback,
        name,
        pd.DataFrame({"prediction_id": ids, "label": labels.to_numpy()}),
    )


def _version_tags(settings: Settings, name: str, version: str) -> dict[str, str]:
    from models.registry import get_version_info

    return get_version_info(settings.tracking_uri, name, version).tags


def test_flipped_feedback_is_rejected_on_the_trusted_holdout(
    env: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.retrain import retrain_flow
    from models.registry import champion_version

    name = "poisoned"
    champion = _champion(env, name)
    ingested = list_versions(env, name)[0]
    _served_with_feedback(env, name, champion, flip=True)
    monkeypatch.setenv(
        "MLOOP_APPROVE_FEEDBACK_RETRAINS", "true"
    )  # recorded; a rejected model is never asked for

    result = retrain_flow(model_name=name, trigger="alert:DataDrift", force=True)

    # the challenger was trained on the feedback version and registered ...
    assert (
        result.status == "trained"
        and result.trained_version is not None
        and result.trained_version != champion
    )
    assert result.label_source == "feedback" and result.approval_required is True
    newest = list_versions(env, name)[0]
    assert (
        newest.md5 == result.dataset_md5
        and newest.label_source == "feedback"
        and newest.rows == ROWS
    )
    # ... rejected on the trusted holdout, and the champion did not move
    assert result.promoted is False and result.champion == champion == champion_version(
        env.tracking_uri, name
    )
    assert result.gate is not None and "REJECTED on the trusted holdout" in result.gate
    tags = _version_tags(env, name, result.trained_version)
    assert tags[TAG_DECISION] == "reject" and tags[TAG_LABEL_SOURCE] == "feedback"
    assert (
        tags[TAG_REASON].startswith("reject: roc_auc")
        and f"REJECTED on the trusted holdout (ingested version {ingested.md5[:8]}, 600 rows)"
        in tags[TAG_REASON]
    )
    trusted = json.loads(tags[TAG_GATE_TRUSTED])
    assert (
        trusted["dataset_md5"] == ingested.md5
        and trusted["rows"] == 600
        and trusted["passed"] is False
    )
    assert (
        trusted["reference"] == "champion" and trusted["loss"] > 0.3
    )  # the flipped model is inverted there
    # the newest rows alone would have promoted it: that is the attack the trusted holdout stops
    metrics = json.loads(tags[TAG_GATE_METRICS])
    assert metrics["gain"] > 0.3 and metrics["ci_low"] > 0, metrics
    assert metrics["trusted_loss"] == pytest.approx(trusted["loss"])
    print(f"\npoisoned gate: {result.gate}\ngate metrics: {metrics}")


def test_honest_feedback_passes_the_trusted_check(env: Settings) -> None:
    from flows.retrain import retrain_flow
    from models.registry import champion_version

    name = "honest"
    champion = _champion(env, name)
    _served_with_feedback(env, name, champion, flip=False)

    result = retrain_flow(model_name=name, force=True)

    assert (
        result.status == "trained"
        and result.trained_version is not None
        and result.label_source == "feedback"
    )
    assert result.approval_required is False  # MLOOP_APPROVE_FEEDBACK_RETRAINS is off by default
    tags = _version_tags(env, name, result.trained_version)
    trusted = json.loads(tags[TAG_GATE_TRUSTED])
    assert trusted["passed"] is True and trusted["loss"] <= 0.01, trusted
    assert "REJECTED" not in tags[TAG_REASON] and "trusted holdout" in tags[TAG_REASON]
    # same population, true labels: the gate decides on gain and interval as before (no real gain here)
    assert result.promoted == (tags[TAG_DECISION] == "promote")
    assert champion_version(env.tracking_uri, name) == (
        result.trained_version if result.promoted else champion
    )

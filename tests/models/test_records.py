"""What a train run writes besides the model: tags, event payloads, the gate's config and form. Pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

import pytest

from mloop.core import events
from mloop.core.lineage import DatasetVersion
from mloop.core.settings import Settings
from mloop.core.tags import MAX_TAG_VALUE, tag_value
from models.event_payloads import decision_event, decision_payload, trained_payload
from models.gate_decision import GateConfig, GateParams, GateReport
from models.run_tags import (
    candidate_run_tags,
    lineage_tags,
    registered_run_tags,
    version_description,
    version_tags,
)
from models.spec import ModelSpec
from models.split import SplitParams
from tests.models.helpers import gate_config

INFO = DatasetVersion(
    name="loans",
    md5="0123456789abcdef",
    rows=10,
    columns=["a"],
    created_at=datetime.now(UTC),
    path="data/loans/loans.parquet",
    git_commit=None,
)
SPEC = ModelSpec(estimator="random_forest", params={"max_depth": 4})


def _lineage() -> dict[str, str]:
    return lineage_tags(
        "loans", INFO, code_commit=None, flow_run_id="fr-1", task="classification", trigger="drift"
    )


def test_lineage_tags() -> None:
    assert _lineage() == {
        "mloop.dataset_name": "loans",
        "mloop.dataset_md5": INFO.md5,
        "mloop.code_commit": "",
        "mloop.dataset_pointer_commit": "",
        "mloop.prefect_flow_run_id": "fr-1",
        "mloop.task": "classification",
        "mloop.trigger": "drift",
        "mloop.label_source": "ingested",
    }
    feedback = INFO.model_copy(update={"label_source": "feedback"})
    tags = lineage_tags(
        "loans",
        feedback,
        code_commit=None,
        flow_run_id="fr-1",
        task="classification",
        trigger="drift",
    )
    assert tags["mloop.label_source"] == "feedback"


def test_run_and_version_tags() -> None:
    lineage = _lineage()
    run = candidate_run_tags(lineage, cache_key="k1", spec=SPEC)
    assert run == {**lineage, "mloop.cache_key": "k1", "mloop.spec": SPEC.key()}
    version = version_tags(
        lineage,
        spec=SPEC,
        run_id="r1",
        split=SplitParams(test_size=0.25, seed=7),
        metrics={"roc_auc": 0.123456789, "log_loss": 12.0},
    )
    assert version == {
        **lineage,
        "mloop.spec": SPEC.key(),
        "mloop.mlflow_run_id": "r1",
        "mloop.split_test_size": "0.25",
        "mloop.split_seed": "7",
        "mloop.metric.roc_auc": "0.123457",
        "mloop.metric.log_loss": "12",
    }
    assert registered_run_tags("loans", "3") == {
        "mloop.registered_version": "3",
        "mloop.model_name": "loans",
        "mloop.model_version": "3",
    }
    description = version_description(SPEC, "loans", INFO.md5, "manual")
    assert description == "random_forest(max_depth=4) on loans@01234567 (manual)"


def test_tag_values_are_cut_to_the_mlflow_limit() -> None:
    assert tag_value(3) == "3" and tag_value("x" * (MAX_TAG_VALUE + 10)) == "x" * MAX_TAG_VALUE


def _report(decision: Literal["promote", "reject"] = "promote") -> GateReport:
    return GateReport(
        model_name="loans",
        decision=decision,
        reasons=["r"],
        metric="roc_auc",
        higher_is_better=True,
        reference="champion",
        challenger_value=0.8,
        reference_value=0.7,
        gain=0.1,
        ci_low=0.05,
        ci_high=0.15,
        resamples=1000,
        holdout_rows=100,
        config=gate_config(),
    )


def test_gate_report_metrics() -> None:
    report = _report()
    assert report.interval() == {"gain": 0.1, "ci_low": 0.05, "ci_high": 0.15}
    assert report.audit_metrics() == {
        "gain": 0.1,
        "ci_low": 0.05,
        "ci_high": 0.15,
        "challenger_roc_auc": 0.8,
        "reference_roc_auc": 0.7,
    }


def test_event_payloads() -> None:
    assert trained_payload(
        version="3", metrics={"f1": 0.5}, trigger="manual", data_md5="m", run_id="r", spec="lr"
    ) == {
        "version": "3",
        "metrics": {"f1": 0.5},
        "reason": "manual",
        "data_md5": "m",
        "run_id": "r",
        "spec": "lr",
        "label_source": "ingested",
    }
    payload = decision_payload(
        version="3", metrics={}, reason="why", data_md5="m", champion="2", report=_report()
    )
    assert payload == {
        "version": "3",
        "metrics": {},
        "reason": "why",
        "data_md5": "m",
        "champion": "2",
        "gain": 0.1,
        "ci_low": 0.05,
        "trusted": None,
    }


@pytest.mark.parametrize(
    ("promoted", "decision", "promote", "event"),
    [
        (True, "promote", True, events.MODEL_PROMOTED),
        (False, "reject", True, events.MODEL_REJECTED),  # the gate or an approver said no
        (False, "reject", False, events.MODEL_REJECTED),
        (False, "promote", True, events.MODEL_REJECTED),  # the guarded alias move lost
        (False, "promote", False, None),  # promote=False: gated and recorded only
    ],
)
def test_decision_event(promoted: bool, decision: str, promote: bool, event: str | None) -> None:
    assert decision_event(promoted=promoted, decision=decision, promote=promote) == event


def test_gate_config_is_defined_by_the_settings() -> None:
    defaults = Settings()
    assert GateConfig.from_settings(defaults) == gate_config()
    for name in (
        "metric",
        "min_gain",
        "slice_tolerance",
        "resamples",
        "baseline_margin",
        "trusted_tolerance",
    ):
        setting = Settings.model_fields[f"gate_{name}"]
        assert GateConfig.model_fields[name].default == setting.default
        assert GateConfig.model_fields[name].description == setting.description
    with pytest.raises(ValueError, match="resamples"):
        gate_config(resamples=999)  # the setting's bound
    with pytest.raises(ValueError, match="min_gain"):
        gate_config(min_gain=-0.1)  # the gate's own bound


def test_gate_config_from_env_settings_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOOP_GATE_MIN_GAIN", "0.05")
    monkeypatch.setenv("MLOOP_GATE_METRIC", "log_loss")
    config = GateConfig.from_settings(
        Settings(), **GateParams(resamples=2000, metric=None).model_dump()
    )
    assert (config.min_gain, config.metric, config.resamples, config.seed) == (
        0.05,
        "log_loss",
        2000,
        0,
    )


def test_gate_params_form_mirrors_the_config() -> None:
    """The train flow's form: every GateConfig field but the seed, optional, same bounds and descriptions."""
    form, config = GateParams.model_fields, GateConfig.model_fields
    assert set(form) == set(config) - {"seed"}
    assert all(
        f.default is None and f.description == config[n].description for n, f in form.items()
    )
    assert GateParams().model_dump() == dict.fromkeys(form)
    schema = GateParams.model_json_schema()
    assert schema["title"] == "GateParams" and "MLOOP_GATE_*" in schema["description"]
    assert {"minimum": 1000, "type": "integer"} in schema["properties"]["resamples"]["anyOf"]
    with pytest.raises(ValueError):
        GateParams(min_gain=-1)

"""The tags of a training run and of the registered version: lineage, cache identity, split, metrics.

Pure: builds dicts of :mod:`mloop.core.tags` keys; the train flow writes them with
:mod:`models.tracking` and :mod:`models.registry`.
"""

from __future__ import annotations

import json

from mloop.core.lineage import DatasetVersion
from mloop.core.tags import (
    TAG_CACHE_KEY,
    TAG_CODE_COMMIT,
    TAG_DATASET_MD5,
    TAG_DATASET_NAME,
    TAG_DATASET_POINTER_COMMIT,
    TAG_FLOW_RUN_ID,
    TAG_GATE_TRUSTED,
    TAG_LABEL_SOURCE,
    TAG_METRIC_PREFIX,
    TAG_MODEL_NAME,
    TAG_MODEL_VERSION,
    TAG_REGISTERED_VERSION,
    TAG_RUN_ID,
    TAG_SPEC,
    TAG_SPLIT_SEED,
    TAG_SPLIT_TEST_SIZE,
    TAG_TASK,
    TAG_TRIGGER,
    tag_value,
)
from models.gate_decision import GateReport
from models.spec import ModelSpec
from models.split import SplitParams


def lineage_tags(
    dataset: str,
    info: DatasetVersion,
    *,
    code_commit: str | None,
    flow_run_id: str,
    task: str,
    trigger: str,
) -> dict[str, str]:
    """Tags every run and version of a train run carries: data (and where its labels came from), code,
    flow run, task, trigger."""
    return {
        TAG_DATASET_NAME: dataset,
        TAG_DATASET_MD5: info.md5,
        TAG_CODE_COMMIT: code_commit or "",
        TAG_DATASET_POINTER_COMMIT: info.git_commit or "",
        TAG_FLOW_RUN_ID: flow_run_id,
        TAG_TASK: task,
        TAG_TRIGGER: trigger,
        TAG_LABEL_SOURCE: info.label_source,
    }


def candidate_run_tags(
    lineage: dict[str, str], *, cache_key: str, spec: ModelSpec
) -> dict[str, str]:
    """Tags of a candidate's MLflow run: the lineage plus its cache identity."""
    return {**lineage, TAG_CACHE_KEY: cache_key, TAG_SPEC: spec.key()}


def version_tags(
    lineage: dict[str, str],
    *,
    spec: ModelSpec,
    run_id: str,
    split: SplitParams,
    metrics: dict[str, float],
) -> dict[str, str]:
    """Tags of the registered version: lineage, spec, run, split (to re-derive the holdout), metrics."""
    return {
        **lineage,
        TAG_SPEC: spec.key(),
        TAG_RUN_ID: run_id,
        TAG_SPLIT_TEST_SIZE: str(split.test_size),
        TAG_SPLIT_SEED: str(split.seed),
        **{f"{TAG_METRIC_PREFIX}{m}": f"{v:.6g}" for m, v in metrics.items()},
    }


def registered_run_tags(model_name: str, version: str) -> dict[str, str]:
    """Tags written on the winning run once it is registered (what reuse reads back)."""
    return {TAG_REGISTERED_VERSION: version, TAG_MODEL_NAME: model_name, TAG_MODEL_VERSION: version}


def trusted_tags(report: GateReport) -> dict[str, str]:
    """The version's ``mloop.gate_trusted`` tag: the trusted holdout comparison as JSON (none if not run)."""
    if report.trusted is None:
        return {}
    return {
        TAG_GATE_TRUSTED: tag_value(
            json.dumps(report.trusted.model_dump(mode="json"), sort_keys=True)
        )
    }


def version_description(spec: ModelSpec, dataset: str, data_md5: str, trigger: str) -> str:
    """The registered version's description, e.g. ``random_forest on loans@1a2b3c4d (manual)``."""
    return f"{spec.label()} on {dataset}@{data_md5[:8]} ({trigger})"

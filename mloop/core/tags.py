"""Every key mloop writes as an MLflow tag or BentoML label, and the one rule for tag values.

One module, so a key is spelled once: the registry, tracking, packaging, serving lineage and
monitoring all import their keys from here. The lineage keys are also prediction-log columns and
Prefect resource labels (``mloop.model_version`` on drift events).
"""

from __future__ import annotations

# Lineage (MLflow run and version tags, BentoML labels, prediction-log columns).
TAG_DATASET_NAME = "mloop.dataset_name"
TAG_DATASET_MD5 = "mloop.dataset_md5"
TAG_DATASET_POINTER_COMMIT = "mloop.dataset_pointer_commit"
TAG_CODE_COMMIT = "mloop.code_commit"
TAG_FLOW_RUN_ID = "mloop.prefect_flow_run_id"
TAG_RUN_ID = "mloop.mlflow_run_id"
TAG_MODEL_NAME = "mloop.model_name"
TAG_MODEL_VERSION = "mloop.model_version"

# Training runs and registered versions.
TAG_METRIC_PREFIX = "mloop.metric."
TAG_SPEC = "mloop.spec"
TAG_CACHE_KEY = "mloop.cache_key"
TAG_TASK = "mloop.task"
TAG_TRIGGER = "mloop.trigger"
TAG_LABEL_SOURCE = "mloop.label_source"
TAG_SPLIT_TEST_SIZE = "mloop.split_test_size"
TAG_SPLIT_SEED = "mloop.split_seed"
TAG_REGISTERED_VERSION = "mloop.registered_version"

# Gate decisions and alias moves.
TAG_DECISION = "mloop.gate_decision"
TAG_REASON = "mloop.gate_reason"
TAG_GATE_METRICS = "mloop.gate_metrics"
TAG_GATE_TRUSTED = "mloop.gate_trusted"
TAG_PROMOTED_REASON = "mloop.promoted_reason"
TAG_ROLLED_BACK = "mloop.rolled_back"
TAG_LAST_CHANGE = "mloop.last_alias_change"

# Monitoring runs.
TAG_MONITORING = "mloop.monitoring"
TAG_DATASET_DRIFT = "mloop.dataset_drift"
TAG_LAST_MONITORING_RUN = "mloop.last_monitoring_run"

MAX_TAG_VALUE = 5000
"""MLflow's limit on a tag value's length (characters)."""


def tag_value(value: object) -> str:
    """``value`` as a tag value: a string cut to MLflow's :data:`MAX_TAG_VALUE` characters."""
    return str(value)[:MAX_TAG_VALUE]

"""Reproduce a registered version: same data bytes (by md5), same spec, seeds and split; compare metrics.

Reads what the run recorded (params ``spec``, ``seed``, ``split_test_size``, ``split_seed``, tag
data md5), re-materializes the exact dataset version through DVC, refits, re-evaluates and
reports the difference per metric. Deterministic estimators (logistic regression, and the tree
models with their recorded seed) give zero differences.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from mloop.core.errors import MloopError
from mloop.core.settings import Settings
from mloop.core.tags import TAG_DATASET_MD5, TAG_DATASET_NAME
from models.spec import ModelSpec


class MetricDiff(BaseModel):
    metric: str
    recorded: float
    reproduced: float
    diff: float = Field(description="reproduced - recorded")


class ReproduceReport(BaseModel):
    name: str
    version: str
    run_id: str
    data_md5: str
    spec: ModelSpec
    seed: int
    split_test_size: float
    split_seed: int
    diffs: list[MetricDiff]

    @property
    def max_abs_diff(self) -> float:
        return max((abs(d.diff) for d in self.diffs), default=0.0)


def reproduce_version(settings: Settings, name: str, version: str) -> ReproduceReport:
    """Retrain ``name`` version ``version`` from its recorded inputs and diff the holdout metrics."""
    from mloop.core.contract import load_contract
    from mloop.core.datasets import read_version
    from models.registry import get_version_info
    from models.split import split_dataset
    from models.tracking import get_run
    from models.train import fit_and_evaluate

    info = get_version_info(settings.tracking_uri, name, version)
    if not info.run_id:
        raise MloopError(
            f"version {info.version} of {name!r} has no training run",
            fix="reproduce a version trained by mloop",
        )
    run = get_run(settings.tracking_uri, info.run_id)
    try:
        spec = ModelSpec.model_validate_json(run.params["spec"])
        seed, test_size, split_seed = (
            int(run.params["seed"]),
            float(run.params["split_test_size"]),
            int(run.params["split_seed"]),
        )
    except KeyError as exc:
        raise MloopError(
            f"run {info.run_id} lacks the parameter {exc}",
            where="MLflow run params",
            fix="only versions trained by mloop's train flow can be reproduced",
        ) from exc
    md5 = run.tags.get(TAG_DATASET_MD5) or info.data_md5 or ""
    dataset = run.tags.get(TAG_DATASET_NAME, name)
    df = read_version(settings, dataset, md5)
    contract = load_contract(settings.project_dir, dataset)
    train, holdout = split_dataset(df, contract, test_size=test_size, seed=split_seed)
    result = fit_and_evaluate(contract, spec, train, holdout, seed=seed)
    diffs = [
        MetricDiff(metric=m, recorded=run.metrics[m], reproduced=v, diff=v - run.metrics[m])
        for m, v in sorted(result.evaluation.metrics.items())
        if m in run.metrics
    ]
    return ReproduceReport(
        name=name,
        version=info.version,
        run_id=info.run_id,
        data_md5=md5,
        spec=spec,
        seed=seed,
        split_test_size=test_size,
        split_seed=split_seed,
        diffs=diffs,
    )

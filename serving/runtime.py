"""A loaded, smoke-tested model as the service holds it, and the rules for swapping one in.

Kept out of ``serving/service.py`` so it can be unit-tested without a BentoML server: the service
only holds one :class:`LiveModel` reference and replaces it with :func:`prepare_live_model`'s result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mloop.core.contract import DatasetContract
from serving.onnx_model import (
    Predictor,
    load_predictor,
    read_contract,
    read_meta,
    smoke_test,
)
from serving.schema import feature_signature, record_keys


class RolloutRefused(Exception):
    """A model failed its pre-switch checks; the serving model is unchanged."""


@dataclass
class LiveModel:
    """Everything one request needs, captured in one object so a swap is one reference assignment."""

    tag: str
    model_name: str
    model_version: str
    predictor: Predictor
    contract: DatasetContract
    meta: dict[str, Any]
    names: list[str] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # column name -> record field name
    value_name: str = "probability"

    def describe(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "bentoml_tag": self.tag,
            "backend": self.predictor.backend,
            "fallback_reason": self.meta.get("fallback_reason"),
            "run_id": self.meta.get("run_id"),
            "dataset_md5": self.meta.get("dataset_md5"),
            "code_commit": self.meta.get("code_commit"),
            "task": self.contract.task,
        }


def load_live_model(tag: str, model_dir: Path, *, threads: int = 1) -> LiveModel:
    """Load the serving artefacts of a BentoML model folder (no checks); ``threads``: ONNX Runtime
    intra-op threads (``ServingSettings.onnx_threads``)."""
    meta = read_meta(model_dir)
    contract = read_contract(model_dir)
    predictor = load_predictor(model_dir, threads=threads)
    return LiveModel(
        tag=tag,
        model_name=str(meta.get("model_name") or contract.name),
        model_version=str(meta.get("model_version") or tag.partition(":")[2]),
        predictor=predictor,
        contract=contract,
        meta=meta,
        names=[c.name for c in contract.feature_columns],
        keys=record_keys(contract),
        value_name="score" if contract.task == "regression" else "probability",
    )


def prepare_live_model(tag: str, model_dir: Path, current: LiveModel | None, *, threads: int = 1) -> LiveModel:
    """Load ``tag`` and check it can replace ``current``; raises :class:`RolloutRefused` otherwise.

    Checks: the files load; the stored sample records predict with finite outputs (probabilities in
    [0, 1]) that match sklearn's stored outputs; the feature columns and kinds equal the running
    request schema's, and so does the target's kind (the feedback schema): a schema change needs a
    new service, i.e. blue/green, not an in-place swap.
    """
    try:
        live = load_live_model(tag, model_dir, threads=threads)
    except Exception as exc:  # noqa: BLE001 - any load failure refuses the rollout
        raise RolloutRefused(f"model {tag} does not load: {type(exc).__name__}: {exc}") from exc
    problems = smoke_test(live.predictor, live.meta)
    if current is not None and feature_signature(live.contract) != feature_signature(current.contract):
        problems.append(
            "its feature columns or target kind differ from the running request schema "
            f"({feature_signature(live.contract)} vs {feature_signature(current.contract)}): restart the service"
        )
    if current is not None and _multiclass(live) != _multiclass(current):
        problems.append("it changes the answer schema (binary vs multiclass probabilities): restart the service")
    if problems:
        raise RolloutRefused(f"model {tag} failed its smoke test: " + "; ".join(problems))
    return live


def _multiclass(live: LiveModel) -> bool:
    """More than two classes: the answers carry every class's probability (another answer schema)."""
    return len(live.meta.get("classes") or ()) > 2

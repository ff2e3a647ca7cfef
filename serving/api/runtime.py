"""A loaded, smoke-tested model as the service holds it, and the rules for swapping one in.

Kept out of ``serving/api/bento.py`` so it can be unit-tested without a BentoML server: the service
only holds one :class:`LiveModel` reference and replaces it with :func:`prepare_live_model`'s result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mloop.core.contract import DatasetContract
from serving.api.schema import MulticlassAnswer, answer_model, record_keys, schema_signature
from serving.bundle.onnx_model import (
    Predictor,
    load_predictor,
    read_contract,
    read_meta,
    smoke_test,
)


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
    keys: dict[str, str]  # feature column name -> record field name
    answer: type[BaseModel]  # the answer schema: regression, binary or multiclass
    class_labels: list[str] | None = (
        None  # multiclass: the keys of an answer's probabilities, in class order
    )
    value_name: str = "probability"
    size_mb: float = (
        0.0  # its files in the store: the floor of its memory cost (serving/api/modelset.py)
    )

    @property
    def signature(self) -> list[tuple[str, str]]:
        """Equal for two models iff they can share a running service's schemas."""
        return schema_signature(self.contract, self.answer)

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


def answer_schema(contract: DatasetContract, meta: dict[str, Any]) -> type[BaseModel]:
    """The answer model of a stored model (``meta["classes"]`` is there for a multiclass one)."""
    return answer_model(contract.task, len(meta.get("classes") or ()))


def load_live_model(
    tag: str,
    model_dir: Path,
    *,
    threads: int = 1,
    contract: DatasetContract | None = None,
    meta: dict[str, Any] | None = None,
) -> LiveModel:
    """Load the serving artefacts of a BentoML model folder (no checks); ``threads``: ONNX Runtime
    intra-op threads (``ServingSettings.onnx_threads``); ``contract`` and ``meta``: the folder's
    files when the caller has read them already."""
    meta = read_meta(model_dir) if meta is None else meta
    contract = read_contract(model_dir) if contract is None else contract
    predictor = load_predictor(model_dir, threads=threads, meta=meta)
    answer = answer_schema(contract, meta)
    return LiveModel(
        tag=tag,
        model_name=str(meta.get("model_name") or contract.name),
        model_version=str(meta.get("model_version") or tag.partition(":")[2]),
        predictor=predictor,
        contract=contract,
        meta=meta,
        keys=record_keys(contract),
        answer=answer,
        class_labels=[str(c) for c in meta["classes"]] if answer is MulticlassAnswer else None,
        value_name="score" if contract.task == "regression" else "probability",
        size_mb=folder_mb(model_dir),
    )


def served_name(model_dir: Path, tag: str) -> str:
    """The name a stored model is served under (its registered model name, as :func:`load_live_model`
    reads it): ``/models/<name>/...``."""
    meta = read_meta(model_dir)
    return str(meta.get("model_name") or read_contract(model_dir).name or tag.partition(":")[0])


def folder_mb(folder: Path) -> float:
    """Size of the files in ``folder`` (not recursive), in MB; 0 when it cannot be read."""
    try:
        return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file()) / 2**20
    except OSError:
        return 0.0


def prepare_live_model(
    tag: str,
    model_dir: Path,
    current: LiveModel | None,
    *,
    threads: int = 1,
    signature: list[tuple[str, str]] | None = None,
) -> LiveModel:
    """Load ``tag`` and check it can replace ``current``; raises :class:`RolloutRefused` otherwise.

    Checks: the files load; the stored sample records predict with finite outputs (probabilities in
    [0, 1]) that match sklearn's stored outputs; its :attr:`LiveModel.signature` (feature columns
    and kinds, the target's kind, the answer schema) equals the running model's: a schema change
    needs a new service, i.e. blue/green, not an in-place swap. ``signature``: the running model's,
    when it is not loaded (unloaded by the memory budget); neither given: a new model, no comparison.
    """
    try:
        live = load_live_model(tag, model_dir, threads=threads)
    except Exception as exc:
        raise RolloutRefused(f"model {tag} does not load: {type(exc).__name__}: {exc}") from exc
    problems = smoke_test(live.predictor, live.meta)
    expected = current.signature if current is not None else signature
    if expected is not None and live.signature != expected:
        problems.append(
            "its feature columns, target kind or answer schema differ from the running service's "
            f"({live.signature} vs {expected}): restart the service"
        )
    if problems:
        raise RolloutRefused(f"model {tag} failed its smoke test: " + "; ".join(problems))
    return live

"""From one served prediction back to the data: prediction -> model version -> MLflow run ->
dataset name + md5 -> code commit -> the git commit of the dataset's ``.dvc`` pointer."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mloop.core.errors import NotFoundError
from mloop.core.settings import Settings
from serving.log.predictions import find_prediction


class PredictionLineage(BaseModel):
    """The full chain behind one prediction id."""

    prediction_id: str
    timestamp: str
    model_name: str
    model_version: str
    prediction: Any = None
    probability: float | None = None
    score: float | None = None
    run_id: str | None = Field(
        default=None, description="MLflow run that trained the model version."
    )
    flow_run_id: str | None = Field(default=None, description="Prefect flow run of the training.")
    dataset_name: str | None = None
    dataset_md5: str | None = Field(
        default=None, description="DVC md5 of the exact training data bytes."
    )
    dataset_rows: int | None = None
    dataset_path: str | None = None
    code_commit: str | None = Field(
        default=None, description="Code commit the model was trained from."
    )
    dvc_pointer: str | None = Field(
        default=None, description="The dataset's .dvc pointer file (project-relative)."
    )
    dvc_pointer_commit: str | None = Field(
        default=None,
        description="Git commit whose .dvc pointer holds this md5 (None: pointer not committed).",
    )
    notes: list[str] = Field(default_factory=list)

    def rows(self) -> list[tuple[str, str]]:
        """The chain as (link, value) lines, as ``mloop lineage`` and the demo print it."""
        return [
            (
                "prediction",
                f"{self.prediction_id} at {self.timestamp}: {self.prediction} (p={self.probability})",
            ),
            ("model version", f"{self.model_name} v{self.model_version}"),
            ("MLflow run", self.run_id or "-"),
            (
                "dataset",
                f"{self.dataset_name or '-'} md5 {self.dataset_md5 or '-'} ({self.dataset_rows or '?'} rows)",
            ),
            ("code commit", self.code_commit or "-"),
            (
                ".dvc pointer",
                f"{self.dvc_pointer or '-'} @ {self.dvc_pointer_commit or 'not committed'}",
            ),
        ]


def pointer_commit(project_dir: Path, pointer: str, md5: str) -> str | None:
    """The newest commit that put ``md5`` into ``pointer`` (``git log -S``), None if never committed."""
    try:
        out = subprocess.run(
            [
                "git",
                "-C",
                str(project_dir),
                "log",
                "-n",
                "1",
                "--format=%H",
                f"-S{md5}",
                "--",
                pointer,
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def resolve_prediction(settings: Settings, prediction_id: str) -> PredictionLineage:
    """Trace ``prediction_id`` through the prediction log, the registry and the dataset index."""
    from models.registry import get_lineage

    row = find_prediction(settings.state.predictions, prediction_id)
    if row is None:
        raise NotFoundError(
            f"prediction {prediction_id!r} is not in the prediction log",
            where=str(settings.state.predictions),
            fix="use a prediction_id returned by /predict (the log is flushed about every second)",
        )
    out = PredictionLineage(
        prediction_id=prediction_id,
        timestamp=str(row["timestamp"]),
        model_name=str(row["model_name"]),
        model_version=str(row["model_version"]),
        prediction=row.get("prediction"),
        probability=row.get("probability"),
        score=row.get("score"),
    )
    try:
        lin = get_lineage(settings.tracking_uri, out.model_name, out.model_version)
    except Exception as exc:
        out.notes.append(f"model version not found in the registry: {exc}")
        return out
    out.run_id = lin.run_id or None
    out.flow_run_id = lin.flow_run_id
    out.dataset_name = lin.dataset_name
    out.dataset_md5 = lin.dataset_md5 or None
    out.code_commit = lin.code_commit
    out.dvc_pointer_commit = lin.dataset_pointer_commit
    if not out.dataset_md5:
        out.notes.append("the model version carries no dataset md5 tag")
        return out
    try:
        from mloop.core.datasets import get_version

        version = get_version(settings, lin.dataset_name, out.dataset_md5)
        out.dataset_rows = version.rows
        out.dataset_path = version.path
        out.dvc_pointer = version.path + ".dvc"
        out.dvc_pointer_commit = out.dvc_pointer_commit or version.git_commit
    except Exception as exc:
        out.notes.append(f"dataset version not in the index: {exc}")
    if out.dvc_pointer and not out.dvc_pointer_commit:
        out.dvc_pointer_commit = pointer_commit(
            settings.project_dir, out.dvc_pointer, out.dataset_md5
        )
    if out.dvc_pointer and not out.dvc_pointer_commit:
        out.notes.append(
            "the .dvc pointer of this version is not committed in git (MLOOP_GIT_COMMIT_DATA=false); "
            "the md5 still identifies the bytes in the DVC cache/remote"
        )
    return out

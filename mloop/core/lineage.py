"""Lineage types shared by every layer: a dataset version and a model's full lineage.

The lineage keys (:mod:`mloop.core.tags`) are MLflow tags, BentoML labels and prediction-log
columns, so any served prediction can be traced to the model version, the run, the exact dataset
bytes and the commit.
"""

from __future__ import annotations

import subprocess
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

LabelSource = Literal["ingested", "feedback"]
"""Where a dataset version's labels came from: ``ingested`` (a file a person ingested, contract-checked)
or ``feedback`` (labels posted to /feedback, joined to logged predictions by the retrain path). Only
ingested labels are trusted by the promotion gate: feedback can be careless or forged."""

LABEL_INGESTED: LabelSource = "ingested"
LABEL_FEEDBACK: LabelSource = "feedback"


class DatasetVersion(BaseModel):
    """One accepted, DVC-versioned dataset. ``md5`` is the DVC md5 of the parquet bytes."""

    name: str
    md5: str = Field(description="DVC md5 of the stored parquet file: the version id.")
    rows: int
    columns: list[str]
    created_at: datetime
    path: str = Field(description="Path of the parquet file relative to the project dir.")
    size: int = Field(default=0, description="Size of the parquet file in bytes.")
    git_commit: str | None = Field(
        default=None,
        description="Commit holding the .dvc pointer (production-like mode), else None.",
    )
    code_commit: str | None = Field(default=None, description="Code commit (HEAD) at ingest time.")
    source: str | None = Field(default=None, description="The file that was ingested.")
    label_source: LabelSource = Field(
        default=LABEL_INGESTED,
        description="Where the labels came from: ingested (a file) or feedback (the retrain path). Index rows "
        "written before this field existed were all ingested files, hence the default.",
    )


class ModelLineage(BaseModel):
    """Everything needed to trace a model version back to its data and code."""

    model_name: str
    model_version: str
    run_id: str
    dataset_name: str
    dataset_md5: str
    code_commit: str | None = None
    dataset_pointer_commit: str | None = None
    flow_run_id: str | None = None


def git_commit(path: Path) -> str | None:
    """HEAD commit of the git checkout containing ``path`` (None outside git or before a commit)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None

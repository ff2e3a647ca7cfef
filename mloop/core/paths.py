"""The state layout under MLOOP_HOME. Everything a run writes lives below ``root``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The folder that holds ``mloop/``, ``flows/``, ``models/``, ``serving/``, ``monitoring/`` and
#: ``prefect.yaml``: child processes (services, flow runs, store jobs) import the code from here.
CODE_ROOT = Path(__file__).resolve().parents[2]


def with_code_root(env: dict[str, str]) -> dict[str, str]:
    """``env`` with :data:`CODE_ROOT` first on PYTHONPATH, so a child process imports this code."""
    rest = env.get("PYTHONPATH", "")
    return {**env, "PYTHONPATH": os.pathsep.join(p for p in (str(CODE_ROOT), rest) if p)}


@dataclass(frozen=True)
class StatePaths:
    """Absolute paths of every state folder and file. Pure: creating them is :meth:`ensure`."""

    root: Path
    local_stores: bool = True
    """False in team mode: the MLflow artifacts and the DVC remote live in S3, their local folders are not created."""

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def mlflow_dir(self) -> Path:
        return self.root / "mlflow"

    @property
    def mlflow_db(self) -> Path:
        return self.mlflow_dir / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.mlflow_dir / "artifacts"

    @property
    def mlflow_artifact_root(self) -> Path | None:
        """Folder under which new MLflow experiments keep their artifacts (a subfolder each); None in team
        mode: the MLflow server stores them (in the bucket) and clients give no location."""
        return self.mlflow_artifacts if self.local_stores else None

    @property
    def bentoml_home(self) -> Path:
        return self.root / "bentoml"

    @property
    def dvc_remote(self) -> Path:
        return self.root / "dvc-remote"

    @property
    def dvc_cache(self) -> Path:
        return self.root / "dvc-cache"

    @property
    def dvc_site_cache(self) -> Path:
        return self.root / "dvc-site-cache"

    @property
    def datasets(self) -> Path:
        """Per-dataset version index (``<name>/versions.jsonl``)."""
        return self.root / "datasets"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def feedback(self) -> Path:
        return self.root / "feedback"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def evidently_workspace(self) -> Path:
        return self.root / "evidently"

    @property
    def audit(self) -> Path:
        """Append-only audit logs of alias changes (``<model>.jsonl``)."""
        return self.root / "audit"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def run(self) -> Path:
        """Pid files and logs of local services."""
        return self.root / "run"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def cache(self) -> Path:
        """Libraries' own caches (XDG_CACHE_HOME: matplotlib fonts, onnxruntime's device id), not ~/.cache."""
        return self.root / "cache"

    @property
    def model_downloads(self) -> Path:
        """Registered models downloaded from a remote MLflow artifact store (team mode), one folder each,
        reused by later loads on this host (:func:`models.registry.artifact_dir`)."""
        return self.cache / "mlflow-models"

    def ensure(self) -> StatePaths:
        """Create every state folder; MLOOP_HOME itself is 0700 (owner only), whatever the umask."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.root.stat().st_mode & 0o077:
            os.chmod(self.root, 0o700)
        local = (self.mlflow_artifacts, self.dvc_remote) if self.local_stores else ()
        for path in (
            self.prefect_home,
            *local,
            self.bentoml_home,
            self.dvc_site_cache,
            self.datasets,
            self.predictions,
            self.feedback,
            self.reports,
            self.audit,
            self.locks,
            self.run,
            self.tmp,
            self.cache,
        ):
            path.mkdir(parents=True, exist_ok=True)
        return self

"""BentoML store operations, run as ``python -m serving.bundle.store`` in a child process.

BentoML reads BENTOML_HOME once, when it is first imported; running these steps in a child whose
environment points at ``state.bentoml_home`` keeps every caller (CLI, flows, tests with their own
MLOOP_HOME) on the right store without touching the caller's process.

Steps (JSON argument on stdin, JSON result on stdout):

- import: copy a staged model folder (see :func:`serving.bundle.package.stage_model`) into the model
  store as ``<name>:v<version>`` with lineage labels and metadata (skipped if the tag exists);
- build: build the Bento ``<name>-service:v<version>`` from a copy of the service code (the build
  context is a fresh folder under MLOOP_HOME/tmp, never containing BENTOML_HOME), offline
  (``lock_packages: false``), embedding that model (skipped if the tag exists);
- export (team mode, :mod:`serving.bundle.remote_models`): the model as a ``.bentomodel`` file (BentoML's own
  format), after an import when the job has ``export_path``, or alone with ``"op": "export"``;
- import (``"op": "import"``): a ``.bentomodel`` file into the store, refused (and removed) unless
  it holds exactly the expected tag.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from mloop.core.entrypoints import PREDICTION_SERVICE
from serving.api.config import ServingSettings

# What the service imports, as globs under the code root: serving/, the mloop package marker,
# mloop/core/ with its sub-packages, and the skops type allowlist's module (models/pipeline.py)
# for the sklearn fallback; not the CLI or the platform.
CODE_FILES = [
    "serving/**/*.py",
    "mloop/__init__.py",
    "mloop/core/**/*.py",
    "models/__init__.py",
    "models/pipeline.py",
    "models/spec.py",
]
PACKAGES = [
    "onnxruntime",
    "scikit-learn",
    "skops",
    "pandas",
    "pyarrow",
    "pydantic-settings",
    "numpy",
    "scipy",
]


def import_model(
    stage_dir: Path, tag: str, labels: dict[str, str], metadata: dict[str, Any]
) -> bool:
    """Copy ``stage_dir`` into the store as ``tag``; False when the tag already existed."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.models.get(tag)
        return False
    except NotFound:
        pass
    with bentoml.models.create(tag, labels=labels, metadata=metadata) as model:
        for item in stage_dir.iterdir():
            if item.is_file():
                shutil.copy2(item, Path(model.path) / item.name)
    return True


def build_bento(
    tag: str, bento_name: str, version: str, labels: dict[str, str], code_root: Path, tmp_root: Path
) -> tuple[str, bool]:
    """Build the Bento for model ``tag``; returns (bento tag, created)."""
    import bentoml
    from bentoml.exceptions import NotFound

    bento_tag = f"{bento_name}:{version}"
    try:
        bentoml.bentos.get(bento_tag)
        return bento_tag, False
    except NotFound:
        pass
    tmp_root.mkdir(parents=True, exist_ok=True)
    ctx = Path(tempfile.mkdtemp(prefix="bento-ctx-", dir=tmp_root))
    try:
        for pattern in CODE_FILES:
            for src in code_root.glob(pattern):
                dest = ctx / src.relative_to(code_root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
        serving_env = ServingSettings(serve_model=tag).to_env()
        os.environ.update(serving_env)
        sys.path.insert(0, str(ctx))
        bento = bentoml.bentos.build(
            PREDICTION_SERVICE,
            name=bento_name,
            version=version,
            labels=labels,
            description=f"mloop prediction service for model {tag}",
            include=CODE_FILES,
            docker={"env": serving_env},
            python={"lock_packages": False, "packages": PACKAGES},
            build_ctx=str(ctx),
        )
        return str(bento.tag), True
    finally:
        shutil.rmtree(ctx, ignore_errors=True)


def export_model(tag: str, path: Path) -> str:
    """Write model ``tag`` to ``path`` in BentoML's export format; returns the file written."""
    import bentoml

    path.parent.mkdir(parents=True, exist_ok=True)
    return str(bentoml.models.export_model(tag, str(path)))


def import_exported(path: Path, tag: str) -> bool:
    """Import the export at ``path`` as ``tag``; False when the tag was already in the store.
    SystemExit (a message, no traceback) when the file holds another tag: that import is undone."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.models.get(tag)
        return False
    except NotFound:
        pass
    model = bentoml.models.import_model(str(path))
    if str(model.tag) != tag:
        bentoml.models.delete(model.tag)
        raise SystemExit(f"{path} holds model {model.tag}, not {tag}: not imported")
    return True


def main() -> None:
    job = json.load(sys.stdin)
    result: dict[str, Any] = {}
    op = job.get("op", "package")
    if op == "export":
        result["exported"] = export_model(job["tag"], Path(job["path"]))
        sys.stdout.write("\n" + json.dumps(result) + "\n")
        return
    if op == "import":
        result["model_created"] = import_exported(Path(job["path"]), job["tag"])
        sys.stdout.write("\n" + json.dumps(result) + "\n")
        return
    result["model_created"] = import_model(
        Path(job["stage_dir"]), job["tag"], job["labels"], job["metadata"]
    )
    if job.get("build", True):
        bento_tag, created = build_bento(
            job["tag"],
            job["bento_name"],
            job["version"],
            job["labels"],
            Path(job["code_root"]),
            Path(job["tmp_root"]),
        )
        result["bento_tag"] = bento_tag
        result["bento_created"] = created
    if job.get("export_path"):
        result["exported"] = export_model(job["tag"], Path(job["export_path"]))
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()

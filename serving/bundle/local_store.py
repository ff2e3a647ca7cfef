"""The local BentoML store as the parent process sees it: where a tag's files are, whether the store
holds a model or a Bento (read on the filesystem, without importing BentoML: ~1 ms), the packaging lock
of a tag, and running the store child (:mod:`serving.bundle.store`) that changes the store.

Packaging (:mod:`serving.bundle.package`) and the team's S3 copies (:mod:`serving.bundle.remote_models`)
both build on it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from mloop.core.entrypoints import SERVING_STORE, python_m
from mloop.core.errors import MloopError, NotFoundError
from mloop.core.names import check_name, child_path
from mloop.core.paths import CODE_ROOT, with_code_root
from mloop.core.settings import Settings


def model_dir(bentoml_home: Path, tag: str) -> Path:
    """Where the store keeps model ``tag`` (``<home>/models/<name>/<version>``; it may not exist)."""
    name, _, version = tag.partition(":")
    return bentoml_home / "models" / name / version


def model_in_store(bentoml_home: Path, tag: str) -> bool:
    """Whether the store holds model ``tag``."""
    return (model_dir(bentoml_home, tag) / "model.yaml").is_file()


def bento_in_store(bentoml_home: Path, bento_tag: str) -> bool:
    """Whether the store holds Bento ``bento_tag``."""
    name, _, version = bento_tag.partition(":")
    return (bentoml_home / "bentos" / name / version / "bento.yaml").is_file()


def stored_model_dir(bentoml_home: Path, tag: str) -> Path:
    """Folder of a model in the store (raises NotFoundError when absent)."""
    path = model_dir(bentoml_home, tag)
    if not (path / "model.yaml").is_file():
        raise NotFoundError(
            f"model {tag} is not in the BentoML store",
            where=str(bentoml_home),
            fix="run mloop package",
        )
    return path


def run_store_job(
    settings: Settings, job: dict[str, Any], timeout: float = 300.0
) -> dict[str, Any]:
    """Run :mod:`serving.bundle.store` in a child process with BENTOML_HOME = ``state.bentoml_home``."""
    env = with_code_root({**os.environ, **settings.service_env()})
    proc = subprocess.run(
        python_m(SERVING_STORE),
        input=json.dumps(job),
        capture_output=True,
        text=True,
        env=env,
        cwd=str(CODE_ROOT),
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise MloopError(
            f"BentoML {job.get('op', 'packaging')} failed",
            where=f"python -m {SERVING_STORE} (BENTOML_HOME={settings.state.bentoml_home})",
            fix="read the error below; packaging runs offline and needs no network\n"
            + proc.stderr[-2500:],
        )
    last = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return json.loads(last[-1]) if last else {}


def package_lock_path(locks: Path, name: str, version: str | int) -> Path:
    """``<locks>/package-<name>-v<version>.lock`` (``locks``: the state's lock folder, created here): one
    packager per tag (the name is checked first)."""
    locks.mkdir(parents=True, exist_ok=True)
    return child_path(locks, f"package-{check_name(name, 'model')}-v{int(str(version))}.lock")

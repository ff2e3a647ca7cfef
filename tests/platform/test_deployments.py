"""prefect.yaml stores nothing host-specific: a run takes its paths and its interpreter from its worker."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from mloop.core.paths import CODE_ROOT
from mloop.core.settings import Settings
from mloop.platform.services import interpreter_path, platform_env


def _pool() -> dict[str, Any]:
    doc = yaml.safe_load((CODE_ROOT / "prefect.yaml").read_text())
    return dict(doc["definitions"]["work_pool"])


def test_the_pool_job_has_no_value_filled_in_at_deploy_time() -> None:
    """`{{ $VAR }}` in job variables is filled in by `prefect deploy` from the deploying host's
    environment: a worker on another host would get that host's MLOOP_HOME and interpreter."""
    variables = _pool()["job_variables"]
    assert "{{" not in yaml.safe_dump(variables), variables
    assert variables["command"] == "python -m prefect.engine"
    for name in (
        "MLOOP_HOME",
        "MLOOP_PROJECT_DIR",
        "MLOOP_CODE_DIR",
        "MLFLOW_TRACKING_URI",
        "PREFECT_HOME",
    ):
        assert name not in variables.get("env", {}), name


def test_interpreter_path_puts_this_interpreter_first_once() -> None:
    here = str(Path(sys.executable).parent)
    assert interpreter_path("/usr/bin:/bin") == os.pathsep.join([here, "/usr/bin", "/bin"])
    assert interpreter_path(f"/usr/bin:{here}:/bin").split(os.pathsep) == [here, "/usr/bin", "/bin"]
    assert interpreter_path("") == here


def test_the_worker_finds_this_interpreter_as_python(tmp_path: Path) -> None:
    env = platform_env(Settings(home=tmp_path / "home", project_dir=tmp_path))
    found = shutil.which("python", path=env["PATH"])
    assert found is not None and Path(found).parent == Path(sys.executable).parent
    assert env["MLOOP_HOME"] == str(tmp_path / "home") and env["MLOOP_CODE_DIR"] == str(CODE_ROOT)

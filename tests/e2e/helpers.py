"""What the end-to-end table tests share: a platform home of their own, and its environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from mloop.core.processes import free_port
from mloop.core.settings import Settings
from tests.helpers import make_project

TOKEN = "e2e-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def e2e_home(root: Path) -> tuple[Settings, dict[str, str]]:
    """Settings for a home and project under ``root`` (a free serving port, the test token), and the
    environment the flows run with there: set it for the duration of the test."""
    project = make_project(root / "project")
    settings = Settings(
        home=root / "home", project_dir=project, serve_port=free_port(), api_token=SecretStr(TOKEN)
    )
    settings.state.ensure()
    env = {
        "MLOOP_HOME": str(settings.state.root),
        "MLOOP_PROJECT_DIR": str(project),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "MLOOP_SERVE_PORT": str(settings.serve_port),
        "BENTOML_HOME": str(settings.state.bentoml_home),
        "MLOOP_API_TOKEN": TOKEN,
    }
    return settings, env

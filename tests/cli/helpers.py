"""What the CLI tests share: an environment that points the CLI at an empty home."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mloop.core.processes import free_port


@contextmanager
def empty_home_env(root: Path) -> Iterator[Path]:
    """MLOOP_HOME (``root/home``, not created) and an empty project dir under ``root``, on ports nobody
    serves; os.environ is restored afterwards (the CLI exports its settings into it)."""
    saved = dict(os.environ)
    (root / "project").mkdir()
    os.environ.update(
        {
            "MLOOP_HOME": str(root / "home"),
            "MLOOP_PROJECT_DIR": str(root / "project"),
            **{
                f"MLOOP_{name}_PORT": str(free_port())
                for name in ("PREFECT", "MLFLOW", "SERVE", "WEBHOOK")
            },
        }
    )
    try:
        yield root
    finally:
        os.environ.clear()
        os.environ.update(saved)

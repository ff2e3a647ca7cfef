"""Cache of the scored reference sample of a model version (the drift check's reference side).

The reference is the champion's exact training data version, sampled with a seed and scored by
the same model version: it only changes with (model, version, dataset md5, seed, sample size), so
the monitor keeps it as parquet under ``MLOOP_HOME/monitoring/reference/<model>/`` keyed by those,
and a sweep does not re-read the DVC version, reload the pipeline and re-score it on every run.
A new champion gets a new key; the model's older entries are removed when a new one is written.
An unreadable entry is removed and recomputed, never trusted.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from mloop.core.names import check_name, child_path

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

log = logging.getLogger(__name__)


def cache_path(state_root: Path, model_name: str, model_version: str, md5: str, seed: int, rows: int) -> Path:
    """Where the scored reference of this (model, version, dataset md5, seed, sample size) is kept."""
    if not (md5.isalnum() and str(model_version).isalnum()):
        raise ValueError(f"unexpected version {model_version!r} / md5 {md5!r}")
    folder = child_path(state_root / "monitoring" / "reference", check_name(model_name, "model"))
    return folder / f"v{model_version}-{md5}-s{int(seed)}-n{int(rows)}.parquet"


def load_cached(path: Path) -> pd.DataFrame | None:
    """The cached frame, or None when absent or unreadable (an unreadable file is removed)."""
    if not path.is_file():
        return None
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file: recompute
        log.warning("reference cache %s unreadable (%s): recomputing", path.name, type(exc).__name__)
        path.unlink(missing_ok=True)
        return None


def store_cached(path: Path, frame: pd.DataFrame) -> None:
    """Write ``frame`` atomically (:func:`~mloop.core.files.write_atomic`) and drop the model's other entries."""
    from mloop.core.files import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, frame.reset_index(drop=True).to_parquet(index=False))
    for other in path.parent.glob("*.parquet"):
        if other != path:
            other.unlink(missing_ok=True)

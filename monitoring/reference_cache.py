"""Cache of the scored reference sample of a model version (the drift check's reference side).

The reference is the champion's exact training data version, sampled with a seed and scored by
the same model version: it only changes with (model, version, dataset md5, seed, sample size), so
the monitor keeps it as parquet under ``MLOOP_HOME/monitoring/reference/<model>/`` keyed by those,
and a sweep does not re-read the DVC version, reload the pipeline and re-score it on every run.
A new champion gets a new key; the model's older entries are removed when a new one is written.
An unreadable entry is removed and recomputed, never trusted.

The train flow fills the entry of a version it promotes (:func:`scored_reference` with the frame and
pipeline it holds: the same bytes, the same model), so the first check of a new champion, a sweep's
included, reads it instead of loading the model and the dataset version again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from mloop.core.names import check_name, child_path

if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

    import pandas as pd

    from mloop.core.contract import DatasetContract
    from mloop.core.settings import Settings

log = logging.getLogger(__name__)


def cache_path(
    state_root: Path, model_name: str, model_version: str, md5: str, seed: int, rows: int
) -> Path:
    """Where the scored reference of this (model, version, dataset md5, seed, sample size) is kept."""
    if not (md5.isalnum() and str(model_version).isalnum()):
        raise ValueError(f"unexpected version {model_version!r} / md5 {md5!r}")
    folder = child_path(state_root / "monitoring" / "reference", check_name(model_name, "model"))
    # -l2: scored in the prediction log's layout 2 (inputs as input.<name>); an entry of before is never read
    return folder / f"v{model_version}-{md5}-s{int(seed)}-n{int(rows)}-l2.parquet"


def load_cached(path: Path) -> pd.DataFrame | None:
    """The cached frame, or None when absent or unreadable (an unreadable file is removed)."""
    if not path.is_file():
        return None
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except Exception as exc:
        log.warning(
            "reference cache %s unreadable (%s): recomputing", path.name, type(exc).__name__
        )
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


def scored_reference(
    settings: Settings,
    model_name: str,
    model_version: str,
    dataset: str,
    md5: str,
    contract: DatasetContract,
    *,
    seed: int,
    rows: int,
    frame: pd.DataFrame | None = None,
    pipeline: Any = None,
) -> pd.DataFrame:
    """The scored reference of (model, version, dataset md5, seed, rows): the cached one, else the dataset
    version's exact bytes (``frame`` when the caller holds them) sampled with ``seed`` to ``rows`` and scored
    by the version (``pipeline`` when the caller holds it), then cached."""
    from mloop.core.datasets import read_version
    from monitoring.scoring import add_predictions, predict_frame
    from monitoring.window import sample_rows

    path = cache_path(settings.state.root, model_name, model_version, md5, seed, rows)
    cached = load_cached(path)
    if cached is not None:
        return cached
    sample = sample_rows(
        read_version(settings, dataset, md5) if frame is None else frame, rows, seed
    )
    if pipeline is None:
        scored = add_predictions(settings.tracking_uri, model_name, model_version, sample, contract)
    else:
        scored = predict_frame(pipeline, sample, contract)
    scored = scored.reset_index(drop=True)
    store_cached(path, scored)
    return scored

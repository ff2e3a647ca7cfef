"""Helpers of the monitoring tests (also used by bench/drift.py): events read back from the session
Prefect server, traffic written to the prediction log as the service writes it."""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from mloop.core.settings import Settings


def model_events(name: str, model: str, since: datetime, timeout: float = 30.0) -> list[dict]:
    """Events ``name`` on resource ``mloop.model.<model>`` since ``since``, read back from the Prefect
    API (polled until one shows up or ``timeout`` seconds pass)."""
    url = os.environ["PREFECT_API_URL"] + "/events/filter"
    body = {
        "filter": {
            "occurred": {"since": since.isoformat()},
            "event": {"name": [name]},
            "resource": {"id": [f"mloop.model.{model}"]},
        },
        "limit": 50,
    }
    deadline = time.monotonic() + timeout
    while True:
        found = httpx.post(url, json=body, timeout=10).json()["events"]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def log_traffic(settings: Settings, name: str, version: str, df: pd.DataFrame) -> list[str]:
    """Score ``df`` with version ``version`` of model ``name`` and write it to the prediction log as
    the service does (``probability`` of a classifier, ``score`` of a regressor); the prediction ids."""
    from mloop.core.contract import load_contract
    from monitoring.scoring import add_predictions
    from serving.log.predictions import PredictionLogger, new_prediction_ids

    contract = load_contract(settings.project_dir, name)
    scored = add_predictions(settings.tracking_uri, name, version, df, contract)
    value = "probability" if "probability" in scored else "score"
    ids = new_prediction_ids(len(df))
    logger = PredictionLogger(settings.state.predictions, flush_seconds=60)
    logger.log(
        ids=ids,
        model_name=name,
        model_version=version,
        features={
            c.name: df[c.name].astype(object).where(df[c.name].notna(), None).tolist()
            for c in contract.feature_columns
        },
        predictions=scored["prediction"].tolist(),
        values=scored[value].tolist(),
        value_name=value,
    )
    logger.close()
    return ids

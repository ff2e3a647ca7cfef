"""The two reference services of ``bench/serving.py`` (not part of mloop).

- ``FloorService``: a BentoML 1.4 service whose ``/predict`` parses ``{"records": [...]}`` and
  returns a constant: the framework's own floor on this machine (with the same explicit JSON
  content type as mloop's service, so both skip BentoML's per-response schema generation).
- ``naive_app``: uvicorn + FastAPI + the same sklearn pipeline, one DataFrame per request: the
  naive baseline. The pipeline (skops file) and contract (JSON) paths come from the environment
  (``BENCH_PIPELINE``, ``BENCH_CONTRACT``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import bentoml
from bentoml.validators import ContentType

JsonList = Annotated[list[dict[str, Any]], ContentType("application/json")]


@bentoml.service(name="bench-floor", workers=1, logging={"access": {"enabled": False}})
class FloorService:
    @bentoml.api
    async def predict(self, records: list[dict[str, Any]]) -> JsonList:
        # same explicit content type as mloop's service (else BentoML rebuilds a JSON schema per response)
        return [{"prediction": 0, "probability": 0.5, "model_name": "floor", "model_version": "0"}]


def naive_app() -> Any:
    """FastAPI app factory (``uvicorn --factory bench.serving_apps:naive_app``)."""
    import numpy as np
    import pandas as pd
    import skops.io as sio
    from fastapi import FastAPI

    from mloop.core.contract import DatasetContract
    from mloop.core.frames import column
    from mloop.core.frames import numeric as numeric_values

    contract = DatasetContract.model_validate_json(Path(os.environ["BENCH_CONTRACT"]).read_text())
    path = os.environ["BENCH_PIPELINE"]
    pipeline = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    numeric = contract.numeric_features
    categorical = contract.categorical_features
    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict[str, Any]) -> list[dict[str, Any]]:
        frame = pd.DataFrame(body["records"])
        for c in numeric:
            frame[c] = numeric_values(column(frame, c)).astype("float64")
        for c in categorical:
            frame[c] = frame[c].map(lambda v: np.nan if v is None else str(v)).astype(object)
        proba = pipeline.predict_proba(frame[numeric + categorical])[:, 1]
        return [
            {
                "prediction": int(p >= 0.5),
                "probability": float(p),
                "model_name": "naive",
                "model_version": "0",
            }
            for p in proba
        ]

    return app

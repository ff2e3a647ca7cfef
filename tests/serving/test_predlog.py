"""Prediction log and feedback store (pure file I/O, no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from serving.predlog import (
    PredictionLogger,
    new_prediction_ids,
    read_feedback,
    read_predictions,
    record_feedback,
)


def _log(logger: PredictionLogger, n: int, version: str = "1") -> list[str]:
    ids = new_prediction_ids(n)
    logger.log(
        ids=ids,
        model_name="loans",
        model_version=version,
        features={"age": [30.0] * n, "purpose": ["car"] * n},
        predictions=[1] * n,
        values=[0.7] * n,
    )
    return ids


def test_logger_writes_day_partitioned_parquet_and_reads_back(tmp_path: Path) -> None:
    logger = PredictionLogger(tmp_path, flush_seconds=60)
    ids = _log(logger, 3) + _log(logger, 2, version="2")
    assert read_predictions(tmp_path, "loans").empty  # nothing flushed yet: writes are off the request path
    assert logger.close() == 5
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    parts = list((tmp_path / "loans" / f"date={day}").glob("part-*.parquet"))
    assert len(parts) == 1
    df = read_predictions(tmp_path, "loans")
    assert df["prediction_id"].tolist() == ids
    assert df["model_version"].tolist() == ["1"] * 3 + ["2"] * 2
    assert {"timestamp", "model_name", "age", "purpose", "prediction", "probability"} <= set(df.columns)
    assert read_predictions(tmp_path, "loans", last_n=2)["prediction_id"].tolist() == ids[-2:]
    future = datetime.now(UTC) + timedelta(hours=1)
    assert read_predictions(tmp_path, "loans", since=future).empty


def test_logger_flushes_by_size_in_the_background(tmp_path: Path) -> None:
    logger = PredictionLogger(tmp_path, flush_rows=10, flush_seconds=60)
    _log(logger, 12)
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and read_predictions(tmp_path, "loans").empty:
        time.sleep(0.05)
    assert len(read_predictions(tmp_path, "loans")) == 12
    logger.close()


def test_unknown_model_reads_as_empty_frame(tmp_path: Path) -> None:
    df = read_predictions(tmp_path, "nope")
    assert df.empty and list(df.columns)[:4] == ["prediction_id", "timestamp", "model_name", "model_version"]


def test_feedback_keeps_the_latest_label_per_prediction(tmp_path: Path) -> None:
    assert record_feedback(tmp_path, "loans", pd.DataFrame({"prediction_id": ["a", "b"], "label": [0, 1]})) == 2
    record_feedback(tmp_path, "loans", pd.DataFrame({"prediction_id": ["a"], "label": [1]}))
    fb = read_feedback(tmp_path, "loans").set_index("prediction_id")
    assert fb.loc["a", "label"] == 1 and fb.loc["b", "label"] == 1
    assert list(read_feedback(tmp_path, "other").columns) == ["prediction_id", "label", "timestamp"]

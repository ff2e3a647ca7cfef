"""The prediction log keeps inputs apart from its own columns (serving.log.layout), and old parts still read."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from serving.log.layout import LAYOUT_KEY, current_layout, split_log
from serving.log.predictions import (
    PredictionLogger,
    find_prediction,
    new_prediction_ids,
    read_predictions,
)

CLASHING = {  # features named like the log's own columns, with values unlike theirs
    "score": [10.0, 20.0, 30.0],
    "timestamp": [1.5, 2.5, 3.5],
    "label": ["a", "b", "c"],
    "prediction": [7, 8, 9],
    "prediction_id": ["x", "y", "z"],
    "model_version": [0.1, 0.2, 0.3],
}


def _log_clashing(logger: PredictionLogger, value_name: str = "score") -> list[str]:
    ids = new_prediction_ids(3)
    logger.log(
        ids=ids,
        model_name="odd",
        model_version="4",
        features=CLASHING,
        predictions=[0.25, 0.5, 0.75],
        values=[0.25, 0.5, 0.75],
        value_name=value_name,
    )
    return ids


def test_features_named_like_log_columns_keep_their_own_values(tmp_path: Path) -> None:
    logger = PredictionLogger(tmp_path, flush_seconds=60)
    ids = _log_clashing(logger)
    assert logger.close() == 3
    df = read_predictions(tmp_path, "odd")
    meta, inputs = split_log(df)
    assert meta["prediction_id"].tolist() == ids
    assert meta["model_version"].tolist() == ["4"] * 3
    assert meta["prediction"].tolist() == [0.25, 0.5, 0.75]
    assert meta["score"].tolist() == [0.25, 0.5, 0.75]
    assert isinstance(meta["timestamp"].dtype, pd.DatetimeTZDtype)
    assert inputs.to_dict("list") == CLASHING
    assert list(inputs.index) == list(meta.index)
    row = find_prediction(tmp_path, ids[1])
    assert row is not None
    assert (row["prediction_id"], row["input.prediction_id"]) == (ids[1], "y")
    assert (row["score"], row["input.score"]) == (0.5, 20.0)


def old_part(folder: Path, ids: list[str]) -> Path:
    """A part as the writer before layout 2 made it: inputs under their own names, no layout key."""
    table = pa.table(
        {
            "prediction_id": ids,
            "timestamp": pa.array(
                [datetime.now(UTC)] * len(ids), type=pa.timestamp("us", tz="UTC")
            ),
            "model_name": ["loans"] * len(ids),
            "model_version": ["1"] * len(ids),
            "age": [41.0 + i for i in range(len(ids))],
            "purpose": ["car"] * len(ids),
            "prediction": [1] * len(ids),
            "probability": [0.9] * len(ids),
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "part-20200101T000000000000-1-000000-abcdef.parquet"
    pq.write_table(table, path)
    return path


def test_an_old_part_reads_beside_a_new_one(tmp_path: Path) -> None:
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    old_ids = new_prediction_ids(2)
    old = old_part(tmp_path / "loans" / f"date={day}", old_ids)
    assert LAYOUT_KEY not in (pq.read_schema(old).metadata or {})
    logger = PredictionLogger(tmp_path, flush_seconds=60)
    new_ids = new_prediction_ids(1)
    logger.log(
        ids=new_ids,
        model_name="loans",
        model_version="2",
        features={"age": [50.0], "purpose": ["home"]},
        predictions=[0],
        values=[0.2],
    )
    logger.close()
    df = read_predictions(tmp_path, "loans")
    assert df["prediction_id"].tolist() == old_ids + new_ids
    meta, inputs = split_log(df)
    assert inputs.to_dict("list") == {"age": [41.0, 42.0, 50.0], "purpose": ["car", "car", "home"]}
    assert meta["probability"].tolist() == [0.9, 0.9, 0.2]
    assert sorted(meta.columns) == sorted(
        ["prediction_id", "timestamp", "model_name", "model_version", "prediction", "probability"]
    )
    row = find_prediction(tmp_path, old_ids[1])
    assert row is not None and row["input.age"] == 42.0 and row["probability"] == 0.9


def test_current_layout_leaves_a_marked_part_alone_and_is_idempotent(tmp_path: Path) -> None:
    old = pq.read_table(old_part(tmp_path, ["a"]))
    once = current_layout(old)
    assert once.column_names == [
        "prediction_id",
        "timestamp",
        "model_name",
        "model_version",
        "input.age",
        "input.purpose",
        "prediction",
        "probability",
    ]
    assert current_layout(once).column_names == once.column_names
    assert current_layout(once.select(["prediction_id"])).column_names == ["prediction_id"]

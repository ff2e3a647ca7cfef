"""Prediction log and feedback store (pure file I/O, no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from serving.log.feedback import read_feedback, record_feedback
from serving.log.predictions import PredictionLogger, new_prediction_ids, read_predictions


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
    assert read_predictions(
        tmp_path, "loans"
    ).empty  # nothing flushed yet: writes are off the request path
    assert logger.close() == 5
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    parts = list((tmp_path / "loans" / f"date={day}").glob("part-*.parquet"))
    assert len(parts) == 1
    df = read_predictions(tmp_path, "loans")
    assert df["prediction_id"].tolist() == ids
    assert df["model_version"].tolist() == ["1"] * 3 + ["2"] * 2
    assert {
        "timestamp",
        "model_name",
        "input.age",
        "input.purpose",
        "prediction",
        "probability",
    } <= set(df.columns)
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
    assert df.empty and list(df.columns)[:4] == [
        "prediction_id",
        "timestamp",
        "model_name",
        "model_version",
    ]


def _logged(root: Path, n: int) -> list[str]:
    """``n`` prediction ids of model ``loans`` in the prediction log under ``root/predictions``."""
    logger = PredictionLogger(root / "predictions", flush_seconds=60)
    ids = _log(logger, n)
    logger.close()
    return ids


def test_feedback_keeps_the_first_label_per_prediction(tmp_path: Path) -> None:
    a, b = _logged(tmp_path, 2)
    fb_dir = tmp_path / "feedback"
    assert (
        record_feedback(fb_dir, "loans", pd.DataFrame({"prediction_id": [a, b], "label": [0, 1]}))
        == 2
    )
    assert (
        record_feedback(fb_dir, "loans", pd.DataFrame({"prediction_id": [a], "label": [1]})) == 0
    )  # a conflict
    fb = read_feedback(fb_dir, "loans").set_index("prediction_id")
    assert fb.loc[a, "label"] == 0 and fb.loc[b, "label"] == 1
    assert list(read_feedback(fb_dir, "other").columns) == ["prediction_id", "label", "timestamp"]


def test_feedback_for_an_id_not_in_the_log_is_not_recorded(tmp_path: Path) -> None:
    _logged(tmp_path, 1)
    fb_dir = tmp_path / "feedback"
    assert (
        record_feedback(
            fb_dir, "loans", pd.DataFrame({"prediction_id": ["f" * 32, "nope"], "label": [1, 0]})
        )
        == 0
    )
    assert read_feedback(fb_dir, "loans").empty


def _dead_letters(root: Path, model: str = "loans") -> list[Path]:
    return sorted((root / model / "dead-letter").glob("part-*.jsonl"))


def _log_counts(logger: PredictionLogger, values: list[int]) -> list[str]:
    ids = new_prediction_ids(len(values))
    logger.log(
        ids=ids,
        model_name="loans",
        model_version="1",
        features={"n_accounts": values, "purpose": ["car"] * len(values)},
        predictions=[1] * len(values),
        values=[0.7] * len(values),
    )
    return ids


def test_a_poisoned_batch_goes_to_dead_letter_and_the_next_batch_is_written(tmp_path: Path) -> None:
    counted: list[tuple[str, str, int]] = []
    logger = PredictionLogger(
        tmp_path, flush_seconds=60, on_dead_letter=lambda k, m, n, r: counted.append((k, m, n))
    )
    good_before = _log_counts(logger, [1, 2])
    poisoned = _log_counts(logger, [2**63])  # no parquet int64 holds it (OverflowError)
    good_after = _log_counts(logger, [3, 4, 5])
    assert logger.flush() == 5
    logged = read_predictions(tmp_path, "loans")
    assert logged["prediction_id"].tolist() == good_before + good_after
    assert logged["input.n_accounts"].tolist() == [1, 2, 3, 4, 5]  # the good rows keep their type
    (part,) = _dead_letters(tmp_path)
    assert poisoned[0] in part.read_text() and str(2**63) in part.read_text()
    assert "parquet" in part.with_suffix(".reason.txt").read_text()
    assert counted == [("predictions", "loans", 1)] and logger.rows_dead_lettered == 1
    later = _log_counts(logger, [6, 7, 8, 9])  # logging goes on: the poisoned batch is not retried
    assert logger.close() == 4
    assert read_predictions(tmp_path, "loans")["prediction_id"].tolist()[-4:] == later
    assert len(_dead_letters(tmp_path)) == 1


def test_a_write_that_keeps_failing_is_retried_a_bounded_number_of_times(
    tmp_path: Path, monkeypatch
) -> None:
    import serving.log.predictions as predlog

    def broken(table: object, path: Path) -> None:
        raise OSError("disk full")

    logger = PredictionLogger(tmp_path, flush_seconds=60, max_attempts=3)
    ids = _log(logger, 2)
    monkeypatch.setattr(predlog, "write_atomic", broken)
    for _ in range(2):  # failed attempts 1 and 2: kept for a retry
        try:
            logger.flush()
        except OSError:
            pass
        assert not _dead_letters(tmp_path)
    try:
        logger.flush()  # attempt 3: set aside
    except OSError:
        pass
    (part,) = _dead_letters(tmp_path)
    assert (
        all(i in part.read_text() for i in ids)
        and "disk full" in part.with_suffix(".reason.txt").read_text()
    )
    monkeypatch.undo()
    assert logger.flush() == 0  # nothing left pending
    later = _log(logger, 1)
    assert (
        logger.close() == 1
        and read_predictions(tmp_path, "loans")["prediction_id"].tolist() == later
    )


def test_feedback_that_cannot_be_written_goes_to_dead_letter(tmp_path: Path) -> None:
    a, b, c = _logged(tmp_path, 3)
    fb_dir = tmp_path / "feedback"
    counted: list[tuple[str, str, int]] = []
    labels = pd.DataFrame({"prediction_id": [a, b], "label": [2**64, "x"]})
    assert (
        record_feedback(
            fb_dir, "loans", labels, on_dead_letter=lambda k, m, n, r: counted.append((k, m, n))
        )
        == 0
    )
    assert counted == [("feedback", "loans", 2)]
    assert len(_dead_letters(fb_dir)) == 1
    assert record_feedback(fb_dir, "loans", pd.DataFrame({"prediction_id": [c], "label": [1]})) == 1
    assert read_feedback(fb_dir, "loans")["prediction_id"].tolist() == [c]
    # a set-aside label was never recorded: the id can still get one
    assert record_feedback(fb_dir, "loans", pd.DataFrame({"prediction_id": [a], "label": [0]})) == 1


def test_every_plain_column_of_a_part_is_one_of_the_logs_own(tmp_path: Path) -> None:
    """An old part is read by taking every column outside LOG_COLUMNS for an input: a log column the writer
    added but LOG_COLUMNS lacked would be read back from old parts as an input."""
    import pyarrow.parquet as pq

    from serving.log.layout import LAYOUT, LAYOUT_KEY, LOG_COLUMNS

    logger = PredictionLogger(tmp_path, flush_seconds=60)
    _log(logger, 2)
    logger.log(
        ids=new_prediction_ids(1),
        model_name="loans",
        model_version="1",
        features={"age": [1.0]},
        predictions=[3.5],
        values=[3.5],
        value_name="score",
    )
    logger.close()
    (part,) = (tmp_path / "loans").glob("date=*/part-*.parquet")
    schema = pq.read_schema(part)
    assert schema.metadata[LAYOUT_KEY] == LAYOUT
    plain = [c for c in schema.names if not c.startswith("input.")]
    assert set(plain) == set(LOG_COLUMNS)
    assert sorted(set(schema.names) - set(plain)) == ["input.age", "input.purpose"]

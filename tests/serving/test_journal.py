"""The write-ahead journal of the prediction log (pure file I/O; dead writers simulated by name)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from serving.log.journal import (
    JOURNAL_DIR,
    SegmentName,
    parse_segment_name,
    process_start,
    writer_alive,
)
from serving.log.predictions import (
    PredictionLogger,
    compact_journal,
    compact_journals,
    find_prediction,
    new_prediction_ids,
    read_predictions,
)


def _log(logger: PredictionLogger, n: int, version: str = "1") -> list[str]:
    ids = new_prediction_ids(n)
    logger.log(
        ids=ids,
        model_name="loans",
        model_version=version,
        features={"age": [30.0] * n, "purpose": ["car"] * n, "n": list(range(n))},
        predictions=[1] * n,
        values=[0.7] * n,
    )
    return ids


def _segments(root: Path) -> list[Path]:
    folder = root / "loans" / JOURNAL_DIR
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


def _dead_pid() -> tuple[int, int]:
    """A (pid, start) that names no running process: a child that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start(proc.pid) or 1
    proc.wait()
    return proc.pid, start


def _as_dead_writer(root: Path) -> list[Path]:
    """Rename this process's segments as if a dead process had written them."""
    pid, start = _dead_pid()
    moved = []
    for seg in _segments(root):
        name = parse_segment_name(seg.name)
        assert name is not None and name.pid == os.getpid()
        target = seg.with_name(SegmentName(pid, start, name.seq).file_name())
        seg.rename(target)
        moved.append(target)
    return moved


def test_segment_names_and_liveness() -> None:
    me = SegmentName(os.getpid(), process_start(os.getpid()) or 0, 3)
    assert parse_segment_name(me.file_name()) == me
    assert writer_alive(me)
    assert not writer_alive(
        SegmentName(me.pid, me.start + 1, 3)
    )  # same pid, other start: a reused pid
    assert parse_segment_name("x.jsonl") is None and parse_segment_name("1-2-3.jsonl.torn") is None


def test_every_logged_batch_is_journaled_before_the_flush_and_the_flush_removes_the_segment(
    tmp_path: Path,
) -> None:
    logger = PredictionLogger(tmp_path, flush_seconds=60)
    ids = _log(logger, 3) + _log(logger, 2)
    segs = _segments(tmp_path)
    assert len(segs) == 1 and len(segs[0].read_bytes().splitlines()) == 2
    assert read_predictions(
        tmp_path, "loans"
    ).empty  # a live writer's segment is not compacted by readers
    assert logger.flush() == 5
    assert _segments(tmp_path) == []
    assert read_predictions(tmp_path, "loans")["prediction_id"].tolist() == ids
    _log(logger, 1)
    assert len(_segments(tmp_path)) == 1  # a new segment after the rotation
    logger.close()
    assert _segments(tmp_path) == []


def test_a_dead_writers_segment_is_compacted_by_the_readers(tmp_path: Path) -> None:
    logger = PredictionLogger(tmp_path, flush_seconds=60)
    ids = _log(logger, 3) + _log(logger, 2, version="2")
    # the process "dies": nothing flushed, the segment belongs to a dead pid now
    logger._closed = True  # stop the flusher without flushing
    _as_dead_writer(tmp_path)
    df = read_predictions(tmp_path, "loans")
    assert df["prediction_id"].tolist() == ids
    assert df["model_version"].tolist() == ["1"] * 3 + ["2"] * 2
    assert df["input.n"].tolist() == [0, 1, 2, 0, 1] and df["probability"].tolist() == [0.7] * 5
    assert str(df["timestamp"].dtype).startswith("datetime64")
    assert _segments(tmp_path) == []
    assert len(read_predictions(tmp_path, "loans")) == 5  # idempotent: read again, no duplicate
    found = find_prediction(tmp_path, ids[0])
    assert found is not None and found["model_version"] == "1"


def test_compaction_after_a_crash_between_part_and_segment_delete_does_not_duplicate(
    tmp_path: Path,
) -> None:
    logger = PredictionLogger(tmp_path, flush_seconds=60)
    ids = _log(logger, 4)
    seg = _segments(tmp_path)[0]
    saved = seg.read_bytes()
    logger.flush()  # part written, segment deleted ...
    seg.write_bytes(saved)  # ... a crash before the delete would have left it
    logger._closed = True
    # the part carries this process's pid: rename the segment to a dead writer with this pid? no:
    # keep the pid (the dedupe is by the writer's own parts), mark the writer dead by its start
    name = parse_segment_name(seg.name)
    assert name is not None
    seg.rename(seg.with_name(SegmentName(name.pid, name.start + 1, name.seq).file_name()))
    assert compact_journal(tmp_path / "loans") == 0
    assert read_predictions(tmp_path, "loans")["prediction_id"].tolist() == ids


def test_a_torn_last_journal_line_is_set_aside(tmp_path: Path) -> None:
    logger = PredictionLogger(tmp_path, flush_seconds=60)
    ids = _log(logger, 2)
    logger._closed = True
    (seg,) = _as_dead_writer(tmp_path)
    with open(seg, "ab") as f:
        f.write(b'{"ids": ["abc"], "ts": "2026-')  # a torn write
    assert compact_journals(tmp_path) == 2
    assert read_predictions(tmp_path, "loans")["prediction_id"].tolist() == ids
    torn = seg.with_name(seg.name + ".torn")
    assert torn.exists() and "abc" in torn.read_text()


def test_rows_parquet_cannot_hold_go_to_dead_letter_in_compaction_too(tmp_path: Path) -> None:
    logger = PredictionLogger(tmp_path, flush_seconds=60)
    good = _log(logger, 2)
    bad = new_prediction_ids(1)
    logger.log(
        ids=bad,
        model_name="loans",
        model_version="1",
        features={"age": [1.0, 2.0]},
        predictions=[1],
        values=[0.5],
    )  # two values for one id
    logger._closed = True
    _as_dead_writer(tmp_path)
    df = read_predictions(tmp_path, "loans")
    assert df["prediction_id"].tolist() == good
    dead = "".join(p.read_text() for p in (tmp_path / "loans" / "dead-letter").glob("part-*.jsonl"))
    assert bad[0] in dead


def test_journal_off_writes_no_segment(tmp_path: Path) -> None:
    logger = PredictionLogger(tmp_path, flush_seconds=60, journal=False)
    _log(logger, 2)
    assert _segments(tmp_path) == []
    assert logger.close() == 2
    assert isinstance(read_predictions(tmp_path, "loans"), pd.DataFrame)

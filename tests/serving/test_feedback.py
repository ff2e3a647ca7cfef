"""The feedback trust rule (pure file I/O, no server): known ids only, first label wins, a second
different label is a recorded conflict, an equal one a counted duplicate."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import cast

import pandas as pd
import pytest

from mloop.core.errors import MloopError
from serving.log.feedback import (
    FeedbackStore,
    RecentIds,
    logged_ids,
    read_conflicts,
    read_feedback,
    record_labels,
    same_label,
)
from serving.log.predictions import PredictionLogger, new_prediction_ids
from serving.log.remote_parts import RemoteLog


def _logged(root: Path, n: int, model: str = "loans") -> list[str]:
    logger = PredictionLogger(root / "predictions", flush_seconds=60)
    ids = new_prediction_ids(n)
    logger.log(
        ids=ids,
        model_name=model,
        model_version="1",
        features={"age": [30.0] * n},
        predictions=[1] * n,
        values=[0.7] * n,
    )
    logger.close()
    return ids


def _store(root: Path, recent: RecentIds | None = None) -> FeedbackStore:
    return FeedbackStore(root / "feedback", root / "predictions", recent=recent)


def test_recent_ids_are_bounded_and_keep_the_newest() -> None:
    recent = RecentIds(capacity=100, generations=4)
    old = new_prediction_ids(100)
    recent.add("loans", old)
    new = new_prediction_ids(100)
    recent.add("loans", new)
    assert len(recent) <= 100
    assert recent.known("loans", new) == set(new)
    assert not recent.known("loans", old[:25])  # the oldest generation was dropped
    assert recent.known("loans", ["not-hex", "f" * 32]) == set()
    assert recent.known("other", new) == set()  # ids are known per model


def test_an_id_only_in_memory_is_known_before_the_log_is_written(tmp_path: Path) -> None:
    recent = RecentIds()
    (pid,) = new_prediction_ids(1)
    recent.add("loans", [pid])
    result = _store(tmp_path, recent).record("loans", [(pid, 1)])
    assert result.recorded == 1 and result.unknown == 0
    assert read_feedback(tmp_path / "feedback", "loans")["prediction_id"].tolist() == [pid]


def test_logged_ids_reads_the_log_of_that_model_only(tmp_path: Path) -> None:
    mine = _logged(tmp_path, 3)
    other = _logged(tmp_path, 2, model="other")
    assert logged_ids(tmp_path / "predictions", "loans", [*mine, *other, "x"]) == set(mine)


def test_unknown_ids_are_refused_and_listed(tmp_path: Path) -> None:
    (known,) = _logged(tmp_path, 1)
    result = _store(tmp_path).record("loans", [(known, 1), ("e" * 32, 0), ("forged", 1)])
    assert (result.recorded, result.unknown) == (1, 2)
    assert result.answer()["rejected"] == [
        {"prediction_id": "e" * 32, "reason": "unknown"},
        {"prediction_id": "forged", "reason": "unknown"},
    ]


def test_a_second_different_label_is_a_conflict_and_the_first_is_kept(tmp_path: Path) -> None:
    a, b = _logged(tmp_path, 2)
    store = _store(tmp_path)
    assert store.record("loans", [(a, 0), (b, 1)]).recorded == 2
    result = store.record("loans", [(a, 1)], source={"via": "test", "client": "127.0.0.1"})
    assert (result.recorded, result.conflicts, result.duplicates) == (0, 1, 0)
    assert result.rejected == [{"prediction_id": a, "reason": "conflict"}]
    labels = read_feedback(tmp_path / "feedback", "loans").set_index("prediction_id")["label"]
    assert labels[a] == 0 and labels[b] == 1
    (conflict,) = read_conflicts(tmp_path / "feedback", "loans")
    assert (
        conflict["prediction_id"] == a and conflict["first_label"] == 0 and conflict["label"] == 1
    )
    assert (
        conflict["request"] == {"via": "test", "client": "127.0.0.1"}
        and conflict["timestamp"]
        and conflict["first_timestamp"]
    )
    # a fresh store (another process, a restart) reads the first label from disk
    again = _store(tmp_path).record("loans", [(a, 1)])
    assert again.conflicts == 1 and len(read_conflicts(tmp_path / "feedback", "loans")) == 2


def test_the_same_label_twice_is_a_duplicate(tmp_path: Path) -> None:
    (a,) = _logged(tmp_path, 1)
    store = _store(tmp_path)
    store.record("loans", [(a, 1)])
    result = store.record("loans", [(a, 1), (a, 1)])
    assert (result.recorded, result.duplicates, result.conflicts) == (0, 2, 0)
    assert read_conflicts(tmp_path / "feedback", "loans") == []
    assert len(read_feedback(tmp_path / "feedback", "loans")) == 1


def test_within_one_batch_the_first_label_wins(tmp_path: Path) -> None:
    (a,) = _logged(tmp_path, 1)
    result = _store(tmp_path).record("loans", [(a, 1), (a, 0)])
    assert (result.recorded, result.conflicts) == (1, 1)
    assert read_feedback(tmp_path / "feedback", "loans")["label"].tolist() == [1]


def test_read_feedback_keeps_the_first_label_of_an_older_store(tmp_path: Path) -> None:
    """Stores written before the trust rule may hold several labels per id: the first one counts."""
    import pyarrow as pa

    from serving.log.parts import write_atomic

    folder = tmp_path / "feedback" / "loans"
    for i, label in enumerate((0, 1)):
        df = pd.DataFrame(
            {
                "prediction_id": ["a"],
                "label": [label],
                "timestamp": [pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(i, "s")],
            }
        )
        write_atomic(pa.Table.from_pandas(df, preserve_index=False), folder / f"part-{i}.parquet")
    assert read_feedback(tmp_path / "feedback", "loans")["label"].tolist() == [0]


def test_concurrent_labels_for_one_id_record_exactly_one(tmp_path: Path) -> None:
    (a,) = _logged(tmp_path, 1)
    store = _store(tmp_path)
    results = []

    def send(label: int) -> None:
        results.append(store.record("loans", [(a, label)]))

    threads = [threading.Thread(target=send, args=(i % 2,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.recorded for r in results) == 1
    assert sum(r.recorded + r.duplicates + r.conflicts for r in results) == 8
    assert len(read_feedback(tmp_path / "feedback", "loans")) == 1


def test_rejected_list_is_capped_but_counts_are_complete(tmp_path: Path) -> None:
    result = _store(tmp_path).record("loans", [(f"id-{i}", 1) for i in range(250)])
    answer = result.answer()
    assert (
        answer["unknown"] == 250
        and len(answer["rejected"]) == 100
        and answer["rejected_truncated"] is True
    )


def test_record_labels_refuses_a_model_name_that_leaves_the_store(tmp_path: Path) -> None:
    with pytest.raises(MloopError, match="invalid model name"):
        record_labels(
            tmp_path / "feedback", "../escape", pd.DataFrame({"prediction_id": ["a"], "label": [1]})
        )
    assert not (tmp_path / "escape").exists()


def test_same_label_survives_the_parquet_round_trip() -> None:
    import numpy as np

    assert same_label(np.int64(1), 1) and same_label(1, 1.0) and same_label("yes", "yes")
    assert not same_label(np.int64(1), 0) and not same_label("class_0", "class_1")


class _CountingRemote:
    """A stand-in for :class:`serving.log.remote_parts.RemoteLog`: counts the listings of label parts, keeps nothing."""

    def __init__(self) -> None:
        self.listings = 0
        self.uploads: list[str] = []

    def feedback_parts(self, model_name: str) -> list[object]:
        self.listings += 1
        return []

    def upload(self, kind: str, local: Path, relative: str) -> None:
        self.uploads.append(relative)


def test_team_mode_lists_s3_labels_at_the_first_write_and_when_stale_not_per_request(
    tmp_path: Path,
) -> None:
    recent = RecentIds()
    ids = new_prediction_ids(4)
    recent.add("loans", ids)
    remote = _CountingRemote()
    store = FeedbackStore(
        tmp_path / "feedback",
        tmp_path / "predictions",
        recent=recent,
        remote=cast(RemoteLog, remote),  # the two RemoteLog methods the store calls, counted
    )
    for pid in ids[:3]:
        assert store.record("loans", [(pid, 1)]).recorded == 1
    assert remote.listings == 1  # the first write only
    store.remote_refresh_seconds = 0  # the view is stale at once
    assert store.record("loans", [(ids[0], 1)]).duplicates == 1
    assert remote.listings == 1  # nothing new to accept: no listing
    assert store.record("loans", [(ids[3], 0)]).recorded == 1
    assert remote.listings == 2  # a write with a new label and a stale view lists again
    assert len(remote.uploads) == 4  # every label part is shipped all the same

"""The prediction log and feedback in S3 (team mode, issue 13 item 1) against a real SeaweedFS S3.

One infra for the module (:func:`tests.infra_fixture.running_infra`: PostgreSQL + SeaweedFS on loopback,
free ports, a temporary home). Home A logs and labels in team mode; a fresh home B with the same team
settings and no local files reads the same frames from S3. Every test uses its own key prefix.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from pydantic import SecretStr

from mloop.core.processes import free_port
from mloop.core.settings import Settings
from mloop.core.team import ArtifactLayout
from monitoring.sweep import log_fingerprint
from serving.log.feedback import FeedbackStore, read_feedback, record_labels
from serving.log.predictions import PredictionLogger, new_prediction_ids, read_predictions
from serving.log.remote_parts import (
    MANIFEST,
    Kind,
    PartStats,
    RemoteLog,
    RemotePart,
    check_relative,
    newest_parts,
    remote_log,
)
from tests.infra_fixture import InfraEnv, running_infra

AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfraEnv]:
    with (
        running_infra(tmp_path_factory.mktemp("infra")) as found,
        pytest.MonkeyPatch.context() as mp,
    ):
        for key in AWS_KEYS:  # the S3 credentials travel in the environment only
            mp.setenv(key, found.env[key])
        yield found


def _settings(infra: InfraEnv, home: Path, prefix: str) -> Settings:
    bucket = infra.env["MLOOP_ARTIFACTS_URI"].removeprefix("s3://").split("/", 1)[0]
    return Settings(
        home=home,
        database_url=SecretStr(infra.env["MLOOP_DATABASE_URL"]),
        s3_endpoint_url=infra.env["MLOOP_S3_ENDPOINT_URL"],
        artifacts_uri=f"s3://{bucket}/{prefix}",
    )


def _remote(infra: InfraEnv, home: Path, prefix: str) -> RemoteLog:
    found = remote_log(_settings(infra, home, prefix))
    assert found is not None
    return found


def _keys(remote: RemoteLog, kind: Kind) -> list[str]:
    bucket, _, prefix = remote.root(kind).partition("/")
    pages = remote.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(
        obj["Key"][len(prefix) + 1 :] for page in pages for obj in page.get("Contents", [])
    )


def _log(logger: PredictionLogger, model: str, n: int, version: str = "1") -> list[str]:
    ids = new_prediction_ids(n)
    logger.log(
        ids=ids,
        model_name=model,
        model_version=version,
        features={"age": [30.0 + i for i in range(n)], "purpose": ["car"] * n},
        predictions=[i % 2 for i in range(n)],
        values=[0.5 + i / (10 * n) for i in range(n)],
    )
    return ids


def test_single_machine_has_no_remote_log(tmp_path: Path) -> None:
    assert (
        remote_log(
            Settings(home=tmp_path, database_url=None, s3_endpoint_url=None, artifacts_uri=None)
        )
        is None
    )


def test_names_from_outside_never_become_keys() -> None:
    assert check_relative("feedback", "loans/part-1.parquet") == "loans/part-1.parquet"
    for bad in (
        "../x/part-1.parquet",
        "loans/../part-1.parquet",
        "loans/part-1.parquet/x",
        "lo ans/part-1.parquet",
    ):
        with pytest.raises(Exception):  # noqa: B017 - MloopError or ValueError
            check_relative("feedback", bad)
    with pytest.raises(ValueError, match="day folder"):
        check_relative("predictions", "loans/2026-01-01/part-1.parquet")


def test_parts_shipped_and_read_on_another_home(infra: InfraEnv, tmp_path: Path) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    home_a, home_b = tmp_path / "a", tmp_path / "b"
    remote_a = _remote(infra, home_a, prefix)
    preds_a, fb_a = home_a / "predictions", home_a / "feedback"
    logger = PredictionLogger(preds_a, flush_seconds=3600, remote=remote_a)
    loans: list[str] = []
    for n in (5, 7, 3):  # three parts of loans, two of rates
        loans += _log(logger, "loans", n)
        _log(logger, "rates", n - 1, version="2")
        logger.flush()
    assert logger.close() == 0
    store = FeedbackStore(fb_a, preds_a, remote=remote_a)
    assert store.record("loans", [(pid, i % 2) for i, pid in enumerate(loans[:6])]).recorded == 6

    day = datetime.now(UTC).strftime("%Y-%m-%d")
    predictions = _keys(remote_a, "predictions")
    assert len([k for k in predictions if k.startswith(f"loans/date={day}/part-")]) == 3
    assert len([k for k in predictions if k.startswith(f"rates/date={day}/part-")]) == 3
    assert [k.split("/")[0] for k in _keys(remote_a, "feedback")] == ["loans"]
    assert (preds_a / "loans" / MANIFEST).read_text().count("part-") == 3

    remote_b = _remote(infra, home_b, prefix)  # another host: same team settings, no local files
    preds_b, fb_b = home_b / "predictions", home_b / "feedback"
    for model in ("loans", "rates"):
        assert_frame_equal(
            read_predictions(preds_b, model, remote=remote_b), read_predictions(preds_a, model)
        )
    assert len(read_predictions(preds_b, "loans", remote=remote_b)) == 15
    assert_frame_equal(read_feedback(fb_b, "loans", remote=remote_b), read_feedback(fb_a, "loans"))
    assert read_feedback(fb_b, "rates", remote=remote_b).empty
    assert not preds_b.exists() and not fb_b.exists()
    from flows.monitor import read_window  # the monitor chooses S3 by the team settings alone

    window, labels = read_window.fn(_settings(infra, home_b, prefix), "loans", 10, None)
    assert_frame_equal(window, read_predictions(preds_a, "loans", last_n=10))
    assert_frame_equal(labels, read_feedback(fb_a, "loans"))

    local = read_predictions(preds_a, "loans")
    since = local["timestamp"].iloc[7].to_pydatetime()
    windows: list[dict[str, Any]] = [
        {"last_n": 4},
        {"since": since},
        {"since": since, "last_n": 2},
        {"since": datetime(2999, 1, 1)},
    ]
    for kwargs in windows:
        assert_frame_equal(
            read_predictions(preds_b, "loans", remote=remote_b, **kwargs),
            read_predictions(preds_a, "loans", **kwargs),
        )

    # the monitor's pre-check sees a label arrive; host B's labels are checked against A's log in S3
    before = log_fingerprint(preds_b, fb_b, "loans", remote_b)
    assert log_fingerprint(preds_b, fb_b, "loans", remote_b) == before
    outcome = record_labels(
        fb_b,
        "loans",
        pd.DataFrame({"prediction_id": [loans[10], loans[0]], "label": [1, 1]}),
        remote=remote_b,
    )
    assert (outcome.recorded, outcome.duplicates, outcome.conflicts) == (
        1,
        0,
        1,
    )  # loans[0] has label 0 from A
    assert log_fingerprint(preds_b, fb_b, "loans", remote_b) != before
    both = read_feedback(fb_a, "loans", remote=remote_a)
    assert set(both["prediction_id"]) == set(loans[:6]) | {loans[10]}
    assert both.set_index("prediction_id").loc[loans[0], "label"] == 0  # the first label wins


def test_corrupt_object_is_skipped_with_a_warning(
    infra: InfraEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    remote = _remote(infra, tmp_path / "a", prefix)
    logger = PredictionLogger(tmp_path / "a" / "predictions", flush_seconds=3600, remote=remote)
    _log(logger, "loans", 4)
    logger.close()
    expected = read_predictions(tmp_path / "a" / "predictions", "loans")
    bad = "loans/date=2000-01-01/part-garbage.parquet"
    bucket, _, key = remote.path_of("predictions", bad).partition("/")
    remote.client().put_object(Bucket=bucket, Key=key, Body=b"not parquet at all")
    reader = _remote(infra, tmp_path / "b", prefix)
    with caplog.at_level(logging.WARNING, logger="serving.log.remote_parts"):
        got = read_predictions(tmp_path / "b" / "predictions", "loans", remote=reader)
    assert_frame_equal(got, expected)
    assert any(
        "part-garbage.parquet" in r.getMessage() and "unreadable" in r.getMessage()
        for r in caplog.records
    )
    assert "loans/date=2000-01-01/corrupt/part-garbage.parquet" in _keys(
        remote, "predictions"
    )  # kept, out of reach
    assert_frame_equal(
        read_predictions(tmp_path / "b" / "predictions", "loans", remote=reader), expected
    )


def test_an_old_layout_part_in_s3_reads_as_the_local_one(infra: InfraEnv, tmp_path: Path) -> None:
    """A part written before the inputs were kept apart (no layout key) reads from S3 in the current
    layout, beside a new part, exactly as it reads locally."""
    from serving.log.layout import split_log
    from tests.serving.test_log_layout import old_part

    prefix = f"t-{uuid.uuid4().hex[:8]}"
    remote = _remote(infra, tmp_path / "a", prefix)
    preds_a = tmp_path / "a" / "predictions"
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    old_ids = new_prediction_ids(2)
    old = old_part(preds_a / "loans" / f"date={day}", old_ids)
    relative = f"loans/date={day}/{old.name}"
    remote.upload("predictions", old, relative)
    logger = PredictionLogger(preds_a, flush_seconds=3600, remote=remote)
    new_ids = _log(logger, "loans", 3)
    logger.close()
    got = read_predictions(
        tmp_path / "b" / "predictions", "loans", remote=_remote(infra, tmp_path / "b", prefix)
    )
    assert_frame_equal(got, read_predictions(preds_a, "loans"))
    assert got["prediction_id"].tolist() == old_ids + new_ids
    inputs = split_log(got)[1]
    assert inputs["age"].tolist() == [41.0, 42.0, 30.0, 31.0, 32.0]
    assert list(inputs.columns) == ["age", "purpose"]


def test_an_outage_keeps_parts_local_and_they_ship_later(
    infra: InfraEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    up = _remote(infra, tmp_path / "a", prefix)
    down = RemoteLog(
        replace(up.layout, endpoint_url=f"http://127.0.0.1:{free_port()}")
    )  # nothing listens there
    preds, fb = tmp_path / "a" / "predictions", tmp_path / "a" / "feedback"

    logger = PredictionLogger(preds, flush_seconds=3600, remote=down)
    with caplog.at_level(logging.WARNING, logger="serving.log.remote_parts"):
        ids = _log(logger, "loans", 6)
        assert logger.flush() == 6
    assert any("not shipped to S3 yet" in r.getMessage() for r in caplog.records)
    assert len(list(preds.glob("loans/date=*/part-*.parquet"))) == 1  # the part is kept locally
    assert _keys(up, "predictions") == []
    assert logger.shipper is not None
    logger.shipper.remote = up  # the store is back: the next flush ships what was left behind
    assert logger.flush() == 0
    assert len(_keys(up, "predictions")) == 1

    ids += _log(logger, "loans", 2)
    logger.shipper.remote = down  # down again when it closes: shipped at the next start instead
    logger.close()
    assert len(_keys(up, "predictions")) == 1
    store = FeedbackStore(fb, preds, remote=down)
    assert store.record("loans", [(ids[0], 1)]).recorded == 1  # recorded locally all the same
    assert _keys(up, "feedback") == []

    restarted = PredictionLogger(
        preds, flush_seconds=3600, remote=up
    )  # a restart ships what was missed
    restarted.close()
    FeedbackStore(fb, preds, remote=up).record("loans", [(ids[1], 0)])
    assert len(_keys(up, "predictions")) == 2
    assert len(_keys(up, "feedback")) == 2
    reader = _remote(infra, tmp_path / "b", prefix)
    assert_frame_equal(
        read_predictions(tmp_path / "b", "loans", remote=reader), read_predictions(preds, "loans")
    )
    assert_frame_equal(
        read_feedback(tmp_path / "b", "loans", remote=reader), read_feedback(fb, "loans")
    )


# ---------------------------------------------------------------- big windows: the newest parts, in partitions


def _stats(name: str, rows: int, first: int | None, last: int | None) -> PartStats:
    day = datetime(2026, 1, 1, tzinfo=UTC)
    at = lambda m: None if m is None else day.replace(minute=m)  # noqa: E731 - a one-line local helper, read where it is used
    return PartStats(RemotePart(f"b/p/{name}", 1, 0), rows, at(first), at(last))


def test_newest_parts_keep_every_part_that_can_hold_the_newest_rows() -> None:
    a, b, c, d = (
        _stats("a", 10, 0, 10),
        _stats("b", 10, 11, 20),
        _stats("c", 10, 21, 30),
        _stats("d", 10, 25, 28),
    )
    assert newest_parts([a, b, c, d], 5) == [
        c.part,
        d.part,
    ]  # d (another host) overlaps c: it may hold newer rows
    assert newest_parts([a, b, c, d], 20) == [c.part, d.part]
    assert newest_parts([a, b, c, d], 25) == [
        b.part,
        c.part,
        d.part,
    ]  # b reaches past the floor (21 > 20 rows)
    assert newest_parts([a, b, c, d], 100) == [
        a.part,
        b.part,
        c.part,
        d.part,
    ]  # not enough rows: all of them
    assert newest_parts([a, b, c, d], 0) == []
    empty = _stats("e", 0, None, None)
    assert newest_parts([a, empty, c], 5) == [c.part]  # an empty part holds nothing
    blind = _stats("f", 3, None, None)
    assert newest_parts([a, blind, c], 5) == [
        a.part,
        blind.part,
        c.part,
    ]  # no statistics: nothing ruled out


def test_a_dask_scheduler_that_does_not_answer_is_a_clear_error() -> None:
    from mloop.core.errors import MloopError
    from mloop.core.partitions import partition_mapper

    with (
        pytest.raises(MloopError, match="MLOOP_DASK_ADDRESS"),
        partition_mapper(f"tcp://127.0.0.1:{free_port()}"),
    ):
        pass


def test_a_big_window_reads_only_its_newest_parts_in_partitions_on_dask(
    infra: InfraEnv, tmp_path: Path
) -> None:
    """Two serving hosts log overlapping parts; the newest-N window read from footers + only the parts that can
    hold it equals the whole log's tail, serially, on Dask threads and on a real Dask scheduler (two worker
    processes, which make their own S3 file system from their environment)."""
    from distributed import LocalCluster

    from mloop.core.partitions import partition_mapper

    prefix = f"t-{uuid.uuid4().hex[:8]}"
    host_a = PredictionLogger(
        tmp_path / "a", flush_seconds=3600, remote=_remote(infra, tmp_path / "a", prefix)
    )
    host_c = PredictionLogger(
        tmp_path / "c", flush_seconds=3600, remote=_remote(infra, tmp_path / "c", prefix)
    )
    for n in (40, 30, 20):  # older parts, one host after the other
        _log(host_a, "loans", n)
        host_a.flush()
    _log(host_a, "loans", 6)  # then both hosts buffer at once: their newest parts overlap in time
    _log(host_c, "loans", 5)
    _log(host_a, "loans", 4)
    host_a.flush()
    _log(host_c, "loans", 3)
    host_c.flush()
    assert host_a.close() == 0 and host_c.close() == 0
    reader = _remote(infra, tmp_path / "b", prefix)
    every = read_predictions(tmp_path / "b", "loans", remote=reader)
    parts = reader.prediction_parts("loans")
    assert len(every) == 108 and len(parts) == 5
    assert [len(reader.newest(parts, n)) for n in (8, 18, 30, 108)] == [
        2,
        2,
        3,
        5,
    ]  # 18: both overlapping parts

    # entered as its own name: Cluster.__enter__ is unannotated (pyright reads a coroutine)
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,  # pyright: ignore[reportArgumentType]  # why: distributed annotates str, but reads None as no dashboard (LocalCluster checks `is not None`)
    )
    with cluster:
        for address in ("", "local", cluster.scheduler_address):
            with partition_mapper(address) as map_parts:
                for n in (8, 18, 30, 200):
                    got = read_predictions(
                        tmp_path / "b", "loans", last_n=n, remote=reader, map_parts=map_parts
                    )
                    assert_frame_equal(
                        got, every.tail(n).reset_index(drop=True), obj=f"{address!r} last {n}"
                    )


class _RangeStore:
    """Stands in for the S3 client's ``get_object``: one object, suffix ranges (``bytes=-N``) as S3 answers them."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.ranges: list[str] = []

    def get_object(self, Bucket: str, Key: str, Range: str = "") -> dict[str, Any]:
        import io

        self.ranges.append(Range)
        size = int(Range.removeprefix("bytes=-")) if Range else len(self.data)
        return {"Body": io.BytesIO(self.data[-size:])}


def test_a_footer_longer_than_the_first_read_is_fetched_whole() -> None:
    """Statistics come from the footer alone: one ranged GET, a second only when the footer is longer."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from serving.log.remote_parts import FOOTER_READ

    for columns in (2, 3000):  # a small footer, then one past FOOTER_READ
        buffer = io.BytesIO()
        frame = pd.DataFrame({f"c{i}": [1, 2] for i in range(columns)})
        frame["timestamp"] = pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True)
        pq.write_table(pa.Table.from_pandas(frame), buffer)
        data = buffer.getvalue()
        store = _RangeStore(data)
        remote = RemoteLog(ArtifactLayout(bucket="b", prefix="p"))
        remote._client = store
        stats = remote.part_stats(RemotePart("b/p/x.parquet", len(data), 0), "prediction log")
        assert stats is not None and stats.rows == 2
        assert stats.last is not None and stats.last.day == 2
        footer = int.from_bytes(data[-8:-4], "little") + 8
        first = f"bytes=-{min(len(data), FOOTER_READ)}"
        if columns == 2:
            assert footer < FOOTER_READ and store.ranges == [first]
        else:
            assert footer > FOOTER_READ and store.ranges == [first, f"bytes=-{footer}"]

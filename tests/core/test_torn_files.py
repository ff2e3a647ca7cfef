"""Issue 11 item 7: a torn line appended to each JSONL file of MLOOP_HOME and a 10-byte parquet part.

Listing, ingest, retrain claims, the audit log, the notifications and the prediction/feedback
readers (what monitoring reads) still work, and every damaged piece is set aside, never deleted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mloop.core.datasets import index_path, ingest_dataset, list_datasets, list_versions
from mloop.core.generate import generate, write_frame
from mloop.core.jsonl import count_set_aside, torn_path
from mloop.core.settings import Settings
from models.audit import AuditRecord, append_audit, audit_path, read_audit
from monitoring.policy import RetrainLedger, ledger_path
from monitoring.retraining import claim_retrain
from monitoring.webhook import append_capped, notifications_path, read_notifications
from serving.log.feedback import read_feedback, record_feedback
from serving.log.parts import CORRUPT_DIR, count_corrupt
from serving.log.predictions import (
    PredictionLogger,
    find_prediction,
    new_prediction_ids,
    read_predictions,
)
from tests.helpers import make_project

TORN = '{"half": '
MODEL = "loans"


def _tear(path: Path) -> None:
    """Append a torn line (no newline), as a crash in the middle of a write leaves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(TORN)


def _set_aside_lines(path: Path) -> list[str]:
    return [json.loads(line)["line"] for line in torn_path(path).read_text().splitlines()]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(home=tmp_path / "home", project_dir=make_project(tmp_path / "project"))
    s.state.ensure()
    return s


def test_dataset_index_torn_line_listing_and_ingest_still_work(
    settings: Settings, tmp_path: Path
) -> None:
    base = generate("baseline", 300, 1)
    v1 = ingest_dataset(settings, write_frame(base, tmp_path / "v1.csv"), dataset="ds").version
    index = index_path(settings, "ds")
    _tear(index)

    assert [v.md5 for v in list_versions(settings, "ds")] == [v1.md5]
    assert list_datasets(settings) == ["ds"]
    assert _set_aside_lines(index) == [TORN]
    assert index.read_text().endswith("\n") and TORN not in index.read_text()

    _tear(index)  # torn again, and this time the ingest is the first to meet it
    v2 = ingest_dataset(settings, write_frame(base.iloc[::-1], tmp_path / "v2.csv"), dataset="ds")
    assert v2.created
    assert [v.md5 for v in list_versions(settings, "ds")] == [v2.version.md5, v1.md5]
    assert count_set_aside(index) == 2
    assert all(
        json.loads(line) for line in index.read_text().splitlines()
    )  # no line glued onto a fragment


def test_audit_log_torn_line(tmp_path: Path) -> None:
    audit = tmp_path / "audit"
    record = AuditRecord(
        model_name=MODEL, action="promote", from_version=None, to_version="1", reason="r", actor="t"
    )
    path = append_audit(audit, record)
    _tear(path)
    assert [r.to_version for r in read_audit(audit, MODEL)] == ["1"]
    _tear(path)
    append_audit(audit, record.model_copy(update={"from_version": "1", "to_version": "2"}))
    assert [r.to_version for r in read_audit(audit, MODEL)] == ["1", "2"]
    assert _set_aside_lines(audit_path(audit, MODEL)) == [TORN, TORN]


def test_retrain_ledger_torn_line_claims_still_work(settings: Settings) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    claim = lambda at, force=False: claim_retrain(  # noqa: E731 - a one-line local helper, read where it is used
        settings, MODEL, trigger="drift", event_id=None, flow_run_id="run", force=force, now=at
    )
    assert claim(now).allowed
    ledger = ledger_path(settings.state.root)
    _tear(ledger)
    second = claim(now + timedelta(minutes=1))  # inside the cooldown: the first claim still counts
    assert not second.allowed and second.retrains_in_window == 1
    assert claim(now + timedelta(minutes=2), force=True).allowed
    assert len(RetrainLedger(ledger).read()) == 2
    assert _set_aside_lines(ledger) == [TORN]


def test_retrain_ledger_appends_are_fsynced(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mloop.core.jsonl as jsonl

    synced: list[int] = []
    real = jsonl.os.fsync
    monkeypatch.setattr(jsonl.os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    assert claim_retrain(
        settings, MODEL, trigger="drift", event_id=None, flow_run_id="r", force=True
    ).allowed
    assert synced


def test_notifications_torn_line(tmp_path: Path) -> None:
    path = notifications_path(tmp_path)
    append_capped(path, json.dumps({"subject": "one"}) + "\n", 1_000_000)
    _tear(path)
    assert [n["subject"] for n in read_notifications(tmp_path)] == ["one"]
    _tear(path)
    append_capped(path, json.dumps({"subject": "two"}) + "\n", 1_000_000)
    assert [n["subject"] for n in read_notifications(tmp_path)] == ["one", "two"]
    assert _set_aside_lines(path) == [TORN, TORN]


def _ten_bytes(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    bad = folder / "part-00000000T000000000000-1-000000-abcdef.parquet"  # sorts first
    bad.write_bytes(b"PAR1\x00\x00\x00\x00PA")
    return bad


def test_ten_byte_parquet_parts_are_skipped_and_set_aside(tmp_path: Path) -> None:
    predictions, feedback = tmp_path / "predictions", tmp_path / "feedback"
    logger = PredictionLogger(predictions, flush_seconds=60)
    ids = new_prediction_ids(4)
    logger.log(
        ids=ids,
        model_name=MODEL,
        model_version="1",
        features={"age": [30.0] * 4},
        predictions=[1, 0, 1, 0],
        values=[0.9, 0.1, 0.8, 0.2],
    )
    assert logger.close() == 4
    labels = pd.DataFrame({"prediction_id": ids[:2], "label": [1, 0]})
    assert record_feedback(feedback, MODEL, labels, predictions_dir=predictions) == 2

    day_dir = next((predictions / MODEL).glob("date=*"))
    bad_prediction = _ten_bytes(day_dir)
    bad_feedback = _ten_bytes(feedback / MODEL)

    assert read_predictions(predictions, MODEL)["prediction_id"].tolist() == ids
    assert read_feedback(feedback, MODEL)["prediction_id"].tolist() == ids[:2]
    for bad in (bad_prediction, bad_feedback):
        assert not bad.exists()
        moved = bad.parent / CORRUPT_DIR / bad.name
        assert moved.read_bytes() == b"PAR1\x00\x00\x00\x00PA"  # set aside, not deleted
        assert moved.with_name(moved.name + ".reason.txt").read_text()
    assert count_corrupt(predictions / MODEL) == 1 and count_corrupt(feedback / MODEL) == 1

    # the other readers skip a bad part too: lookups by id and the feedback trust rule
    _ten_bytes(day_dir)
    found = find_prediction(predictions, ids[3])
    assert found is not None and found["prediction_id"] == ids[3]
    more = pd.DataFrame({"prediction_id": ids[2:], "label": [1, 1]})
    _ten_bytes(feedback / MODEL)
    assert record_feedback(feedback, MODEL, more, predictions_dir=predictions) == 2
    assert read_feedback(feedback, MODEL)["prediction_id"].tolist() == ids

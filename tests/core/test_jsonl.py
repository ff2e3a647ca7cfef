"""mloop.core.jsonl: torn and garbage lines are skipped, set aside (never lost) and counted; appends
never glue onto a torn fragment; fsync is called when asked."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from pydantic import BaseModel

from mloop.core import jsonl
from mloop.core.jsonl import append_jsonl, count_set_aside, parse_lines, read_jsonl, torn_path


class Row(BaseModel):
    n: int


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_absent_file_reads_empty(tmp_path: Path) -> None:
    got = read_jsonl(tmp_path / "nope.jsonl", what="test")
    assert got.rows == [] and got.set_aside == 0
    assert not torn_path(tmp_path / "nope.jsonl").exists()


def test_parse_lines_is_pure_and_skips_blank_lines() -> None:
    rows, good, bad = parse_lines(b'{"n": 1}\n\n  \n{"n": 2}\n{"n"', json.loads)
    assert rows == [{"n": 1}, {"n": 2}]
    assert good == [b'{"n": 1}', b'{"n": 2}']
    assert [(b.number, b.raw) for b in bad] == [(5, b'{"n"')]


def test_torn_last_line_is_skipped_and_set_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text('{"n": 1}\n{"n": 2}\n{"half": ')
    with caplog.at_level(logging.WARNING, logger="mloop.core.jsonl"):
        got = read_jsonl(path, Row.model_validate_json, what="test file")
    assert [r.n for r in got.rows] == [1, 2]
    assert got.set_aside == 1
    assert _lines(path) == ['{"n": 1}', '{"n": 2}']  # rewritten without the fragment
    aside = [json.loads(line) for line in _lines(torn_path(path))]
    assert len(aside) == 1
    assert aside[0]["line"] == '{"half": '
    assert (
        aside[0]["line_number"] == 3
        and aside[0]["what"] == "test file"
        and aside[0]["set_aside_at"]
    )
    assert "test file" in caplog.text and "set aside" in caplog.text
    assert count_set_aside(path) == 1
    # a second read finds nothing more to set aside
    again = read_jsonl(path, Row.model_validate_json, what="test file")
    assert [r.n for r in again.rows] == [1, 2] and again.set_aside == 0
    assert count_set_aside(path) == 1


def test_garbage_in_the_middle_and_invalid_rows(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b'{"n": 1}\nnot json at all\n{"n": "x"}\n\xff\xfe\n{"n": 4}\n')
    got = read_jsonl(path, Row.model_validate_json, what="test")
    assert [r.n for r in got.rows] == [1, 4]
    assert got.set_aside == 3
    assert _lines(path) == ['{"n": 1}', '{"n": 4}']
    reasons = [json.loads(line)["reason"] for line in _lines(torn_path(path))]
    assert len(reasons) == 3 and any("ValidationError" in r for r in reasons)


def test_rewrite_keeps_the_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text('{"n": 1}\ngarbage\n')
    os.chmod(path, 0o640)
    read_jsonl(path, what="test")
    assert path.stat().st_mode & 0o777 == 0o640


def test_read_still_answers_when_the_repair_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text('{"n": 1}\n{"half": ')

    def refuse(*_a: object) -> None:
        raise OSError("read-only file system")

    monkeypatch.setattr(jsonl, "_set_aside", refuse)
    got = read_jsonl(path, what="test")
    assert got.rows == [{"n": 1}]
    assert path.read_text() == '{"n": 1}\n{"half": '  # untouched: nothing lost


def test_append_after_a_torn_line_starts_on_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text('{"n": 1}\n{"half": ')
    append_jsonl(path, {"n": 2}, what="test", fsync=False)
    assert _lines(path) == ['{"n": 1}', '{"n": 2}']
    assert json.loads(torn_path(path).read_text())["line"] == '{"half": '
    assert [r["n"] for r in read_jsonl(path, what="test").rows] == [1, 2]


def test_append_after_a_whole_line_without_newline_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text('{"n": 1}\n{"n": 2}')  # the write stopped just before the newline
    append_jsonl(path, '{"n": 3}', what="test", fsync=False)
    assert _lines(path) == ['{"n": 1}', '{"n": 2}', '{"n": 3}']
    assert not torn_path(path).exists()


def test_append_to_a_file_that_is_only_a_fragment(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text('{"ha')
    append_jsonl(path, {"n": 1}, what="test", fsync=False)
    assert path.read_text() == '{"n": 1}\n'
    assert count_set_aside(path) == 1


def test_append_creates_the_file_and_folder_with_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "f.jsonl"
    append_jsonl(path, {"n": 1}, what="test", fsync=False, mode=0o600)
    assert path.read_text() == '{"n": 1}\n'
    assert path.stat().st_mode & 0o777 == 0o600


def test_append_refuses_a_multi_line_row(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        append_jsonl(tmp_path / "f.jsonl", '{"n": 1}\n{"n": 2}', what="test", fsync=False)


@pytest.mark.parametrize("fsync", [True, False])
def test_fsync_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool
) -> None:
    path = tmp_path / "f.jsonl"
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(jsonl.os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    append_jsonl(path, {"n": 1}, what="test", fsync=fsync)
    assert bool(synced) is fsync
    assert path.read_text() == '{"n": 1}\n'

"""Reading CSVs in one streamed pass: same frame as a whole-file read, types unified across blocks."""

from __future__ import annotations

from pathlib import Path

import pyarrow.csv as pacsv

from mloop.core.frames import read_frame

ROWS = 300_000  # several of pyarrow's 1 MB blocks


def test_streamed_read_equals_whole_read(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b,when\n" + "".join(f"{i},x{i % 7},2025-01-01 00:00:{i % 60:02d}\n" for i in range(ROWS)))
    got = read_frame(path)
    want = pacsv.read_csv(path).to_pandas()
    assert got.equals(want) and str(got["when"].dtype).startswith("datetime64")


def test_types_that_change_after_the_first_block_are_unified(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n" + "".join(f"{i},\n" for i in range(ROWS)) + "1.5,late text\n")
    df = read_frame(path)
    assert str(df["a"].dtype) == "float64" and df["a"].iloc[-1] == 1.5
    assert df["b"].iloc[-1] == "late text" and df["b"].iloc[:-1].isna().all()

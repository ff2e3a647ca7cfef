"""Reading CSVs in one streamed pass: same frame as a whole-file read, types unified across blocks;
the separator read off the header; repeated names and non-UTF-8 text refused with what to fix."""

from __future__ import annotations

from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from mloop.core.frames import csv_delimiter, read_frame

ROWS = 300_000  # several of pyarrow's 1 MB blocks


def test_streamed_read_equals_whole_read(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "a,b,when\n" + "".join(f"{i},x{i % 7},2025-01-01 00:00:{i % 60:02d}\n" for i in range(ROWS))
    )
    got = read_frame(path)
    want = pacsv.read_csv(path).to_pandas()
    assert got.equals(want) and str(got["when"].dtype).startswith("datetime64")


def test_types_that_change_after_the_first_block_are_unified(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b\n" + "".join(f"{i},\n" for i in range(ROWS)) + "1.5,late text\n")
    df = read_frame(path)
    assert str(df["a"].dtype) == "float64" and df["a"].iloc[-1] == 1.5
    assert df["b"].iloc[-1] == "late text" and df["b"].iloc[:-1].isna().all()


def test_the_separator_is_read_off_the_header() -> None:
    assert csv_delimiter("a,b;c") == ","  # a comma anywhere: a comma-separated file
    assert csv_delimiter("prix;quantité;target") == ";"
    assert csv_delimiter("a\tb\tc") == "\t"
    assert csv_delimiter("a|b") == "|"
    assert csv_delimiter("only_one_column") == ","


def test_a_semicolon_csv_reads_as_its_columns(tmp_path: Path) -> None:
    """What a spreadsheet in a European locale writes."""
    path = tmp_path / "t.csv"
    path.write_text("price;region\n1.5;north\n2.0;south\n")
    df = read_frame(path)
    assert list(df.columns) == ["price", "region"] and df["price"].tolist() == [1.5, 2.0]


def test_a_repeated_column_name_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("x,y,x\n1,2,3\n")
    with pytest.raises(ValueError, match="the header names column\\(s\\) 'x' more than once"):
        read_frame(path)


def test_text_that_is_not_utf8_is_refused_with_its_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes("x,city\n1,Zürich\n2,Genève\n".encode("latin-1"))
    with pytest.raises(ValueError, match="column\\(s\\) 'city' hold bytes that are not UTF-8 text"):
        read_frame(path)

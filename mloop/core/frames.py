"""Reading and writing tabular files, deterministically.

Same DataFrame in, same bytes out: parquet is written with pyarrow without the pandas index or
schema metadata (so nothing but the data decides the bytes, and DVC md5s are stable), CSV with a
fixed line terminator and timestamp format. Reading goes through pyarrow, which is several
times faster than ``pandas.read_csv`` on large files; a CSV is streamed block by block and each
Arrow column is released as it becomes a pandas column, so reading peaks near the size of the
resulting frame instead of the file + the parsed table + the frame (see :func:`read_frame`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

CSV_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SUPPORTED_SUFFIXES = (".csv", ".parquet")


def frame_format(path: Path) -> str:
    """``csv`` or ``parquet`` from the file extension; ValueError for anything else."""
    suffix = path.suffix.lower()
    if suffix == ".pq":
        suffix = ".parquet"
    if suffix not in SUPPORTED_SUFFIXES:
        raise ValueError(f"unsupported file type {path.suffix or '(none)'!r}: use .csv or .parquet")
    return suffix[1:]


def to_arrow(df: pd.DataFrame):  # -> pyarrow.Table
    """Arrow table of ``df`` without the index and without pandas schema metadata."""
    import pyarrow as pa

    table = pa.Table.from_pandas(df, preserve_index=False)
    return table.replace_schema_metadata(None)


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    """Write ``df`` as parquet with deterministic bytes (no index, no metadata, snappy)."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_arrow(df), path, compression="snappy", write_statistics=True)
    return path


def write_frame(df: pd.DataFrame, path: Path | str) -> Path:
    """Write ``df`` to ``path`` as CSV or parquet (chosen by the extension); deterministic bytes."""
    path = Path(path)
    if frame_format(path) == "parquet":
        return write_parquet(df, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, lineterminator="\n", date_format=CSV_TIME_FORMAT)
    return path


def read_frame(
    path: Path | str, *, string_columns: Iterable[str] = (), fmt: str | None = None
) -> pd.DataFrame:
    """Read a CSV or parquet file into pandas.

    ``string_columns`` are read as text even when their values look numeric (categorical columns of
    a contract, so a level like ``"01"`` keeps its meaning). ``fmt`` (csv|parquet) overrides the
    extension (DVC cache objects have none). Raises ValueError/OSError on a file
    that cannot be parsed.
    """
    path = Path(path)
    fmt = fmt or frame_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return to_pandas(checked_table(pq.read_table(path)))
    import pyarrow as pa
    import pyarrow.csv as pacsv

    column_types = {name: pa.string() for name in string_columns}
    convert = pacsv.ConvertOptions(
        column_types=column_types,
        strings_can_be_null=True,
        timestamp_parsers=[pacsv.ISO8601],
    )
    parse = pacsv.ParseOptions(delimiter=csv_delimiter(first_line(path)))
    return to_pandas(checked_table(read_csv_table(path, convert, parse)))


CSV_DELIMITERS = (";", "\t", "|")
"""Separators other than the comma that spreadsheets write (a European locale's Excel writes ``;``)."""


def first_line(path: Path, limit: int = 1 << 16) -> str:
    """The file's first line (its header), at most ``limit`` bytes, decoded leniently."""
    with open(path, "rb") as fh:
        return fh.read(limit).split(b"\n", 1)[0].decode("utf-8", errors="replace")


def csv_delimiter(header: str) -> str:
    """The CSV's separator, read off its header: a comma, unless the header has none and one of
    :data:`CSV_DELIMITERS` splits it (the most frequent). Pure."""
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in CSV_DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def checked_table(table):
    """``table`` when pandas can hold it as a dataset; ValueError (what, and how to fix it) when two
    columns share a name, or a column holds bytes that are not UTF-8 text (Arrow reads those as binary)."""
    import pyarrow as pa

    names = [str(n) for n in table.column_names]
    repeated = sorted(n for n, times in Counter(names).items() if times > 1)
    if repeated:
        raise ValueError(
            f"the header names column(s) {', '.join(map(repr, repeated))} more than once: "
            "give each column its own name"
        )
    binary = [
        n
        for n, t in zip(names, table.schema.types, strict=True)
        if pa.types.is_binary(t) or pa.types.is_large_binary(t)
    ]
    if binary:
        raise ValueError(
            f"column(s) {', '.join(map(repr, binary[:5]))} hold bytes that are not UTF-8 text: "
            "save the file with UTF-8 encoding"
        )
    return table


def read_csv_table(path: Path, convert, parse=None):
    """A CSV as an Arrow table, streamed: only one block of the file is in memory at a time.

    The streaming reader types each column from the first block; when a later block does not fit
    (an integer column with a decimal further down, a column empty at first), the file is read
    again whole by ``pyarrow.csv.read_csv``, which unifies the types of all blocks. A successful
    stream gives the same types as the whole read, so the result never depends on the path taken.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    try:
        with pacsv.open_csv(path, convert_options=convert, parse_options=parse) as reader:
            return reader.read_all()
    except pa.ArrowInvalid:  # types change after the first block, or the file is malformed
        return pacsv.read_csv(path, convert_options=convert, parse_options=parse)


def to_pandas(table) -> pd.DataFrame:
    """The table as pandas, releasing each Arrow column once converted (one column per block:
    no consolidation copy). The table must not be used afterwards."""
    return table.to_pandas(split_blocks=True, self_destruct=True)


def normalize_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Canonical dtypes, so the same values give the same parquet bytes whatever the source format.

    Timestamps become nanosecond precision, pandas categoricals and string dtypes become plain
    object columns; everything else is kept. Columns are converted in place of a shallow copy.
    """
    from pandas.api import types as pdt

    out = df.copy(deep=False)
    for name in out.columns:
        col = out[name]
        if pdt.is_datetime64_any_dtype(col):
            tz = getattr(col.dtype, "tz", None)
            wanted = pd.DatetimeTZDtype("ns", tz) if tz is not None else np.dtype("datetime64[ns]")
            if col.dtype != wanted:
                out[name] = col.astype(wanted)
        elif isinstance(col.dtype, pd.CategoricalDtype) or (
            pdt.is_string_dtype(col) and col.dtype != object
        ):
            out[name] = col.astype(object).where(col.notna(), None)
    return out


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    """md5 hex digest of a file's bytes (equals the md5 DVC records for a single file)."""
    digest = hashlib.md5(
        usedforsecurity=False
    )  # a content id (as DVC uses it), not a security hash
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def column(df: pd.DataFrame, name: Hashable) -> pd.Series:
    """``df[name]``, typed as the Series it is: pandas' own annotations also allow a DataFrame (a
    duplicated column name), which the frames of this project never have (ingest refuses them)."""
    return cast(pd.Series, df[name])


def numeric(series: pd.Series) -> pd.Series:
    """``pd.to_numeric(series, errors="coerce")``, typed as the Series it returns for a Series
    (pandas annotates the union over every input kind: scalar, list, array, Index, Series)."""
    return cast(pd.Series, pd.to_numeric(series, errors="coerce"))

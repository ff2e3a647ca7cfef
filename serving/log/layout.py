"""How a prediction-log part keeps the model's inputs apart from the log's own columns.

A part (layout 2) holds the log's own columns under their plain names (:data:`LOG_COLUMNS`:
``prediction_id``, ``timestamp``, ``model_name``, ``model_version``, ``prediction``, ``probability`` or
``score``) and each input feature as ``input.<feature name>``, so a feature may have any name a
contract accepts (``score``, ``timestamp``, ``label``, ``prediction`` included) and ``pandas.read_parquet``
still shows every column. The parquet schema metadata says so: ``mloop.predlog.layout = 2``.

A part without that key was written before (layout 1: inputs under their own names beside the log's
columns, which could then never share a name). :func:`current_layout` gives such a part the current
layout when it is read (every column that is not one of the log's own is an input), so old logs still
read, and every reader of the log sees one layout. :func:`split_log` gives a frame in that layout as
(the log's own columns, the inputs under their own names).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa

INPUT_PREFIX = "input."
LAYOUT_KEY = b"mloop.predlog.layout"
LAYOUT = b"2"
LOG_COLUMNS = (
    "prediction_id",
    "timestamp",
    "model_name",
    "model_version",
    "prediction",
    "probability",
    "score",
)
"""The log's own columns: the only plain names a part holds (layout 1 put the inputs beside them)."""


def input_column(name: str) -> str:
    """The part column that holds input feature ``name``."""
    return INPUT_PREFIX + name


def is_input(column: str) -> bool:
    return column.startswith(INPUT_PREFIX)


def input_name(column: str) -> str:
    """The feature name of an input column (``input.score`` -> ``score``)."""
    return column[len(INPUT_PREFIX) :] if is_input(column) else column


def marked(table: pa.Table) -> pa.Table:
    """``table`` with the layout key in its schema metadata (what the writer stores)."""
    return table.replace_schema_metadata({**(table.schema.metadata or {}), LAYOUT_KEY: LAYOUT})


def current_layout(table: pa.Table) -> pa.Table:
    """A part's table in the current layout: as it is when marked, else (a layout-1 part) with every
    column that is not one of :data:`LOG_COLUMNS` renamed to its input column. Pure."""
    if LAYOUT_KEY in (table.schema.metadata or {}):
        return table
    names = [c if c in LOG_COLUMNS else input_column(c) for c in table.column_names]
    return marked(table.rename_columns(names))


def input_frame(features: pd.DataFrame) -> pd.DataFrame:
    """Model inputs under their own names as input columns (``score`` -> ``input.score``). Pure."""
    return features.rename(columns={c: input_column(str(c)) for c in features.columns})


def split_log(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the log's own columns, the inputs under their own names) of a frame in the current layout,
    both with ``frame``'s index. Pure."""
    inputs = [str(c) for c in frame.columns if is_input(str(c))]
    return frame.drop(columns=inputs), frame.loc[:, inputs].set_axis(
        [input_name(c) for c in inputs], axis=1
    )

"""The data contract of a dataset: what every version must look like.

Written as YAML under ``data/<name>/contract.yaml`` by the first ingest (inferred), meant to be
reviewed and committed; later ingests are validated against it. The request schema of the
prediction service and the pipeline factory are generated from it too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ColumnKind = Literal["numeric", "integer", "categorical", "boolean", "datetime"]
Task = Literal["classification", "regression"]


class ColumnSpec(BaseModel):
    """One column's rules."""

    name: str
    kind: ColumnKind
    nullable: bool = Field(description="Whether nulls were seen at onboarding.")
    max_null_share: float = Field(default=0.0, ge=0, le=1, description="Largest accepted share of nulls.")
    categories: list[str] | None = Field(default=None, description="Allowed levels (categorical columns).")
    max_unknown_share: float = Field(
        default=0.0, ge=0, le=1, description="Largest accepted share of rows with a level not in categories."
    )
    min: float | None = Field(default=None, description="Lowest value seen at onboarding (numeric).")
    max: float | None = Field(default=None, description="Highest value seen at onboarding (numeric).")
    range_tolerance: float = Field(
        default=0.0, ge=0, description="Values may exceed [min, max] by this share of the range."
    )
    max_out_of_range_share: float = Field(
        default=0.0, ge=0, le=1, description="Largest accepted share of rows outside the widened range."
    )


class DatasetContract(BaseModel):
    """A dataset's contract: columns, target, task, and dataset-level tolerances."""

    name: str
    task: Task
    target: str
    time_column: str | None = None
    columns: list[ColumnSpec]
    max_duplicate_share: float = Field(default=0.01, ge=0, le=1, description="Largest accepted share of duplicate rows.")
    min_rows: int = Field(default=1, ge=1)

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def feature_columns(self) -> list[ColumnSpec]:
        """Model inputs: every column but the target and the time column."""
        return [c for c in self.columns if c.name not in {self.target, self.time_column}]

    @property
    def numeric_features(self) -> list[str]:
        return [c.name for c in self.feature_columns if c.kind in ("numeric", "integer")]

    @property
    def categorical_features(self) -> list[str]:
        return [c.name for c in self.feature_columns if c.kind in ("categorical", "boolean")]

"""The contract types and the contract file: what every version of a dataset must look like.

Written as YAML under ``data/<name>/contract.yaml`` by the first ingest (inferred), meant to be
reviewed and committed; later ingests are validated against it.

Each column has a ``role``: ``feature`` (a model input), ``target``, ``time`` (the event-time
column), ``id`` (unique per row: an identifier, not a model input) or ``ignored`` (no use as a
model input: constant, all null, or a datetime other than the time column); ``note`` says why a
column is not a feature. The validation rules apply to every column whatever its role; only
``feature`` columns reach the model (flip a role in the YAML to change that).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from mloop.core.errors import NotFoundError, RejectedError

ColumnKind = Literal["numeric", "integer", "categorical", "boolean", "datetime"]
ColumnRole = Literal["feature", "id", "ignored", "target", "time"]
Task = Literal["classification", "regression"]

CONTRACT_FILE = "contract.yaml"


class ColumnSpec(BaseModel):
    """One column's rules."""

    name: str
    kind: ColumnKind
    role: ColumnRole = Field(
        default="feature", description="feature (model input), target, time, id or ignored."
    )
    note: str | None = Field(
        default=None, description="Why the column is not a feature (inferred; reviewable)."
    )
    nullable: bool = Field(description="Whether nulls were seen at onboarding.")
    max_null_share: float = Field(
        default=0.0, ge=0, le=1, description="Largest accepted share of nulls."
    )
    categories: list[str] | None = Field(
        default=None, description="Allowed levels (categorical columns)."
    )
    max_unknown_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Largest accepted share of rows with a level not in categories.",
    )
    min: float | None = Field(
        default=None, description="Lowest value seen at onboarding (numeric)."
    )
    max: float | None = Field(
        default=None, description="Highest value seen at onboarding (numeric)."
    )
    range_tolerance: float = Field(
        default=0.0, ge=0, description="Values may exceed [min, max] by this share of the range."
    )
    max_out_of_range_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Largest accepted share of rows outside the widened range.",
    )

    def bounds(self) -> tuple[float, float]:
        """``[min, max]`` widened by ``range_tolerance`` x the range (numeric columns with a range)."""
        if self.min is None or self.max is None:
            raise ValueError(f"column {self.name!r} has no range")
        pad = self.range_tolerance * (self.max - self.min)
        return self.min - pad, self.max + pad


class DatasetContract(BaseModel):
    """A dataset's contract: columns, target, task, and dataset-level tolerances."""

    name: str
    task: Task
    target: str
    time_column: str | None = None
    columns: list[ColumnSpec]
    max_duplicate_share: float = Field(
        default=0.01, ge=0, le=1, description="Largest accepted share of duplicate rows."
    )
    min_rows: int = Field(default=1, ge=1)
    gate_metric: str | None = Field(
        default=None,
        description="Gate metric that fits this target, chosen at inference (pr_auc for a rare positive class); "
        "MLOOP_GATE_METRIC or the train flow's gate parameters override it.",
    )

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    @property
    def feature_columns(self) -> list[ColumnSpec]:
        """Model inputs: the columns whose role is ``feature`` (never the target or the time column)."""
        return [
            c
            for c in self.columns
            if c.role == "feature" and c.name not in {self.target, self.time_column}
        ]

    @property
    def numeric_features(self) -> list[str]:
        return [c.name for c in self.feature_columns if c.kind in ("numeric", "integer")]

    @property
    def categorical_features(self) -> list[str]:
        return [c.name for c in self.feature_columns if c.kind in ("categorical", "boolean")]


# ---- the YAML file ---------------------------------------------------------------------------


def contract_path(project_dir: Path, name: str) -> Path:
    return Path(project_dir) / "data" / name / CONTRACT_FILE


_YAML_HEADER = """\
# Data contract of dataset {name!r}, inferred by `mloop ingest` from its first version.
# Review it and commit it: every later version of {name!r} is checked against it.
# Per column: kind (numeric|integer|categorical|boolean|datetime), role (feature|target|time|id|
# ignored: only features are model inputs; note says why a column is not one), max_null_share,
# allowed categories + max_unknown_share, [min, max] widened by range_tolerance x (max - min) +
# max_out_of_range_share. Loosen or tighten the tolerances or flip a role here; no code change
# is needed. Every rule applies to every column, whatever its role. gate_metric: the metric the
# promotion gate compares for this target (pr_auc when the positive class is rare; MLOOP_GATE_METRIC wins).
"""


def contract_to_yaml(contract: DatasetContract) -> str:
    """The contract as commented YAML, without the rules that do not apply to a column's kind."""
    import yaml

    data = contract.model_dump(mode="json")
    for col in data["columns"]:
        if col["note"] is None:
            col.pop("note")
        if col["categories"] is None:
            col.pop("categories")
            col.pop("max_unknown_share")
        if col["min"] is None and col["max"] is None:
            for key in ("min", "max", "range_tolerance", "max_out_of_range_share"):
                col.pop(key)
    return _YAML_HEADER.format(name=contract.name) + yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True
    )


def save_contract(contract: DatasetContract, project_dir: Path) -> Path:
    """Write ``data/<name>/contract.yaml`` under ``project_dir``; returns its path."""
    path = contract_path(project_dir, contract.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(contract_to_yaml(contract))
    tmp.replace(path)
    return path


def load_contract(project_dir: Path, name: str) -> DatasetContract:
    """Read ``data/<name>/contract.yaml``; NotFoundError if the dataset was never onboarded."""
    import yaml

    path = contract_path(project_dir, name)
    if not path.exists():
        raise NotFoundError(
            f"dataset {name!r} has no contract",
            where=str(path),
            fix=f"onboard it first: mloop ingest FILE --dataset {name}",
        )
    try:
        contract = DatasetContract.model_validate(yaml.safe_load(path.read_text()))
    except Exception as exc:  # yaml or pydantic error: say which file
        raise RejectedError(
            f"contract file is invalid: {exc}",
            where=str(path),
            fix="fix the YAML or delete it to re-infer",
        ) from exc
    return contract

"""The result of a contract check: rule ids, one entry per failed rule, and the report."""

from __future__ import annotations

from pydantic import BaseModel, Field

# Rule ids: each failure in a ValidationReport names one of these.
RULE_EMPTY = "empty_file"
RULE_UNREADABLE = "unreadable_file"
RULE_MISSING_COLUMN = "missing_column"
RULE_UNEXPECTED_COLUMN = "unexpected_column"
RULE_TARGET_MISSING = "target_missing"
RULE_TARGET_NULL = "target_null"
RULE_SINGLE_CLASS = "single_class_target"
RULE_DTYPE = "dtype"
RULE_NULL_SHARE = "null_share"
RULE_OUT_OF_RANGE = "out_of_range_share"
RULE_NON_FINITE = "non_finite"
RULE_NO_FEATURES = "no_features"
RULE_UNKNOWN_CATEGORY = "unknown_category_share"
RULE_DUPLICATES = "duplicate_share"

RULE_DESCRIPTIONS: dict[str, str] = {
    RULE_EMPTY: "the file has no data rows",
    RULE_UNREADABLE: "the file cannot be parsed as CSV/parquet",
    RULE_MISSING_COLUMN: "a contract column is absent",
    RULE_UNEXPECTED_COLUMN: "a column not in the contract is present",
    RULE_TARGET_MISSING: "the target column is absent",
    RULE_TARGET_NULL: "the target has nulls",
    RULE_SINGLE_CLASS: "a classification target has fewer than two classes",
    RULE_DTYPE: "a column's values are not of the contract's kind",
    RULE_NULL_SHARE: "null share above the column's max_null_share",
    RULE_NO_FEATURES: "a new dataset has no column a model could learn from (only the target, time and id columns)",
    RULE_NON_FINITE: "a numeric column holds infinity (no model learns from it; an unknown value is a null)",
    RULE_OUT_OF_RANGE: "share of values outside [min, max] widened by range_tolerance above max_out_of_range_share",
    RULE_UNKNOWN_CATEGORY: "share of levels not in categories above max_unknown_share",
    RULE_DUPLICATES: "share of duplicate rows above max_duplicate_share",
}


class RuleFailure(BaseModel):
    """One failed contract rule: which rule, which column, how many rows, a few example values."""

    rule: str = Field(description="Rule id, e.g. null_share (see RULE_DESCRIPTIONS).")
    column: str | None = Field(
        default=None, description="The column the rule is about (None: whole dataset)."
    )
    rows: int = Field(description="How many rows break the rule.")
    share: float | None = Field(default=None, description="rows / total rows.")
    limit: float | None = Field(
        default=None, description="The contract's tolerance for this rule, if any."
    )
    examples: list[str] = Field(
        default_factory=list, description="A few offending values (or row numbers)."
    )
    message: str


class ValidationReport(BaseModel):
    """The result of checking a DataFrame against a contract (all failures, not only the first)."""

    dataset: str
    rows: int
    columns: int
    failures: list[RuleFailure] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def rules(self) -> list[str]:
        return [f.rule for f in self.failures]

    def text(self) -> str:
        """Readable multi-line report (one line per failure)."""
        if self.ok:
            return f"dataset {self.dataset}: {self.rows} rows pass the contract"
        lines = [
            f"dataset {self.dataset}: {len(self.failures)} contract rule(s) failed on {self.rows} rows"
        ]
        for f in self.failures:
            example = f" e.g. {', '.join(f.examples)}" if f.examples else ""
            lines.append(f"  - {f.rule}: {f.message}{example}")
        return "\n".join(lines)

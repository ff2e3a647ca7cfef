"""The data contract of a dataset: what every version must look like, and the check against it.

- :mod:`.model`: the contract types and its YAML file (``data/<name>/contract.yaml``);
- :mod:`.inference`: the contract inferred from a dataset's first version;
- :mod:`.report`: rule ids and the validation report;
- :mod:`.validation`: the pandera schema built from a contract and :func:`validate_frame`.

The request schema of the prediction service and the pipeline factory are generated from the
contract too. Every public name is re-exported here: ``from mloop.core.contract import X``.
"""

from mloop.core.contract.inference import (
    DUPLICATE_SHARE,
    MAX_CATEGORIES,
    MIN_ID_ROWS,
    NULL_SHARE_SLACK,
    OUT_OF_RANGE_SHARE,
    RANGE_TOLERANCE,
    UNKNOWN_CATEGORY_SHARE,
    infer_contract,
    infer_task,
)
from mloop.core.contract.model import (
    CONTRACT_FILE,
    ColumnKind,
    ColumnRole,
    ColumnSpec,
    DatasetContract,
    Task,
    contract_path,
    contract_to_yaml,
    load_contract,
    save_contract,
)
from mloop.core.contract.report import (
    RULE_DESCRIPTIONS,
    RULE_DTYPE,
    RULE_DUPLICATES,
    RULE_EMPTY,
    RULE_MISSING_COLUMN,
    RULE_NO_FEATURES,
    RULE_NON_FINITE,
    RULE_NULL_SHARE,
    RULE_OUT_OF_RANGE,
    RULE_SINGLE_CLASS,
    RULE_TARGET_MISSING,
    RULE_TARGET_NULL,
    RULE_UNEXPECTED_COLUMN,
    RULE_UNKNOWN_CATEGORY,
    RULE_UNREADABLE,
    RuleFailure,
    ValidationReport,
)
from mloop.core.contract.validation import build_schema, duplicated_rows, validate_frame

__all__ = [
    "CONTRACT_FILE",
    "DUPLICATE_SHARE",
    "MAX_CATEGORIES",
    "MIN_ID_ROWS",
    "NULL_SHARE_SLACK",
    "OUT_OF_RANGE_SHARE",
    "RANGE_TOLERANCE",
    "RULE_DESCRIPTIONS",
    "RULE_DTYPE",
    "RULE_DUPLICATES",
    "RULE_EMPTY",
    "RULE_MISSING_COLUMN",
    "RULE_NO_FEATURES",
    "RULE_NON_FINITE",
    "RULE_NULL_SHARE",
    "RULE_OUT_OF_RANGE",
    "RULE_SINGLE_CLASS",
    "RULE_TARGET_MISSING",
    "RULE_TARGET_NULL",
    "RULE_UNEXPECTED_COLUMN",
    "RULE_UNKNOWN_CATEGORY",
    "RULE_UNREADABLE",
    "UNKNOWN_CATEGORY_SHARE",
    "ColumnKind",
    "ColumnRole",
    "ColumnSpec",
    "DatasetContract",
    "RuleFailure",
    "Task",
    "ValidationReport",
    "build_schema",
    "contract_path",
    "contract_to_yaml",
    "duplicated_rows",
    "infer_contract",
    "infer_task",
    "load_contract",
    "save_contract",
    "validate_frame",
]

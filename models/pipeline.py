"""Pipeline factory: a scikit-learn Pipeline built from a dataset contract and a ModelSpec.

Pure: no I/O. The same :func:`prepare_features` runs before fit, evaluation and serving, so
every consumer feeds the pipeline the same dtypes (numeric columns as float64, categorical and
boolean columns as strings with missing values as NaN).

Which columns are inputs is the contract's decision (``role: feature``; see
:mod:`mloop.core.contract.inference`): identifiers, constant and all-null columns, and datetimes
other than the time column are not. By kind:

- ``numeric``/``integer``: median imputation, standard scaling;
- ``boolean`` (nullable too): one-hot of ``"True"``/``"False"``/missing, like a category (serving
  sends booleans as strings too);
- ``categorical`` with known levels (at most ``MAX_CATEGORIES`` at onboarding): one-hot, an unseen
  level encodes as all zeros;
- ``categorical`` without a level list (more levels than ``MAX_CATEGORIES`` at onboarding, e.g.
  10,000): target encoding (sklearn ``TargetEncoder``, cross-fitted), one column per feature
  (one per class for multiclass) whatever the number of levels; an unseen level encodes as the
  target mean. skl2onnx converts it for binary and regression targets (multiclass: the sklearn
  fallback serves). A one-hot bounded with ``max_categories`` would be the other bound, but
  skl2onnx 1.20 cannot convert its "infrequent" column.
- ``datetime``: never an input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mloop.core.contract import DatasetContract
from mloop.core.errors import MloopError
from models.spec import ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from sklearn.pipeline import Pipeline

# Types skops must trust to load the pipelines this factory builds (tree models and the target
# encoder's folds need these; everything else in them is on skops' default allowlist). Saving
# checks that a fitted pipeline needs nothing beyond this list, so loading never trusts anything
# unexpected.
TRUSTED_TYPES: list[str] = [
    "numpy.dtype",
    "sklearn.model_selection._split.KFold",  # the seeded folds of TargetEncoder's cross-fitting
    "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
]

MISSING_CATEGORY = "__missing__"


def feature_names(contract: DatasetContract) -> list[str]:
    """The model's input columns, in order: numeric features, then categorical ones."""
    return contract.numeric_features + contract.categorical_features


def prepare_features(df: pd.DataFrame, contract: DatasetContract) -> pd.DataFrame:
    """The model input frame: only feature columns, numeric as float64, categorical as str (NaN kept).

    Booleans and numbers used as categories become strings, so a JSON ``true`` at serving time and a
    parquet bool at training time reach the encoder as the same level.
    """
    import numpy as np
    import pandas as pd

    from mloop.core.frames import column, numeric

    missing = [c for c in feature_names(contract) if c not in df.columns]
    if missing:
        raise MloopError(
            f"input lacks feature columns {missing}",
            where=f"dataset {contract.name}",
            fix="send every feature column listed in the data contract",
        )
    columns: dict[str, pd.Series] = {}  # one frame built at the end: no per-column inserts
    for name in contract.numeric_features:
        columns[name] = numeric(column(df, name)).astype("float64")
    for name in contract.categorical_features:
        col = column(df, name)
        columns[name] = col.astype(str).astype(object).where(col.notna(), np.nan)
    return pd.DataFrame(columns, index=df.index)


def bounded_features(contract: DatasetContract) -> list[str]:
    """Text features without a level list (more than MAX_CATEGORIES levels): target-encoded."""
    return [
        c.name for c in contract.feature_columns if c.kind == "categorical" and c.categories is None
    ]


def _estimator(contract: DatasetContract, spec: ModelSpec, seed: int) -> Any:
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LogisticRegression, Ridge

    params = dict(spec.params)
    classification = contract.task == "classification"
    if spec.estimator in ("logistic_regression", "linear"):
        if classification:
            return LogisticRegression(**{"max_iter": 1000, **params})
        return Ridge(**params)
    if spec.estimator == "hist_gradient_boosting":
        cls = HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor
        return cls(**{"random_state": seed, **params})
    if spec.estimator == "random_forest":
        cls = RandomForestClassifier if classification else RandomForestRegressor
        return cls(**{"n_estimators": 100, "n_jobs": 1, "random_state": seed, **params})
    raise MloopError(f"unknown estimator {spec.estimator!r}")  # pragma: no cover (Literal-checked)


def build_pipeline(contract: DatasetContract, spec: ModelSpec, seed: int = 42) -> Pipeline:
    """Unfitted Pipeline: ColumnTransformer (impute+scale numeric; impute+one-hot categorical; impute+
    target-encode high-cardinality text) + estimator."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler, TargetEncoder

    if not feature_names(contract):
        raise MloopError(
            "the contract has no feature columns",
            where=f"dataset {contract.name}",
            fix="check the contract's columns",
        )
    transformers = []
    if contract.numeric_features:
        numeric = Pipeline(
            [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
        )
        transformers.append(("numeric", numeric, contract.numeric_features))
    bounded = bounded_features(contract)
    listed = [name for name in contract.categorical_features if name not in bounded]
    if listed:
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
            ]
        )
        transformers.append(("categorical", categorical, listed))
    if bounded:
        folds = (
            StratifiedKFold if contract.task == "classification" else KFold
        )  # cross-fitting, seeded
        encoder = TargetEncoder(
            cv=folds(n_splits=5, shuffle=True, random_state=seed)  # pyright: ignore[reportArgumentType]  # why: sklearn is untyped; pyright infers cv: int from its default 5, a splitter is valid
        )
        encoded = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
                ("encode", encoder),
            ]
        )
        transformers.append(("high_cardinality", encoded, bounded))
    pre = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    return Pipeline([("preprocess", pre), ("model", _estimator(contract, spec, seed))])


def build_baseline(contract: DatasetContract) -> Any:
    """The dummy baseline a first model must beat (class prior / training mean)."""
    from sklearn.dummy import DummyClassifier, DummyRegressor

    return (
        DummyClassifier(strategy="prior") if contract.task == "classification" else DummyRegressor()
    )

"""Helpers of the serving tests: a small loan-like dataset, its contract, fitted pipelines, a
packaged store and a running service.

Trained in the tests themselves (2,000 rows, < 1 s), so the serving tests do not depend on the
data and models helpers' code except where lineage needs the real registry.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import httpx
import numpy as np
import pandas as pd
from pydantic import SecretStr

from mloop.core.contract import ColumnSpec, DatasetContract
from mloop.core.processes import ServiceProcess, free_port
from mloop.core.settings import Settings

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from serving.bundle.package import PackagedModel

NUMERIC = ["income", "loan_amount", "age", "debt_ratio"]
CATEGORICAL = ["purpose", "region"]
INTEGER = ["n_accounts"]


def make_frame(rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    """A synthetic loan-default frame with missing values in one numeric and one categorical column."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10.5, 0.5, rows)
    loan = rng.lognormal(9.5, 0.7, rows)
    age = rng.integers(18, 80, rows).astype(float)
    debt = rng.beta(2, 5, rows)
    n_accounts = rng.integers(0, 12, rows)
    purpose = rng.choice(["car", "home", "education", "business"], rows)
    region = rng.choice(["north", "south", "east", "west"], rows).astype(object)
    logit = (
        -2.2 + 3 * debt + 0.8 * (loan / income) - 0.01 * (age - 40) + 0.4 * (purpose == "business")
    )
    target = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    df = pd.DataFrame(
        {
            "income": income,
            "loan_amount": loan,
            "age": age,
            "debt_ratio": debt,
            "n_accounts": n_accounts,
            "purpose": purpose,
            "region": region,
            "target": target,
        }
    )
    df.loc[rng.random(rows) < 0.05, "income"] = np.nan
    df.loc[rng.random(rows) < 0.05, "region"] = None
    return df


def make_contract(name: str = "loans") -> DatasetContract:
    cols = [
        ColumnSpec(name="income", kind="numeric", nullable=True, max_null_share=0.2),
        ColumnSpec(name="loan_amount", kind="numeric", nullable=False),
        ColumnSpec(name="age", kind="numeric", nullable=False),
        ColumnSpec(name="debt_ratio", kind="numeric", nullable=False),
        ColumnSpec(name="n_accounts", kind="integer", nullable=False),
        ColumnSpec(
            name="purpose",
            kind="categorical",
            nullable=False,
            categories=["business", "car", "education", "home"],
        ),
        ColumnSpec(
            name="region",
            kind="categorical",
            nullable=True,
            categories=["east", "north", "south", "west"],
        ),
        ColumnSpec(name="target", kind="integer", nullable=False),
    ]
    return DatasetContract(name=name, task="classification", target="target", columns=cols)


def make_pipeline(kind: str = "logreg", seed: int = 0) -> Pipeline:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer(
        [
            (
                "num",
                Pipeline([("imp", SimpleImputer(strategy="median")), ("sc", StandardScaler())]),
                NUMERIC + INTEGER,
            ),
            (
                "cat",
                Pipeline(
                    [
                        ("imp", SimpleImputer(strategy="constant", fill_value="__missing__")),
                        ("oh", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                CATEGORICAL,
            ),
        ]
    )
    clf = {
        "logreg": lambda: LogisticRegression(max_iter=500, C=1.0),
        "rf": lambda: RandomForestClassifier(
            n_estimators=30, max_depth=6, random_state=seed, n_jobs=1
        ),
        "hgb": lambda: HistGradientBoostingClassifier(max_iter=30, random_state=seed),
    }[kind]()
    return Pipeline([("pre", pre), ("clf", clf)])


def fit(
    kind: str = "logreg", seed: int = 0, C: float = 1.0
) -> tuple[Pipeline, pd.DataFrame, pd.DataFrame]:
    """(fitted pipeline, train frame, holdout frame)."""
    df = make_frame(seed=seed)
    train, hold = df.iloc[:1600], df.iloc[1600:]
    pipe = make_pipeline(kind, seed)
    if kind == "logreg":
        pipe.set_params(clf__C=C)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # OpenMP threads only spin on a busy 2-core box
        pipe.fit(training_frame(train), train["target"])
    return pipe, train, hold


def training_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The model input frame, with the models helper's convention (numeric float64, strings, NaN)."""
    from serving.bundle.onnx_model import columns_from_frame, input_kinds, sklearn_frame

    kinds = input_kinds(make_contract())
    return sklearn_frame(columns_from_frame(df, list(kinds)), kinds)


# ----------------------------------------------------------------------------- store + service


TOKEN = "test-token-123"
AUTH = {"authorization": f"Bearer {TOKEN}"}
"""The bearer token header every /predict, /feedback and /admin/rollout call of the tests sends."""


@dataclass
class Packaged:
    settings: Settings
    v1: PackagedModel  # logistic regression (Bento built)
    v2: PackagedModel  # random forest
    broken: PackagedModel  # stored expected outputs tampered with
    holdout: pd.DataFrame


def tamper_expected(settings: Settings, tag: str) -> None:
    """Make a stored model fail its smoke test (expected outputs no longer match)."""
    from serving.bundle.local_store import stored_model_dir

    meta_path = stored_model_dir(settings.state.bentoml_home, tag) / "mloop.json"
    meta = json.loads(meta_path.read_text())
    meta["expected"]["probabilities"] = [
        min(1.0, p + 0.3) for p in meta["expected"]["probabilities"]
    ]
    meta_path.write_text(json.dumps(meta))


def make_packaged(root: Path) -> Packaged:
    """Three versions of model ``loans`` in a fresh BentoML store (v1 with its Bento)."""
    from serving.bundle.package import package_pipeline

    settings = Settings(home=root / "home", project_dir=root, api_token=SecretStr(TOKEN))
    settings.state.ensure()
    contract = make_contract()
    lineage = {"run_id": "run-1", "dataset_name": "loans", "dataset_md5": "0" * 32}
    pipe1, _, hold = fit("logreg", seed=0)
    v1 = package_pipeline(
        settings,
        name="loans",
        version="1",
        pipeline=pipe1,
        contract=contract,
        holdout=hold,
        lineage=lineage,
    )
    pipe2, _, _ = fit("rf", seed=1)
    v2 = package_pipeline(
        settings,
        name="loans",
        version="2",
        pipeline=pipe2,
        contract=contract,
        holdout=hold,
        lineage=lineage,
        build=False,
    )
    pipe3, _, _ = fit("logreg", seed=2, C=0.01)
    v3 = package_pipeline(
        settings,
        name="loans",
        version="3",
        pipeline=pipe3,
        contract=contract,
        holdout=hold,
        lineage=lineage,
        build=False,
    )
    tamper_expected(settings, v3.model_tag)
    return Packaged(settings=settings, v1=v1, v2=v2, broken=v3, holdout=hold)


def start(packaged: Packaged, tag: str | Sequence[str] = "loans:v1", **env: str) -> ServiceProcess:
    from serving.control.process_spec import start_service

    return start_service(
        packaged.settings,
        tag,
        port=free_port(),
        name=f"serve-{free_port()}",
        **env,  # pyright: ignore[reportArgumentType]  # why: env holds environment variable names (MLOOP_...), never start_service's own keywords
    )


def records(holdout: pd.DataFrame, n: int, start: int = 0) -> list[dict]:
    """``n`` JSON-ready request records from the holdout (NaN -> null)."""
    from serving.bundle.onnx_model import columns_from_frame, input_kinds

    names = list(input_kinds(make_contract()))
    rows = holdout.iloc[start : start + n]
    cols = columns_from_frame(rows, names)
    out = []
    for i in range(len(rows)):
        rec = {k: cols[k][i] for k in names}
        rec["n_accounts"] = int(rec["n_accounts"])
        out.append(rec)
    return out


# ----------------------------------------------------------------------------- columns that need quoting

ODD_NUMERIC = ["petal length (cm)", "a b", "naïve", "x/y"]
ODD_INTEGER = ["a_b", "x.y"]
ODD_CATEGORICAL = ["1st", "class"]
ODD_TARGET = "is it? (y/n)"


def make_odd_frame(rows: int = 600, seed: int = 3) -> pd.DataFrame:
    """A table whose column names need quoting everywhere: spaces, parentheses, unicode, a slash,
    a dot, a leading digit, a Python keyword, and ``a b`` next to ``a_b`` (equal once rewritten)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({name: rng.normal(size=rows) for name in ODD_NUMERIC})
    for name in ODD_INTEGER:
        df[name] = rng.integers(0, 20, rows)
    df["1st"] = rng.choice(["gold", "silver", "bronze"], rows)
    df["class"] = rng.choice(["first", "second"], rows).astype(object)
    logit = df["a b"] - 0.5 * df["x/y"] + 0.1 * df["a_b"] - 1 + 0.8 * (df["1st"] == "gold")
    df[ODD_TARGET] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    df.loc[rng.random(rows) < 0.05, "a b"] = np.nan
    df.loc[rng.random(rows) < 0.05, "class"] = None
    return df


def make_odd_contract(name: str = "odd-columns") -> DatasetContract:
    df = make_odd_frame()
    cols = [
        ColumnSpec(
            name=c,
            kind="numeric",
            nullable=c == "a b",
            max_null_share=0.2,
            min=float(df[c].min()),
            max=float(df[c].max()),
        )
        for c in ODD_NUMERIC
    ]
    cols += [ColumnSpec(name=c, kind="integer", nullable=False, min=0, max=19) for c in ODD_INTEGER]
    cols += [
        ColumnSpec(
            name="1st", kind="categorical", nullable=False, categories=["bronze", "gold", "silver"]
        ),
        ColumnSpec(name="class", kind="categorical", nullable=True, categories=["first", "second"]),
        ColumnSpec(name=ODD_TARGET, kind="integer", nullable=False),
    ]
    return DatasetContract(name=name, task="classification", target=ODD_TARGET, columns=cols)


def fit_odd() -> tuple[Pipeline, pd.DataFrame]:
    """(pipeline fitted on the odd table under the users' column names, holdout frame)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from threadpoolctl import threadpool_limits

    from serving.bundle.onnx_model import columns_from_frame, input_kinds, sklearn_frame

    df = make_odd_frame()
    train, hold = df.iloc[:480], df.iloc[480:]
    kinds = input_kinds(make_odd_contract())
    pre = ColumnTransformer(
        [
            (
                "num",
                Pipeline([("imp", SimpleImputer(strategy="median")), ("sc", StandardScaler())]),
                ODD_NUMERIC + ODD_INTEGER,
            ),
            (
                "cat",
                Pipeline(
                    [
                        ("imp", SimpleImputer(strategy="constant", fill_value="__missing__")),
                        ("oh", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                ODD_CATEGORICAL,
            ),
        ]
    )
    pipe = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=500))])
    with threadpool_limits(1):
        pipe.fit(sklearn_frame(columns_from_frame(train, list(kinds)), kinds), train[ODD_TARGET])
    return pipe, hold


def package_odd(settings: Settings, version: str = "1") -> tuple[PackagedModel, pd.DataFrame]:
    """Package the odd-columns model as ``odd-columns:v<version>`` (no Bento) into ``settings``'
    store. Returns (the packaged model, its holdout frame)."""
    from serving.bundle.package import package_pipeline

    pipe, hold = fit_odd()
    return package_pipeline(
        settings,
        name="odd-columns",
        version=version,
        pipeline=pipe,
        contract=make_odd_contract(),
        holdout=hold,
        build=False,
    ), hold


def json_records(frame: pd.DataFrame, contract: DatasetContract) -> list[dict]:
    """JSON-ready request records under the users' column names (NaN -> null, integers as int)."""
    from serving.bundle.onnx_model import columns_from_frame

    names = [c.name for c in contract.feature_columns]
    ints = {c.name for c in contract.feature_columns if c.kind == "integer"}
    cols = columns_from_frame(frame, names)
    return [
        {
            k: (int(cols[k][i]) if k in ints and cols[k][i] is not None else cols[k][i])
            for k in names
        }
        for i in range(len(frame))
    ]


class LoadThreads:
    """Client threads (``_threads``, made by a subclass) that loop until ``_stop`` is set: started
    when the ``with`` block begins, stopped and joined when it ends."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Self:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


class PredictLoad(LoadThreads):
    """``threads`` clients POSTing two-record /predict requests to ``url`` in a loop (connection errors
    ignored: the service may be restarting); ``answered`` keeps every prediction id answered 200."""

    def __init__(self, url: str, recs: list[dict[str, Any]], threads: int = 4) -> None:
        super().__init__()
        self.url, self.recs = url, recs
        self.answered: list[str] = []
        self._threads = [threading.Thread(target=self._loop) for _ in range(threads)]

    def _loop(self) -> None:
        n = len(self.recs)
        with httpx.Client(base_url=self.url, timeout=10, headers=AUTH) as client:
            i = 0
            while not self._stop.is_set():
                try:
                    resp = client.post(
                        "/predict", json={"records": [self.recs[i % n], self.recs[(i + 1) % n]]}
                    )
                except httpx.HTTPError:
                    time.sleep(0.01)
                    continue
                finally:
                    i += 1
                if resp.status_code == 200:
                    self.answered.extend(a["prediction_id"] for a in resp.json())


# ----------------------------------------------------------------------------- generated datasets of other shapes


@dataclass
class Generated:
    """A model trained on the demo generator's data, packaged (no Bento), and request records for it."""

    model: PackagedModel
    contract: DatasetContract
    records: list[dict[str, Any]]


def package_generated(
    settings: Settings,
    name: str,
    *,
    task: str = "classification",
    features: int | None = None,
    seed: int = 0,
    version: str = "1",
    rows: int = 3000,
) -> Generated:
    """``generate(task=..., features=...)`` trained (logistic regression, or a linear model for a
    regression) and packaged as ``<name>:v<version>`` into ``settings``' store."""
    from threadpoolctl import threadpool_limits

    from mloop.core.contract import infer_contract
    from mloop.core.generate import generate
    from models.pipeline import build_pipeline, prepare_features
    from models.spec import ModelSpec
    from models.split import split_dataset
    from serving.bundle.package import package_pipeline

    df = generate("baseline", rows=rows, seed=seed, task=task, features=features)
    contract = infer_contract(df, name=name, target="target", time_column="event_time")
    train, hold = split_dataset(df, contract)
    estimator = "linear" if contract.task == "regression" else "logistic_regression"
    pipe = build_pipeline(contract, ModelSpec(estimator=estimator))
    with threadpool_limits(1):
        pipe.fit(prepare_features(train, contract), train[contract.target].to_numpy())
    model = package_pipeline(
        settings,
        name=name,
        version=version,
        pipeline=pipe,
        contract=contract,
        holdout=hold,
        build=False,
    )
    return Generated(model=model, contract=contract, records=json_records(hold.head(200), contract))

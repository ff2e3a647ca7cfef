"""Model loading never runs code it was not told to trust (part of ``make test``, next to bandit).

(a) A source scan of every package: no module loads objects with pickle, joblib, cloudpickle, dill,
    shelve, marshal, ``torch.load``, ``pandas.read_pickle``, ``numpy.load(allow_pickle=True)``,
    ``yaml.load``/``unsafe_load``, MLflow's ``load_model`` (it unpickles), and every skops load
    passes the explicit allowlist (``trusted=TRUSTED_TYPES``), never ``True`` nor whatever
    ``get_untrusted_types()`` returns. Only the two loaders in :data:`SKOPS_LOADERS` may load skops.
(b) The two loaders refuse a skops file holding a type outside the allowlist, with a clear error,
    before anything in it is built.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import pytest

from mloop.core.paths import CODE_ROOT

PACKAGES = ("mloop", "flows", "models", "serving", "monitoring")
FORBIDDEN_MODULES = {
    "pickle",
    "_pickle",
    "cPickle",
    "cloudpickle",
    "joblib",
    "dill",
    "shelve",
    "marshal",
}
FORBIDDEN_ATTRS = {"read_pickle", "unsafe_load", "full_load", "load_model"}
"""``x.read_pickle(...)``, ``yaml.unsafe_load``/``full_load``, ``mlflow.<flavor>.load_model`` (unpickles)."""
SKOPS_LOADERS = {"models/registry.py", "serving/bundle/onnx_model.py"}
"""The only modules that may call ``skops.io.load``: both check get_untrusted_types against the allowlist."""
ALLOWLIST_NAME = "TRUSTED_TYPES"


def _dotted(node: ast.expr) -> str:
    """``a.b.c`` for a Name/Attribute chain ('' for anything else)."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _skops_aliases(tree: ast.AST) -> tuple[set[str], set[str]]:
    """Names bound to the skops.io module (``import skops.io as sio``) and to its load functions."""
    modules, functions = {"skops.io"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "skops.io":
                    modules.add(a.asname or a.name)
        elif isinstance(node, ast.ImportFrom):
            if node.module == "skops" and any(a.name == "io" for a in node.names):
                modules.update(a.asname or "io" for a in node.names if a.name == "io")
            if node.module == "skops.io":
                functions.update(
                    a.asname or a.name for a in node.names if a.name in ("load", "loads")
                )
    return modules, functions


def scan_source(source: str, rel: str) -> list[str]:
    """Findings in one module's source (``path:line: what``); empty when it loads nothing unsafely."""
    tree = ast.parse(source)
    modules, functions = _skops_aliases(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for name in names:
                if name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{where}: imports {name}")
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "torch"
                and any(a.name == "load" for a in node.names)
            ):
                found.append(f"{where}: imports torch.load")
        if not isinstance(node, ast.Call):
            continue
        func = _dotted(node.func)
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        last = func.rsplit(".", 1)[-1]
        if func == "torch.load":
            found.append(f"{where}: torch.load unpickles")
        elif last in FORBIDDEN_ATTRS and func != last:
            found.append(f"{where}: {func} can run code from the file")
        elif func in ("yaml.load",) and _dotted(keywords.get("Loader", ast.Name("x"))) not in (
            "yaml.SafeLoader",
        ):
            found.append(f"{where}: yaml.load without SafeLoader (use yaml.safe_load)")
        elif (
            last == "load"
            and func.rsplit(".", 1)[0] in ("np", "numpy")
            and "allow_pickle" in keywords
        ):
            value = keywords["allow_pickle"]
            if not (isinstance(value, ast.Constant) and value.value is False):
                found.append(f"{where}: numpy.load with allow_pickle")
        is_skops_load = (
            last in ("load", "loads") and func.rsplit(".", 1)[0] in modules
        ) or func in functions
        if is_skops_load:
            trusted = keywords.get("trusted")
            if rel not in SKOPS_LOADERS:
                found.append(
                    f"{where}: skops load outside the allowed loaders {sorted(SKOPS_LOADERS)}"
                )
            if trusted is None or _dotted(trusted).rsplit(".", 1)[-1] != ALLOWLIST_NAME:
                got = ast.unparse(trusted) if trusted is not None else "nothing"
                found.append(f"{where}: skops load must pass trusted={ALLOWLIST_NAME} (got {got})")
    return found


def module_files() -> list[tuple[str, Path]]:
    files = []
    for package in PACKAGES:
        for path in sorted((CODE_ROOT / package).rglob("*.py")):
            files.append((path.relative_to(CODE_ROOT).as_posix(), path))
    return files


def test_the_scan_covers_the_code() -> None:
    rels = [rel for rel, _ in module_files()]
    assert len(rels) > 50 and set(rels) >= SKOPS_LOADERS


def test_no_module_loads_models_unsafely() -> None:
    findings = [f for rel, path in module_files() for f in scan_source(path.read_text(), rel)]
    assert findings == [], "\n".join(findings)


@pytest.mark.parametrize(
    "source",
    [
        "import pickle\npickle.loads(b'')",
        "from joblib import load",
        "import cloudpickle",
        "import torch\ntorch.load('m.pt')",
        "import pandas as pd\npd.read_pickle('x')",
        "import numpy as np\nnp.load('x.npy', allow_pickle=True)",
        "import yaml\nyaml.load(open('x'))",
        "import mlflow\nmlflow.sklearn.load_model('runs:/x/model')",
        "import skops.io as sio\nsio.load('m.skops', trusted=True)",
        "import skops.io as sio\nsio.load('m.skops', trusted=sio.get_untrusted_types(file='m.skops'))",
        "from skops.io import load\nload('m.skops')",
        "from skops import io\nio.loads(b'', trusted=True)",
    ],
)
def test_the_scan_catches_each_unsafe_load(source: str) -> None:
    assert scan_source(source, "models/registry.py"), source


def test_the_scan_accepts_the_allowlisted_load() -> None:
    ok = "import skops.io as sio\nfrom models.pipeline import TRUSTED_TYPES\nsio.load('m.skops', trusted=TRUSTED_TYPES)"
    assert scan_source(ok, "models/registry.py") == []
    assert scan_source(ok, "serving/other.py")  # but only in the two loaders
    assert scan_source("import yaml\nyaml.safe_load('a: 1')", "x.py") == []


class Untrusted:
    """A type no allowlist names: loading must refuse it, not build it."""

    def __init__(self, payload: str = "run me") -> None:
        self.payload = payload


def _pipeline_with(step: Any) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline([("evil", step), ("model", LogisticRegression())])


def _mlflow_model_dir(root: Path, obj: Any, fmt: str = "skops") -> Path:
    """A folder shaped like a stored MLflow sklearn model (MLmodel + model.skops)."""
    import skops.io as sio
    import yaml

    root.mkdir(parents=True)
    sio.dump(obj, root / "model.skops")
    flavor = {"pickled_model": "model.skops", "serialization_format": fmt, "sklearn_version": "1"}
    (root / "MLmodel").write_text(yaml.safe_dump({"flavors": {"sklearn": flavor}}))
    return root


def _evil_objects() -> dict[str, Any]:
    from sklearn.preprocessing import FunctionTransformer

    return {
        "class": Untrusted(),
        "in-pipeline": _pipeline_with(Untrusted()),
        "function": _pipeline_with(FunctionTransformer(func=os.system)),
    }


@pytest.mark.parametrize("kind", ["class", "in-pipeline", "function"])
def test_the_registry_loader_refuses_types_outside_the_allowlist(tmp_path: Path, kind: str) -> None:
    from mloop.core.errors import MloopError
    from models.registry import load_pipeline_from_dir

    folder = _mlflow_model_dir(tmp_path / "model", _evil_objects()[kind])
    with pytest.raises(MloopError, match="outside the allowlist") as caught:
        load_pipeline_from_dir(folder)
    assert "Untrusted" in str(caught.value) or "system" in str(caught.value)


def test_the_registry_loader_refuses_pickle(tmp_path: Path) -> None:
    from mloop.core.errors import MloopError
    from models.registry import load_pipeline_from_dir

    folder = _mlflow_model_dir(tmp_path / "model", {"a": 1}, fmt="cloudpickle")
    with pytest.raises(MloopError, match="only skops is accepted"):
        load_pipeline_from_dir(folder)


def test_the_registry_loader_loads_a_plain_pipeline(tmp_path: Path) -> None:
    import numpy as np
    from sklearn.preprocessing import StandardScaler

    from models.registry import load_pipeline_from_dir

    pipe = _pipeline_with(StandardScaler()).fit(np.arange(20.0).reshape(10, 2), [0, 1] * 5)
    loaded = load_pipeline_from_dir(_mlflow_model_dir(tmp_path / "model", pipe))
    assert loaded.predict(np.zeros((1, 2))).shape == (1,)


@pytest.mark.parametrize("kind", ["class", "in-pipeline", "function"])
def test_the_serving_loader_refuses_types_outside_the_allowlist(tmp_path: Path, kind: str) -> None:
    import skops.io as sio

    from serving.bundle.onnx_model import SKOPS_FILE, load_predictor

    folder = tmp_path / "bento-model"
    folder.mkdir()
    sio.dump(_evil_objects()[kind], folder / SKOPS_FILE)
    with pytest.raises(ValueError, match="outside the allowlist"):
        load_predictor(folder, meta={"input_kinds": {}, "task": "classification"})

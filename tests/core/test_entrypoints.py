"""Every module mloop starts by name resolves, and no module name is hard-coded outside mloop.core.entrypoints."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

from mloop.core import entrypoints
from mloop.core.paths import CODE_ROOT

SOURCE_PACKAGES = ("mloop", "flows", "models", "serving", "monitoring")
"""The product code: where services and child processes are started."""
PROJECT_PACKAGES = (*SOURCE_PACKAGES, "bench", "tests")

DASH_M_TEXT = re.compile(r"(?:^|\s)-m ([A-Za-z_][\w.]*)")
OBJECT_REF = re.compile(r"(?:{})(?:\.\w+)+:\w+".format("|".join(PROJECT_PACKAGES)))


def module_strings(source: str) -> list[str]:
    """Module names a piece of code starts by string: ``"-m", "pkg.mod"`` in an argv list or call,
    ``-m pkg.mod`` inside a string, and ``"pkg.mod:Attr"`` literals. Docstrings are prose: skipped."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found: list[str] = []
    for node in ast.walk(tree):
        items = (
            node.elts
            if isinstance(node, ast.List | ast.Tuple)
            else node.args
            if isinstance(node, ast.Call)
            else []
        )
        for first, second in zip(items, items[1:], strict=False):
            if (
                isinstance(first, ast.Constant)
                and first.value == "-m"
                and isinstance(second, ast.Constant)
            ):
                found.append(str(second.value))
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            found += DASH_M_TEXT.findall(node.value)
            if OBJECT_REF.fullmatch(node.value):
                found.append(node.value)
    return found


def _source_files() -> list[Path]:
    own = Path(entrypoints.__file__).resolve()
    return sorted(
        p for pkg in SOURCE_PACKAGES for p in (CODE_ROOT / pkg).rglob("*.py") if p.resolve() != own
    )


def _declared() -> set[str]:
    return {*entrypoints.PROJECT_MODULES, *entrypoints.PROJECT_OBJECTS, *entrypoints.TOOL_MODULES}


@pytest.mark.parametrize("module", [*entrypoints.PROJECT_MODULES, *entrypoints.TOOL_MODULES])
def test_every_module_started_by_name_is_importable(module: str) -> None:
    assert importlib.util.find_spec(module) is not None, f"{module} cannot be found"


@pytest.mark.parametrize("module", entrypoints.PROJECT_MODULES)
def test_python_m_modules_can_run_as_main(module: str) -> None:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    if spec.submodule_search_locations:  # a package: `python -m` runs its __main__
        assert importlib.util.find_spec(f"{module}.__main__") is not None, (
            f"{module} has no __main__"
        )
    else:
        tree = ast.parse(Path(spec.origin).read_text())
        assert any(
            isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body
        ), f"{module} has no `if __name__ == '__main__'` block"


@pytest.mark.parametrize("ref", entrypoints.PROJECT_OBJECTS)
def test_module_attribute_references_exist(ref: str) -> None:
    """``module:Class`` names a class defined in that module (checked with ast: no BentoML import)."""
    module, _, name = ref.partition(":")
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, f"{module} cannot be found"
    tree = ast.parse(Path(spec.origin).read_text())
    defined = {n.name for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef)}
    assert name in defined, f"{module} defines no {name}"


def test_module_names_in_the_source_are_declared_in_entrypoints() -> None:
    """A module started by a string is declared in mloop.core.entrypoints; a project one only there."""
    unknown: list[str] = []
    hard_coded: list[str] = []
    project = {*entrypoints.PROJECT_MODULES, *entrypoints.PROJECT_OBJECTS}
    for path in _source_files():
        text = path.read_text()
        where = path.relative_to(CODE_ROOT)
        for name in module_strings(text):
            if name not in _declared():
                unknown.append(f"{where}: {name}")
            elif name in project:
                hard_coded.append(f"{where}: {name}")
    assert not unknown, f"module names not declared in mloop/core/entrypoints.py: {unknown}"
    assert not hard_coded, (
        f"use the constants of mloop/core/entrypoints.py instead of: {hard_coded}"
    )


def test_the_scan_finds_hard_coded_names() -> None:
    """The scan catches the forms code uses, and skips docstrings (so the test above cannot pass vacuously)."""
    code = '''
"""Run ``python -m serving.bundle.store`` in a child."""
argv = [sys.executable, "-m", "serving.bundle.store"]
subprocess.run(("python", "-m", "flows.notify"))
engine = f"{python} -m prefect.engine"
SERVICE = "serving.api.bento:PredictionService"
'''
    assert sorted(module_strings(code)) == [
        "flows.notify",
        "prefect.engine",
        "serving.api.bento:PredictionService",
        "serving.bundle.store",
    ]

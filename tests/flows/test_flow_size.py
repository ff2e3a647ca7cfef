"""Flows stay thin: every ``@flow`` function in flows/ is at most 60 lines (signature and docstring
included, decorators not), so the orchestration reads like the loop diagram and the logic lives in
the capability packages, where it is unit-tested."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FLOWS = Path(__file__).resolve().parents[2] / "flows"
MAX_LINES = 60
KNOWN_FLOWS = {
    "ingest_flow",
    "train_flow",
    "promote_flow",
    "rollback_flow",
    "deploy_flow",
    "monitor_flow",
    "retrain_flow",
    "remediate_flow",
    "recover_flow",
}


def _is_flow_decorator(node: ast.expr) -> bool:
    """``@flow``, ``@flow(...)``, ``@prefect.flow`` or ``@prefect.flow(...)``."""
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Name):
        return target.id == "flow"
    return (
        isinstance(target, ast.Attribute)
        and target.attr == "flow"
        and isinstance(target.value, ast.Name)
        and target.value.id == "prefect"
    )


def flow_sizes() -> dict[str, int]:
    """``module.function`` -> lines of every flow function in flows/ (``end_lineno - lineno + 1``)."""
    sizes: dict[str, int] = {}
    for path in sorted(FLOWS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                _is_flow_decorator(d) for d in node.decorator_list
            ):
                assert node.end_lineno is not None  # ast.parse sets it on every node
                sizes[f"{path.stem}.{node.name}"] = node.end_lineno - node.lineno + 1
    return sizes


def test_the_decorator_forms_are_recognised() -> None:
    source = "@flow\ndef a(): ...\n@flow(name='b')\ndef b(): ...\n@prefect.flow\ndef c(): ...\n@task\ndef d(): ...\n"
    found = [
        n.name
        for n in ast.parse(source).body
        if isinstance(n, ast.FunctionDef) and any(_is_flow_decorator(d) for d in n.decorator_list)
    ]
    assert found == ["a", "b", "c"]


def test_every_flow_is_found() -> None:
    names = {key.split(".", 1)[1] for key in flow_sizes()}
    assert len(names) >= 9 and names >= KNOWN_FLOWS, sorted(names)


@pytest.mark.parametrize("name", sorted(flow_sizes()))
def test_flow_is_thin(name: str) -> None:
    lines = flow_sizes()[name]
    assert lines <= MAX_LINES, (
        f"{name} has {lines} lines (max {MAX_LINES}): move logic into models/serving/monitoring"
    )

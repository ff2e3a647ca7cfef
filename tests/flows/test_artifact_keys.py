"""One rule for Prefect artifact keys (lowercase letters, digits, dashes), the keys flows used before."""

from __future__ import annotations

import re

import pytest

from mloop.core.artifacts import artifact_key


@pytest.mark.parametrize(
    ("kind", "name", "key"),
    [
        ("drift", "loans", "drift-loans"),
        ("dataset", "Loans_v2.1", "dataset-loans-v2-1"),
        ("deploy", "credit_risk", "deploy-credit-risk"),
        ("gate", "a--b", "gate-a--b"),
        ("retrain", "x_", "retrain-x"),
    ],
)
def test_artifact_key(kind: str, name: str, key: str) -> None:
    assert artifact_key(kind, name) == key


def test_artifact_key_is_always_valid_and_bounded() -> None:
    for name in ("Ünïcode-näme", "a" * 300, "...", "9.x"):
        key = artifact_key("promote", name)
        assert re.fullmatch(r"[a-z0-9-]+", key) and len(key) <= 100

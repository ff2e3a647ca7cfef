"""The models CLI on real parts: train (--json, reuse, --force), models --json, reproduce (zero diff
for logistic regression), promote/rollback flows and audit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from mloop.cli.app import app
from tests.models.helpers import ingest_frame, synth_frame

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _env(prefect_server) -> Iterator[None]:
    """CLI commands export settings into os.environ: restore it after each test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _run_json(*args: str) -> object:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def _run(*args: str) -> dict[str, Any]:
    """A command whose --json answer is one object."""
    answer = _run_json(*args)
    assert isinstance(answer, dict), answer
    return answer


def _run_rows(*args: str) -> list[dict[str, Any]]:
    """A command whose --json answer is a list of objects."""
    answer = _run_json(*args)
    assert isinstance(answer, list) and all(isinstance(row, dict) for row in answer), answer
    return answer


def test_train_models_reproduce_promote_rollback_audit(models_settings) -> None:
    s, name = models_settings, "cli"
    md5 = ingest_frame(s, synth_frame(2500, seed=11), name)
    first = _run("train", name, "--json")
    assert first["version"] == "1" and first["promoted"] and first["data_md5"] == md5

    again = _run("train", name, "--json")
    assert again["reused"] and again["version"] == "1"
    forced = _run(
        "train",
        name,
        "--force",
        "--model",
        "random_forest:n_estimators=30,max_depth=5",
        "--json",
    )
    assert not forced["reused"] and forced["version"] == "2"

    listing = _run_rows("models", name, "--json")
    assert [row["version"] for row in listing] == ["2", "1"]
    assert set(listing[0]) >= {"version", "aliases", "metrics", "data_md5", "decision"}
    assert (
        "champion" in listing[1]["aliases"]
        and listing[1]["data_md5"] == md5
        and listing[1]["decision"] == "promote"
    )
    assert listing[0]["metrics"]["roc_auc"] > 0.5

    report = _run("reproduce", name, "1", "--json")
    assert report["spec"]["estimator"] == "logistic_regression" and report["diffs"]
    assert report["max_abs_diff"] == 0.0

    promoted = _run("promote", name, "2", "--reason", "manual pick", "--json")
    assert (promoted["from_version"], promoted["to_version"], promoted["outcome"]) == (
        "1",
        "2",
        "applied",
    )
    rolled = _run("rollback", name, "--reason", "bad in production", "--json")
    assert (rolled["from_version"], rolled["to_version"]) == ("2", "1")
    audit = _run_rows("audit", name, "--json")
    assert [(r["action"], r["to_version"]) for r in audit] == [
        ("promote", "1"),
        ("promote", "2"),
        ("rollback", "1"),
    ]
    assert audit[1]["reason"] == "manual pick" and audit[1]["actor"].startswith("user:")
    assert audit[0]["actor"].startswith("flow:") and audit[0]["flow_run_id"]


def test_rollback_of_an_unknown_model_is_a_clean_error(models_settings) -> None:
    result = CliRunner().invoke(app, ["rollback", "no-such-model", "--reason", "x"])
    assert result.exit_code == 3 and "is not registered" in result.output


def test_cli_entry_point_answers_json_for_an_unknown_model(models_settings) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mloop.cli", "models", "nothing-here", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert out.returncode == 3, out.stderr  # not found, as JSON on stdout
    assert json.loads(out.stdout)["error"] == "model 'nothing-here' is not registered"

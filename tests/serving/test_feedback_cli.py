"""`mloop feedback FILE` follows the service's trust rule: known prediction ids only, conflicts recorded."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mloop.cli.app import app
from serving.log.feedback import read_feedback
from serving.log.predictions import PredictionLogger, new_prediction_ids


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A MLOOP_HOME with three logged predictions of model `loans`; os.environ restored afterwards."""
    saved = dict(os.environ)
    home = tmp_path / "home"
    os.environ.update({"MLOOP_HOME": str(home), "MLOOP_PROJECT_DIR": str(tmp_path)})
    yield home
    os.environ.clear()
    os.environ.update(saved)


def _log(home: Path, n: int) -> list[str]:
    logger = PredictionLogger(home / "predictions", flush_seconds=60)
    ids = new_prediction_ids(n)
    logger.log(
        ids=ids,
        model_name="loans",
        model_version="1",
        features={"age": [30.0] * n},
        predictions=[1] * n,
        values=[0.7] * n,
    )
    logger.close()
    return ids


def _feedback(tmp_path: Path, rows: list[tuple[str, int]]) -> dict:
    path = tmp_path / "labels.csv"
    pd.DataFrame(rows, columns=pd.Index(["prediction_id", "label"])).to_csv(path, index=False)
    result = CliRunner().invoke(app, ["feedback", str(path), "loans", "--json"])
    return {"exit_code": result.exit_code, "output": result.stdout}  # stderr may carry log lines


def test_known_ids_are_recorded_unknown_and_conflicting_ones_are_not(
    home: Path, tmp_path: Path
) -> None:
    known = _log(home, 3)
    first = _feedback(tmp_path, [(known[0], 1), (known[1], 0), ("f" * 32, 1)])
    assert first["exit_code"] == 0, first["output"]
    answer = json.loads(first["output"])
    assert (answer["recorded"], answer["unknown"]) == (2, 1)
    second = json.loads(_feedback(tmp_path, [(known[0], 0), (known[1], 0)])["output"])
    assert (second["recorded"], second["conflicts"], second["duplicates"]) == (0, 1, 1)
    labels = read_feedback(home / "feedback", "loans").set_index("prediction_id")["label"]
    assert int(labels[known[0]]) == 1  # the first label stands


def test_a_file_of_unknown_ids_fails_with_a_fix(home: Path, tmp_path: Path) -> None:
    _log(home, 1)
    out = _feedback(tmp_path, [("a" * 32, 1), ("b" * 32, 0)])
    error = json.loads(out["output"])  # --json: the error is a JSON object too
    assert (
        out["exit_code"] == error["code"] == 3
    )  # `loans` has no registry entry here: unknown model
    assert "prediction log" in error["error"] and "prediction_id" in error["hint"]
    assert read_feedback(home / "feedback", "loans").empty

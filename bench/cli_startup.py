"""Benchmark: `mloop --help` start-up time of this tree against a baseline git revision, in one run.

The baseline revision's sources are exported (``git archive``) into a temporary folder and run with
the same interpreter and environment, so both sides pay the same library imports. Runs alternate
(baseline, current, baseline, ...) so machine noise hits both; the median of each side and the
ratio are printed. The CLI entry module moved in the layered tree (``mloop.cli`` ->
``mloop.cli.app``); both are started as ``python -c "<import app>; app()" --help``.

Run: ``.venv/bin/python bench/cli_startup.py [--base 95a323c] [--runs 11]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _export(rev: str, dest: Path) -> None:
    archive = subprocess.run(
        ["git", "archive", rev], cwd=ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")


def _entry(tree: Path) -> str:
    module = "mloop.cli.app" if (tree / "mloop" / "cli" / "app.py").exists() else "mloop.cli"
    return f"import sys; from {module} import app; sys.argv[0] = 'mloop'; app()"


def _time(tree: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", _entry(tree), "--help"],
        cwd=tree,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base", default="95a323c", help="baseline git revision (default: before the layered tree)"
    )
    parser.add_argument("--runs", type=int, default=11, help="runs per side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mloop-bench-cli-") as tmp:
        base = Path(tmp) / "base"
        _export(args.base, base)
        _time(base)  # warm the page cache and bytecode of both
        _time(ROOT)
        times: dict[str, list[float]] = {"base": [], "current": []}
        for _ in range(args.runs):
            times["base"].append(_time(base))
            times["current"].append(_time(ROOT))
    med = {k: statistics.median(v) for k, v in times.items()}
    for side, values in times.items():
        print(
            f"{side:8s} ({args.base if side == 'base' else 'working tree'}): median {med[side] * 1000:.0f} ms, "
            f"min {min(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms over {len(values)} runs"
        )
    print(f"ratio current/base: {med['current'] / med['base']:.3f} (goal: <= 1.0 within noise)")


if __name__ == "__main__":
    main()

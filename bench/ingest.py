"""Benchmark: ingest of a 1M-row x 20-column CSV vs plain pandas read_csv + to_parquet.

Each variant runs in its own subprocess (so peak memory, read from ``ru_maxrss``, is its own),
on the same file, in the same run:

- ``pandas``: ``pd.read_csv(csv)`` then ``df.to_parquet(out)`` (the baseline);
- ``onboard``: first ``mloop`` ingest of the file (read, infer the contract, pandera validation,
  deterministic parquet, md5, DVC add + push to the local remote);
- ``ingest``: a second, different 1M-row file checked against that contract and versioned.

Time is measured inside each subprocess from before its imports to the end (``total``) and for
the work alone (``work``). Goal: ingest total <= 2x the pandas baseline total.

Children run with Python's normal bytecode caching (PYTHONDONTWRITEBYTECODE is dropped from
their environment) after one unmeasured warm-up import, so neither side pays for compiling
library sources on every start, as it would not on an installed machine.

Usage: ``python bench/ingest.py [--rows 1000000] [--repeat 1] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_csv(path: Path, rows: int, seed: int) -> None:
    """The demo dataset (16 columns) plus 4 extra columns: 20 columns in all."""
    import numpy as np

    from mloop.core.generate import generate, write_frame

    df = generate("baseline", rows, seed)
    rng = np.random.default_rng(seed + 100)
    df.insert(len(df.columns) - 1, "utilization", rng.uniform(0, 1, rows).round(4))
    df.insert(len(df.columns) - 1, "months_since_last_default", rng.integers(0, 120, rows))
    df.insert(len(df.columns) - 1, "channel", rng.choice(["web", "branch", "broker", "app"], rows).astype(object))
    df.insert(len(df.columns) - 1, "score_b", rng.normal(0, 1, rows).round(5))
    write_frame(df, path)


def child(variant: str, csv: Path, work: Path) -> dict[str, float]:
    """Run one variant in this process; returns seconds and peak RSS (MB)."""
    t0 = time.perf_counter()
    if variant == "pandas":
        import pandas as pd

        t1 = time.perf_counter()
        df = pd.read_csv(csv)
        df.to_parquet(work / "out.parquet")
        rows = len(df)
    else:
        from mloop.core.datasets import ingest_dataset
        from mloop.core.settings import Settings

        settings = Settings(home=work / "home", project_dir=work / "project")
        import dvc.repo  # noqa: F401 - imported here so `work` excludes imports, like pandas'
        import pandera.pandas  # noqa: F401
        import pyarrow.csv  # noqa: F401

        t1 = time.perf_counter()
        result = ingest_dataset(settings, csv, dataset="bench")
        assert result.created, "expected a new version"
        rows = result.version.rows
    end = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"total_s": end - t0, "work_s": end - t1, "peak_mb": peak_mb, "rows": rows}


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update({"DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(ROOT)})
    return env


def warm_up() -> None:
    """Import everything once (unmeasured) so bytecode caches exist for both variants."""
    code = (
        "import pandas, pyarrow.csv, pyarrow.parquet, pandera.pandas, dvc.repo, networkx, "
        "dvc.repo.add, dvc.repo.push, mloop.core.datasets"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=child_env(), cwd=ROOT)


def run_child(variant: str, csv: Path, work: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--csv", str(csv), "--work", str(work)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
    )
    if out.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="Runs per variant; the fastest is reported.")
    parser.add_argument("--keep", type=Path, default=None, help="Keep the work folder here.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.csv, args.work)))
        return

    base = args.keep or Path(tempfile.mkdtemp(prefix="mloop-bench-ingest-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        v1, v2 = base / "v1.csv", base / "v2.csv"
        t = time.perf_counter()
        make_csv(v1, args.rows, 1)
        make_csv(v2, args.rows, 2)
        print(f"generated 2 CSVs of {args.rows:,} rows x 20 columns ({v1.stat().st_size / 1e6:.0f} MB each) in {time.perf_counter() - t:.1f}s")
        warm_up()
        results: dict[str, dict[str, float]] = {}
        for r in range(args.repeat):
            work = base / f"run{r}"
            project = work / "project"
            project.mkdir(parents=True)
            subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, check=True)
            subprocess.run(
                ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "commit", "-q", "--allow-empty", "-m", "init"],
                cwd=project,
                check=True,
            )
            for variant, csv in (("pandas", v1), ("onboard", v1), ("ingest", v2)):
                got = run_child(variant, csv, work)
                if variant not in results or got["total_s"] < results[variant]["total_s"]:
                    results[variant] = got
        pandas = results["pandas"]
        print(f"\n{'variant':<10} {'total s':>8} {'work s':>8} {'peak MB':>8} {'x pandas (total)':>17} {'x pandas (work)':>16}")
        for variant, got in results.items():
            print(
                f"{variant:<10} {got['total_s']:8.2f} {got['work_s']:8.2f} {got['peak_mb']:8.0f} "
                f"{got['total_s'] / pandas['total_s']:17.2f} {got['work_s'] / pandas['work_s']:16.2f}"
            )
        ratio = results["ingest"]["total_s"] / pandas["total_s"]
        print(f"\ngoal: ingest <= 2.0x pandas read_csv+to_parquet; measured {ratio:.2f}x -> {'MET' if ratio <= 2 else 'NOT MET'}")
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: ingest of large CSVs vs plain pandas read_csv + to_parquet, time and peak memory.

Shapes (``--shape``, one or ``all``):

- ``default``: 1M rows x 20 columns (the demo dataset + 4 columns);
- ``wide``: 300 columns (200 float, 60 integer, 38 text with 3-20 levels, a time column and the
  target), 100k rows by default (``--wide-rows``);
- ``long``: the 20 default columns at 5M rows (``--long-rows``).

Each variant runs in its own subprocess (so peak memory is its own: ``VmHWM`` of
``/proc/self/status``, the high-water RSS of the process's own address space; ``ru_maxrss``
would inherit the parent's RSS at fork time), on the same file, in the same run. The CSVs are
generated in a subprocess too, so the parent stays small:

- ``pandas``: ``pd.read_csv(csv)`` then ``df.to_parquet(out)`` (the baseline);
- ``onboard``: first ``mloop`` ingest of the file (read, infer the contract, pandera validation,
  deterministic parquet, md5, DVC add + push to the local remote);
- ``ingest``: a second, different 1M-row file checked against that contract and versioned.

Time is measured inside each subprocess from before its imports to the end (``total``) and for
the work alone (``work``). Goals, per shape: ingest total <= 2x the pandas baseline total, and
ingest peak memory <= 1.5x the pandas baseline's. ``--stages`` also prints the peak memory and
time reached when each ingest stage starts (read, infer, check, write, DVC, git), to find where
memory goes.

Children run with Python's normal bytecode caching (PYTHONDONTWRITEBYTECODE is dropped from
their environment) after one unmeasured warm-up import, so neither side pays for compiling
library sources on every start, as it would not on an installed machine.

Usage: ``python bench/ingest.py [--shape default|wide|long|all] [--rows 1000000]
[--wide-rows 100000] [--long-rows 5000000] [--repeat 1] [--stages] [--keep DIR]``
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


TIME_GOAL = 2.0  # ingest total time <= this x pandas read_csv + to_parquet
MEMORY_GOAL = 1.5  # ingest peak RSS <= this x pandas'
SHAPES = ("default", "wide", "long")


def write_csv(df, path: Path) -> None:
    """Write the benchmark CSV with pyarrow (the generator's own writer takes minutes at 5M rows)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    pacsv.write_csv(pa.Table.from_pandas(df, preserve_index=False), path)


def default_frame(rows: int, seed: int):
    """The demo dataset (16 columns) plus 4 extra columns: 20 columns in all."""
    import numpy as np

    from mloop.core.generate import generate

    df = generate("baseline", rows, seed)
    rng = np.random.default_rng(seed + 100)
    df.insert(len(df.columns) - 1, "utilization", rng.uniform(0, 1, rows).round(4))
    df.insert(len(df.columns) - 1, "months_since_last_default", rng.integers(0, 120, rows))
    df.insert(
        len(df.columns) - 1,
        "channel",
        rng.choice(["web", "branch", "broker", "app"], rows).astype(object),
    )
    df.insert(len(df.columns) - 1, "score_b", rng.normal(0, 1, rows).round(5))
    return df


def wide_frame(rows: int, seed: int):
    """300 columns: a time column, 200 floats (2% nulls in every 10th), 60 integers, 38 texts, the target."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    data: dict[str, object] = {"event_time": pd.date_range("2025-01-01", periods=rows, freq="s")}
    for i in range(200):
        values = rng.normal(i, 1 + i % 7, rows).round(4)
        if i % 10 == 0:
            values[rng.random(rows) < 0.02] = np.nan
        data[f"f{i:03d}"] = values
    for i in range(60):
        data[f"n{i:02d}"] = rng.integers(0, 10 + 10 * i, rows)
    for i in range(38):
        levels = np.array([f"level_{i}_{k}" for k in range(3 + i % 18)], dtype=object)
        data[f"t{i:02d}"] = levels[rng.integers(0, len(levels), rows)]
    data["target"] = (rng.random(rows) < 0.2).astype(np.int64)
    return pd.DataFrame(data)


def make_csv(path: Path, shape: str, rows: int, seed: int) -> int:
    """Write the CSV of ``shape`` with ``rows`` rows; returns its number of columns."""
    df = wide_frame(rows, seed) if shape == "wide" else default_frame(rows, seed)
    write_csv(df, path)
    return len(df.columns)


def peak_rss_mb() -> float:
    """This process's peak RSS in MB: VmHWM (Linux; reset by exec), else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(variant: str, csv: Path, work: Path) -> dict[str, object]:
    """Run one variant in this process; returns seconds, peak RSS (MB) and, for ingests, the
    peak RSS and elapsed seconds when each stage started."""
    t0 = time.perf_counter()
    rss = peak_rss_mb
    stages: list[tuple[str, float, float]] = []
    if variant == "pandas":
        import pandas as pd

        t1 = time.perf_counter()
        df = pd.read_csv(csv)
        stages.append(("read_csv done", time.perf_counter() - t1, rss()))
        df.to_parquet(work / "out.parquet")
        rows = len(df)
    else:
        from mloop.core.datasets import ingest_dataset
        from mloop.core.settings import Settings

        settings = Settings(home=work / "home", project_dir=work / "project")
        import dvc.repo  # noqa: F401 - imported here so `work` excludes imports, like pandas'
        import pandera.pandas  # noqa: F401 - imported to time the import (or warm it), not used
        import pyarrow.csv  # noqa: F401 - imported to time the import (or warm it), not used

        t1 = time.perf_counter()

        def progress(msg: str) -> None:
            stages.append((msg, time.perf_counter() - t1, rss()))

        result = ingest_dataset(settings, csv, dataset="bench", progress=progress)
        assert result.created, "expected a new version"
        rows = result.version.rows
    end = time.perf_counter()
    stages.append(("end", end - t1, rss()))
    return {
        "total_s": end - t0,
        "work_s": end - t1,
        "peak_mb": rss(),
        "rows": rows,
        "stages": stages,
    }


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


def run_child(variant: str, csv: Path, work: Path) -> dict[str, Any]:
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


def git_project(project: Path) -> None:
    project.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, check=True)
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.invalid",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "init",
        ],
        cwd=project,
        check=True,
    )


def bench_shape(base: Path, shape: str, rows: int, repeat: int) -> dict[str, dict[str, Any]]:
    """Generate two CSVs of ``shape`` and run the three variants ``repeat`` times (fastest kept)."""
    folder = base / shape
    folder.mkdir(parents=True, exist_ok=True)
    v1, v2 = folder / "v1.csv", folder / "v2.csv"
    t = time.perf_counter()
    for path, seed in ((v1, 1), (v2, 2)):  # in a subprocess: the parent stays small
        argv = [
            sys.executable,
            __file__,
            "--make",
            shape,
            "--csv",
            str(path),
            "--rows",
            str(rows),
            "--seed",
            str(seed),
        ]
        made = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=child_env())
        if made.returncode != 0:
            raise RuntimeError(f"generating {path.name} failed:\n{made.stderr[-3000:]}")
        columns = int(made.stdout.strip().splitlines()[-1])
    size = v1.stat().st_size / 1e6
    took = time.perf_counter() - t
    print(
        f"[{shape}] generated 2 CSVs of {rows:,} rows x {columns} columns ({size:.0f} MB each) in {took:.1f}s",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    for r in range(repeat):
        work = folder / f"run{r}"
        git_project(work / "project")
        for variant, csv in (("pandas", v1), ("onboard", v1), ("ingest", v2)):
            got = run_child(variant, csv, work)
            if variant not in results or got["total_s"] < results[variant]["total_s"]:
                results[variant] = got
        shutil.rmtree(work, ignore_errors=True)
    for csv in (v1, v2):
        csv.unlink(missing_ok=True)
    return results


def verdict(ratio: float, goal: float) -> str:
    return "MET" if ratio <= goal else "NOT MET"


def print_shape(shape: str, results: dict[str, dict[str, Any]], stages: bool) -> None:
    pandas = results["pandas"]
    print(f"\n[{shape}] {pandas['rows']:,} rows")
    print(
        f"{'variant':<10} {'total s':>8} {'work s':>8} {'peak MB':>8} {'x pandas time':>14} {'x pandas work':>14} {'x pandas mem':>13}"
    )
    for variant, got in results.items():
        print(
            f"{variant:<10} {got['total_s']:8.2f} {got['work_s']:8.2f} {got['peak_mb']:8.0f} "
            f"{got['total_s'] / pandas['total_s']:14.2f} {got['work_s'] / pandas['work_s']:14.2f} {got['peak_mb'] / pandas['peak_mb']:13.2f}"
        )
    if stages:
        for variant, got in results.items():
            steps = ", ".join(f"{name} @{sec:.1f}s {mb:.0f}MB" for name, sec, mb in got["stages"])
            print(f"  {variant} stages (peak so far at each start): {steps}")


def summary(all_results: dict[str, dict[str, dict[str, Any]]]) -> None:
    """One line per shape: ingest vs pandas, time and memory ratios, MET/NOT MET for both goals."""
    print(
        f"\n{'shape':<8} {'rows':>10} {'time x':>7} {f'<= {TIME_GOAL}x':>10} {'memory x':>9} {f'<= {MEMORY_GOAL}x':>10}"
    )
    for shape, results in all_results.items():
        pandas, ingest = results["pandas"], results["ingest"]
        t = ingest["total_s"] / pandas["total_s"]
        m = ingest["peak_mb"] / pandas["peak_mb"]
        print(
            f"{shape:<8} {pandas['rows']:>10,} {t:7.2f} {verdict(t, TIME_GOAL):>10} {m:9.2f} {verdict(m, MEMORY_GOAL):>10}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument(
        "--shape", choices=[*SHAPES, "all"], default="default", help="Table shape(s) to run."
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows of the default shape.")
    parser.add_argument(
        "--wide-rows", type=int, default=100_000, help="Rows of the 300-column shape."
    )
    parser.add_argument("--long-rows", type=int, default=5_000_000, help="Rows of the long shape.")
    parser.add_argument(
        "--repeat", type=int, default=1, help="Runs per variant; the fastest is reported."
    )
    parser.add_argument(
        "--stages", action="store_true", help="Also print peak memory at each ingest stage."
    )
    parser.add_argument("--keep", type=Path, default=None, help="Keep the work folder here.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--make", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:
        print(make_csv(args.csv, args.make, args.rows, args.seed))
        return
    if args.child:
        print(json.dumps(child(args.child, args.csv, args.work)))
        return

    rows = {"default": args.rows, "wide": args.wide_rows, "long": args.long_rows}
    shapes = SHAPES if args.shape == "all" else (args.shape,)
    base = args.keep or Path(tempfile.mkdtemp(prefix="mloop-bench-ingest-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        warm_up()
        all_results: dict[str, dict[str, dict[str, Any]]] = {}
        for shape in shapes:
            all_results[shape] = bench_shape(base, shape, rows[shape], args.repeat)
            print_shape(shape, all_results[shape], args.stages)
        summary(all_results)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Benchmark: how fast the CLI answers, in one run, with a PASS/FAIL per goal.

1. ``mloop --help``: median of 5 runs (goal <= 0.3 s: the app module imports nothing heavy at start-up;
   check with ``python -X importtime -m mloop.cli --help``).
2. On a running platform: a temporary MLOOP_HOME and project checkout on free ports, ``mloop up``, a small
   dataset ingested and a model trained, then ``mloop models loans`` and ``mloop status``, median of 5 each
   (goal <= 1 s each). ``mloop down`` stops everything it started at the end, also on failure.

``--compare REV`` also times ``mloop --help`` of git revision REV against this tree (its sources exported
with ``git archive``, run with the same interpreter; runs alternate so machine noise hits both).

Run: ``.venv/bin/python bench/cli_startup.py [--runs 5] [--skip-platform] [--compare 95a323c]``
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MLOOP = str(Path(sys.executable).with_name("mloop"))
HELP_GOAL = 0.3
READ_GOAL = 1.0
MODEL = "loans"


def _median(fn: Callable[[], float], runs: int) -> tuple[float, list[float], float]:
    """Median and list of ``runs`` wall times of ``fn`` (after one warm-up run), and the median CPU time
    (user + system) of the child processes of each run."""
    fn()  # warm the page cache and bytecode
    times, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(fn())
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return statistics.median(times), times, statistics.median(cpu)


def _timed(argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def _report(label: str, measured: tuple[float, list[float], float], goal: float) -> bool:
    """PASS/FAIL on the median wall time; the CPU time and the load average say how much of it was the
    command's own work and how much waiting for a busy machine."""
    med, times, cpu = measured
    ok = med <= goal
    spread = f"min {min(times):.3f} s, max {max(times):.3f} s over {len(times)} runs"
    load = os.getloadavg()[0]
    print(
        f"{'PASS' if ok else 'FAIL'}  {label:24s} median {med:.3f} s (goal <= {goal} s; {spread}; "
        f"CPU {cpu:.3f} s; load average {load:.1f} on {os.cpu_count()} CPUs)",
        flush=True,
    )
    return ok


def platform_env(root: Path) -> dict[str, str]:
    """A clean environment for a throw-away platform under ``root``: its own home, project checkout and
    free ports (nothing of the caller's MLOOP_*, PREFECT_* or MLflow settings)."""
    from mloop.core.processes import free_port

    project = root / "project"
    project.mkdir(parents=True)
    (project / "README.md").write_text("bench project\n")
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "README.md"]):
        subprocess.run(argv, cwd=project, check=True, capture_output=True)
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
        + ["commit", "-q", "-m", "init"],
        cwd=project,
        check=True,
        capture_output=True,
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLOOP_", "PREFECT_", "MLFLOW_TRACKING_"))
    }
    env.update(
        {
            "MLOOP_HOME": str(root / "home"),
            "MLOOP_PROJECT_DIR": str(project),
            "MLOOP_MONITOR_SWEEP_SCHEDULE": "false",
            "GIT_AUTHOR_NAME": "bench",
            "GIT_AUTHOR_EMAIL": "bench@example.invalid",
            "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@example.invalid",
            **{
                f"MLOOP_{n}_PORT": str(free_port())
                for n in ("PREFECT", "MLFLOW", "SERVE", "WEBHOOK")
            },
        }
    )
    return env


def _step(what: str, argv: list[str], env: dict[str, str], cwd: Path) -> None:
    """Run a set-up command, its own progress on stderr; exit with its output when it fails."""
    print(f"... {what}", flush=True)
    t0 = time.perf_counter()
    done = subprocess.run([MLOOP, *argv], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{what} failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    print(f"    ok ({time.perf_counter() - t0:.1f} s)", flush=True)


def bench_platform(runs: int) -> bool:
    """Up, ingest + train a small model, time the two read commands, down (always)."""
    root = Path(tempfile.mkdtemp(prefix="mloop-bench-platform-"))
    env = platform_env(root)
    cwd = root / "project"
    try:
        _step("mloop up (temporary MLOOP_HOME, free ports)", ["up"], env, cwd)
        data = root / "loans.csv"
        _step("generate 2,000 rows", ["generate", "--rows", "2000", "--out", str(data)], env, cwd)
        ingest = ["ingest", str(data), "--dataset", MODEL, "--target", "target"]
        _step("ingest", [*ingest, "--time-column", "event_time"], env, cwd)
        _step("train", ["train", MODEL], env, cwd)
        ok = True
        for argv in (["models", MODEL], ["status"]):
            measured = _median(lambda argv=argv: _timed([MLOOP, *argv], env, cwd), runs)
            ok &= _report(f"mloop {' '.join(argv)}", measured, READ_GOAL)
        return ok
    finally:
        print("... mloop down", flush=True)
        subprocess.run([MLOOP, "down"], cwd=cwd, env=env, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _export(rev: str, dest: Path) -> None:
    archive = subprocess.run(
        ["git", "archive", rev], cwd=ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")


def _help_of(tree: Path) -> float:
    module = "mloop.cli.app" if (tree / "mloop" / "cli" / "app.py").exists() else "mloop.cli"
    entry = f"import sys; from {module} import app; sys.argv[0] = 'mloop'; app()"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return _timed([sys.executable, "-c", entry, "--help"], env, tree)


def compare(rev: str, runs: int) -> None:
    """``mloop --help`` of ``rev`` against this tree, alternating runs."""
    with tempfile.TemporaryDirectory(prefix="mloop-bench-cli-") as tmp:
        base = Path(tmp) / "base"
        _export(rev, base)
        _help_of(base)  # warm both
        _help_of(ROOT)
        times: dict[str, list[float]] = {"base": [], "current": []}
        for _ in range(runs):
            times["base"].append(_help_of(base))
            times["current"].append(_help_of(ROOT))
    med = {k: statistics.median(v) for k, v in times.items()}
    for side, values in times.items():
        print(
            f"{side:8s} ({rev if side == 'base' else 'working tree'}): median {med[side] * 1000:.0f} ms, "
            f"min {min(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms over {len(values)} runs"
        )
    print(f"ratio current/base: {med['current'] / med['base']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (median)")
    parser.add_argument(
        "--skip-platform",
        action="store_true",
        help="only time `mloop --help` (no platform started)",
    )
    parser.add_argument("--compare", metavar="REV", help="also time --help of git revision REV")
    args = parser.parse_args()
    ok = _report("mloop --help", _median(lambda: _timed([MLOOP, "--help"]), args.runs), HELP_GOAL)
    if not args.skip_platform:
        ok &= bench_platform(args.runs)
    if args.compare:
        compare(args.compare, args.runs)
    print("all goals met" if ok else "some goals missed", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

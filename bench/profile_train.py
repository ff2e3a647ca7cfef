"""Where one train run's seconds go, single machine vs team mode: a targeted measurement for issue 13.

On a fresh platform of the given mode (as bench/team.py starts it): ingest, wait for the triggered
train/promote/deploy, then (each step optional)

1. one ``train/local`` run through the worker (as the bench runs them): the flow run's pick-up, run
   time and each task run's duration from the Prefect API; then the same flow called in a child process
   under cProfile (the flow run's environment; main thread only), written to ``--out``;
2. ``--calls N``: N train runs in a child process (``promote=False``) with every ``MlflowClient`` call
   counted and timed (``<mode>-calls.json``): the round trips a run makes and what they cost;
3. ``--concurrent N``: N train runs at once through the worker: time to all ended, each run's state
   timeline, the mean task durations, and the CPU seconds each service tree used (the platform's
   services, and PostgreSQL and the S3 server in team mode): on a shared 2-core host the CPU split says
   more than the wall time, which moves by tens of seconds between identical runs.

Usage: ``python bench/profile_train.py single|team [--out DIR] [--no-single] [--calls N] [--concurrent N]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import bench_platform, settle, ts  # noqa: E402 - after the sys.path insert that makes the project importable
from mloop.core.generate import generate, write_frame  # noqa: E402 - after the sys.path insert that makes the project importable
from tests.platform.helpers import Platform, wait_for  # noqa: E402 - after the sys.path insert that makes the project importable

MODEL = "loans"

TIMED = """
import functools, json, sys, threading, time
from collections import defaultdict
import mlflow.artifacts
from mlflow import MlflowClient
totals, lock = defaultdict(lambda: [0, 0.0]), threading.Lock()
def timed(name, fn):
    @functools.wraps(fn)
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            with lock:
                totals[name][0] += 1
                totals[name][1] += time.perf_counter() - t
    return wrapper
for attr in dir(MlflowClient):
    if not attr.startswith("_") and callable(getattr(MlflowClient, attr)):
        setattr(MlflowClient, attr, timed(attr, getattr(MlflowClient, attr)))
mlflow.artifacts.download_artifacts = timed("download_artifacts", mlflow.artifacts.download_artifacts)
import mlflow.sklearn
mlflow.sklearn.save_model = timed("sklearn.save_model", mlflow.sklearn.save_model)
from flows.train import train_flow
import models.registry as R, models.gate_scoring as G
R.load_pipeline_from_dir = timed("load_pipeline_from_dir", R.load_pipeline_from_dir)
out = {}
for i in range(int(sys.argv[2])):
    totals.clear()
    t = time.perf_counter()
    result = train_flow(dataset="loans", force=True, seed=7 + i, promote=False)
    out[i] = {"wall": round(time.perf_counter() - t, 2), "timings": {k: round(v, 2) for k, v in result.timings.items()},
              "calls": {k: [n, round(s, 3)] for k, (n, s) in sorted(totals.items(), key=lambda kv: -kv[1][1])}}
json.dump(out, open(sys.argv[1] + "-calls.json", "w"), indent=1)
"""

PROFILED = """
import cProfile, json, pstats, sys, time
out = sys.argv[1]
prof = cProfile.Profile()
t0 = time.perf_counter()
prof.enable()
from flows.train import train_flow
t_import = time.perf_counter() - t0
result = train_flow(dataset="loans", force=True, seed=7)
prof.disable()
prof.dump_stats(out + ".prof")
json.dump({"import": t_import, "wall": time.perf_counter() - t0, "timings": result.timings}, open(out + ".json", "w"))
"""


def task_profile(p: Platform, run_id: str) -> dict[str, Any]:
    """The flow run's pick-up and run time and its task runs' durations (Prefect server timestamps)."""
    run = p.prefect._json("GET", f"/flow_runs/{run_id}")
    tasks = p.prefect._json(
        "POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}, "limit": 200}
    )
    start = ts(run["start_time"])
    rows = sorted(
        (
            {
                "name": t["name"],
                "from_start": ts(t["start_time"]) - start,
                "seconds": ts(t["end_time"]) - ts(t["start_time"]),
            }
            for t in tasks
            if t.get("start_time") and t.get("end_time")
        ),
        key=lambda r: r["from_start"],
    )
    return {"pickup": start - ts(run["created"]), "run": ts(run["end_time"]) - start, "tasks": rows}


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, its reaped children and its live descendants (0 when gone)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        t = proc.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in proc.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.Error:
                pass
        return total
    except psutil.Error:
        return 0.0


def roots(p: Platform, infra_pids: dict[str, int]) -> dict[str, int]:
    """Service name -> pid: the platform's services (run/*.pid) and the infra servers."""
    found = dict(infra_pids)
    for pid_file in p.settings.state.run.glob("*.pid"):
        try:
            found[pid_file.stem] = int(pid_file.read_text())
        except ValueError:
            continue
    return found


def concurrent(p: Platform, runs: int, infra_pids: dict[str, int]) -> dict[str, Any]:
    """``runs`` train runs at once: time to all ended, CPU seconds per service tree, mean task seconds."""
    pids = roots(p, infra_pids)
    before = {name: tree_cpu(pid) for name, pid in pids.items()}
    t0 = time.time()
    ids = [
        p.prefect.run_deployment("train/local", {"dataset": MODEL, "force": True, "seed": 200 + i})
        for i in range(runs)
    ]
    finals = {r: p.prefect.wait_run(r, 1200) for r in ids}
    seconds = max(ts(r["end_time"]) for r in finals.values() if r.get("end_time")) - t0
    cpu = {name: round(tree_cpu(pid) - before[name], 1) for name, pid in pids.items()}
    per_task: dict[str, list[float]] = {}
    pickups, run_times = [], []
    for run_id in ids:
        found = task_profile(p, run_id)
        pickups.append(found["pickup"])
        run_times.append(found["run"])
        for t in found["tasks"]:
            per_task.setdefault(
                t["name"].rsplit("-", 1)[0] if not t["name"].startswith("fit-") else "fit", []
            ).append(t["seconds"])
    timeline = []
    for run_id in ids:
        states = p.prefect._json("GET", f"/flow_run_states/?flow_run_id={run_id}")
        timeline.append(sorted((round(ts(st["timestamp"]) - t0, 1), st["type"]) for st in states))
    return {
        "timeline": [" ".join(f"{t}:{kind[:3]}" for t, kind in row) for row in timeline],
        "seconds": round(seconds, 1),
        "states": [r["state_type"] for r in finals.values()],
        "cpu": cpu,
        "mean_pickup": round(sum(pickups) / runs, 1),
        "mean_run": round(sum(run_times) / runs, 1),
        "mean_task": {k: round(sum(v) / len(v), 2) for k, v in per_task.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    ap.add_argument("mode", choices=["single", "team"])
    ap.add_argument("--out", type=Path, default=Path("/tmp/mloop-profile"))
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument(
        "--concurrent", type=int, default=0, help="Then this many train runs at once (0: none)."
    )
    ap.add_argument(
        "--calls",
        type=int,
        default=0,
        help="Then this many in-process train runs with MLflow calls timed.",
    )
    ap.add_argument("--no-single", action="store_true", help="Skip the one-run profile.")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.mode == "team":
        from tests.infra_fixture import running_infra

        with (
            tempfile.TemporaryDirectory(prefix="mloop-prof-infra-") as folder,
            running_infra(Path(folder)) as infra,
        ):
            profile(args, infra.env, infra.pids)
    else:
        profile(args, None, {})


def profile(
    args: argparse.Namespace, team_env: dict[str, str] | None, infra_pids: dict[str, int]
) -> None:
    from mloop.platform.services import platform_env

    with bench_platform(f"mloop-prof-{args.mode}-", team_env=team_env) as (p, root):
        source = root / "loans.parquet"
        write_frame(generate("baseline", args.rows, 1), source)
        out = p.cli(
            "ingest",
            str(source),
            "--dataset",
            MODEL,
            "--target",
            "target",
            "--time-column",
            "event_time",
        )
        if out.returncode != 0:
            raise SystemExit(f"ingest failed\n{out.stderr}")
        wait_for(p.serving.served_model, 600, "v1 served", every=1.0)
        settle(p, 300)
        if not args.no_single:
            one_run(p, args, team_env)
        if args.calls:
            env = {**platform_env(p.settings), **(team_env or {})}
            done = subprocess.run(
                [sys.executable, "-c", TIMED, str(args.out / args.mode), str(args.calls)],
                env=env,
                cwd=str(ROOT),
                capture_output=True,
                text=True,
            )
            print(
                done.stderr[-3000:]
                if done.returncode
                else (args.out / f"{args.mode}-calls.json").read_text(),
                flush=True,
            )
            settle(p, 300)
        if args.concurrent:
            found = concurrent(p, args.concurrent, infra_pids)
            print(json.dumps(found, indent=1), flush=True)
            (args.out / f"{args.mode}-concurrent.json").write_text(json.dumps(found, indent=1))
            settle(p, 300)


def one_run(p: Platform, args: argparse.Namespace, team_env: dict[str, str] | None) -> None:
    """One train run through the worker (task timings), then one in a child process under cProfile."""
    from mloop.platform.services import platform_env

    run_id = p.prefect.run_deployment("train/local", {"dataset": MODEL, "force": True, "seed": 100})
    final = p.prefect.wait_run(run_id, 600)
    found = task_profile(p, run_id)
    found["state"] = final["state_type"]
    print(json.dumps(found, indent=1), flush=True)
    (args.out / f"{args.mode}-tasks.json").write_text(json.dumps(found, indent=1))
    settle(p, 300)
    env = {**platform_env(p.settings), **(team_env or {})}
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PROFILED, str(args.out / args.mode)],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
    )
    print(f"in-process flow: rc {done.returncode}, {time.perf_counter() - t0:.1f}s", flush=True)
    print(
        done.stderr[-4000:] if done.returncode else (args.out / f"{args.mode}.json").read_text(),
        flush=True,
    )
    settle(p, 300)


if __name__ == "__main__":
    main()

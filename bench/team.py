"""Team mode vs single machine: 8 concurrent train runs, time to all completed and any errors.

In one run, on this machine: a fresh single-machine platform (Prefect and MLflow on SQLite, local
folders), then a fresh team-mode platform (Prefect and MLflow on a real PostgreSQL, artifacts, the DVC
remote and BentoML models on a real S3 from ``mloop infra``). On each: one dataset is ingested and its
triggered train, promotion and deploy are awaited; then 8 train runs of that dataset are created at
once (``force``: each fits, logs, registers and gates; seeds differ) and timed from the first creation
to the last end. Errors: runs not COMPLETED, and "database is locked" lines in the services' logs.

Goal (issue 13): team mode completes all 8 with no error and is not slower (ratio team/single <= 1.0;
the machine is noisy, so the ratio is printed with both times).

Usage: ``python bench/team.py [--runs 8] [--rows 3000] [--keep]`` (``make bench-team``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_platform, settle, ts
from mloop.core.generate import generate, write_frame
from tests.platform.helpers import Platform, wait_for

MODEL = "loans"
LOCKED = "database is locked"


def concurrent_trains(p: Platform, runs: int, timeout: float) -> dict[str, Any]:
    """Create ``runs`` train runs at once; wait for all; (seconds from first creation to last end, states)."""
    t0 = time.time()
    ids = [
        p.prefect.run_deployment("train/local", {"dataset": MODEL, "force": True, "seed": 100 + i})
        for i in range(runs)
    ]
    finals = {r: p.prefect.wait_run(r, timeout) for r in ids}
    ends = [ts(run["end_time"]) for run in finals.values() if run.get("end_time")]
    states = [run["state_type"] for run in finals.values()]
    locked = sum(
        log.read_text(errors="replace").count(LOCKED) for log in p.settings.state.run.glob("*.log")
    )
    return {
        "seconds": (max(ends) if ends else time.time()) - t0,
        "completed": states.count("COMPLETED"),
        "failed": len(states) - states.count("COMPLETED"),
        "locked": locked,
    }


def one_mode(
    mode: str, args: argparse.Namespace, team_env: dict[str, str] | None
) -> dict[str, Any]:
    with bench_platform(f"mloop-bench-team-{mode}-", keep=args.keep, team_env=team_env) as (
        p,
        root,
    ):
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
            raise SystemExit(f"{mode}: ingest failed\n{out.stderr}")
        wait_for(p.serving.served_model, 600, f"{mode}: v1 trained, promoted and served", every=1.0)
        settle(p, 300)
        result = concurrent_trains(p, args.runs, args.timeout)
        print(
            f"{mode:7} {args.runs} trains: {result['seconds']:.1f}s to all ended, {result['completed']} completed, "
            f"{result['failed']} not, {result['locked']} '{LOCKED}'",
            flush=True,
        )
        return result


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    ap.add_argument("--runs", type=int, default=8, help="Concurrent train runs per mode.")
    ap.add_argument("--rows", type=int, default=3000, help="Dataset rows.")
    ap.add_argument("--timeout", type=float, default=1200, help="Seconds to wait for each run.")
    ap.add_argument(
        "--keep", action="store_true", help="Leave the platforms up (and the infra) for a look."
    )
    args = ap.parse_args()

    single = one_mode("single", args, None)
    from tests.infra_fixture import running_infra

    with (
        tempfile.TemporaryDirectory(prefix="mloop-bench-infra-") as folder,
        running_infra(Path(folder)) as infra,
    ):
        team = one_mode("team", args, infra.env)
    ratio = team["seconds"] / single["seconds"]
    ok = team["failed"] == 0 and team["locked"] == 0 and single["failed"] == 0
    print(
        f"\nteam/single time ratio {ratio:.2f} (single {single['seconds']:.1f}s, team {team['seconds']:.1f}s); "
        f"errors: single {single['failed']} runs + {single['locked']} locked, team {team['failed']} runs + "
        f"{team['locked']} locked"
    )
    print(
        f"goal: team completes all with no error and is not slower (ratio <= 1.0): "
        f"{'MET' if ok and ratio <= 1.0 else 'NOT MET'}"
    )


if __name__ == "__main__":
    main()

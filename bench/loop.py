"""Loop latency: drift event -> retrain flow running, and drift event -> new version answering.

One run on a fresh platform (`mloop up` with a temporary MLOOP_HOME and free loopback ports):

1. setup: ingest a baseline dataset through the ingest deployment; the triggers train, promote
   and deploy v1;
2. baseline (same run): a retrain flow run created directly through the API for a model with no
   data: created -> Running is the worker's pick-up plus the flow subprocess start, the floor any
   event-triggered run pays;
3. drifted traffic with feedback labels, then one monitor run: its `mloop.drift.detected` event
   (server timestamp) is t0. Measured: t0 -> the triggered retrain run is Running (goal <= 5 s),
   and t0 -> the prediction service answers with the new champion (goal <= 60 s).

Usage: ``python bench/loop.py [--rows 3000] [--traffic 2000] [--keep]``. Prints the figures, the
ratio to the baseline, and a breakdown. Times come from the Prefect server's own timestamps and this
machine's clock (same host).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_platform, completed, drift_event, ts
from mloop.core.generate import generate, write_frame
from tests.platform.helpers import (
    Platform,
    drifted_traffic,
    send_traffic_with_feedback,
    wait_for,
)

MODEL = "loans"


def retrain_runs(p: Platform) -> list[dict[str, Any]]:
    return p.prefect.flow_runs("retrain")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    ap.add_argument("--rows", type=int, default=3000, help="Baseline dataset rows.")
    ap.add_argument("--traffic", type=int, default=2000, help="Drifted requests (with labels).")
    ap.add_argument(
        "--keep", action="store_true", help="Leave the platform up and the temp folder in place."
    )
    args = ap.parse_args()

    with bench_platform("mloop-bench-loop-", keep=args.keep) as (b, root):
        source = root / "loans-v1.parquet"
        write_frame(generate("baseline", args.rows, 1), source)
        t_setup = time.perf_counter()
        completed(
            b,
            b.prefect.run_deployment(
                "ingest/local",
                {
                    "path": str(source),
                    "dataset": MODEL,
                    "target": "target",
                    "time_column": "event_time",
                },
            ),
        )
        v1 = wait_for(b.serving.served_model, 600, "v1 deployed", every=0.5)
        print(
            f"setup: ingest -> train -> promote -> deploy v{v1['model_version']} in {time.perf_counter() - t_setup:.1f}s"
        )

        # Baseline: a retrain run created directly (no event), for a model with no data.
        base_id = b.prefect.run_deployment(
            "retrain/local",
            {"model_name": f"bench-noop-{uuid.uuid4().hex[:6]}", "trigger": "bench"},
        )
        base = completed(b, base_id)
        baseline = ts(base["start_time"]) - ts(base["created"])

        send_traffic_with_feedback(b, drifted_traffic(args.traffic, 7))
        before = {r["id"] for r in retrain_runs(b)}

        b.prefect.run_deployment(
            "monitor/local", {"model_name": MODEL, "window_size": args.traffic}
        )
        event = wait_for(lambda: drift_event(b), 300, "the drift event", every=0.2)
        t0 = ts(event["occurred"])
        run = wait_for(
            lambda: next(
                (r for r in retrain_runs(b) if r["id"] not in before and r.get("start_time")), None
            ),
            120,
            "the retrain run to start",
            every=0.2,
        )
        to_running = ts(run["start_time"]) - t0
        to_created = ts(run["created"]) - t0
        # (when, the served model): the check's truthy answer; pyright solves wait_for's T as the dict
        champion_seen = cast(
            tuple[float, dict[str, Any]],
            wait_for(
                lambda: (
                    (m := b.serving.served_model())
                    and str(m["model_version"]) != str(v1["model_version"])
                    and (time.time(), m)
                ),
                600,
                "the new version to answer",
                every=0.2,
            ),
        )
        to_serving = champion_seen[0] - t0
        finished = completed(b, run["id"])
        new_version = champion_seen[1]["model_version"]

        print()
        print(
            f"drift event -> retrain flow running : {to_running:6.2f} s  (goal <= 5 s)   "
            f"{'OK' if to_running <= 5 else 'MISSED'}"
        )
        print(
            f"drift event -> v{new_version} answering       : {to_serving:6.2f} s  (goal <= 60 s)  "
            f"{'OK' if to_serving <= 60 else 'MISSED'}"
        )
        print(
            f"baseline: run created -> Running (worker pick-up + flow subprocess), same run: {baseline:.2f} s; "
            f"event path / baseline = {to_running / baseline:.2f}x"
        )
        print(
            f"breakdown: event -> run created {to_created:.2f} s; created -> Running {to_running - to_created:.2f} s; "
            f"retrain run {ts(finished['end_time']) - ts(finished['start_time']):.1f} s; "
            f"retrain end -> new version answering {champion_seen[0] - ts(finished['end_time']):.1f} s"
        )


if __name__ == "__main__":
    main()

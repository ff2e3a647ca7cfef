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
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mloop.generate import generate, write_frame  # noqa: E402
from mloop.platform import settings_env  # noqa: E402
from mloop.services import free_port  # noqa: E402
from mloop.settings import Settings  # noqa: E402

MODEL = "loans"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Bench:
    def __init__(self, root: Path) -> None:
        project = root / "project"
        project.mkdir(parents=True)
        (project / "README.md").write_text("bench project\n")
        for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "README.md"], ["git", "commit", "-q", "-m", "init"]):
            subprocess.run(argv, cwd=project, check=True, capture_output=True,
                           env={**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
                                "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"})
        self.settings = Settings(
            home=root / "home", project_dir=project, prefect_port=free_port(), mlflow_port=free_port(),
            serve_port=free_port(), webhook_port=free_port(),
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOOP_", "PREFECT_"))}
        env.update(self.settings.service_env())
        env.update(settings_env(self.settings))
        env["PREFECT_API_URL"] = self.api
        self.env = env

    @property
    def api(self) -> str:
        return f"http://{self.settings.host}:{self.settings.prefect_port}/api"

    @property
    def serve(self) -> str:
        return f"http://{self.settings.host}:{self.settings.serve_port}"

    def cli(self, *args: str) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", "mloop.cli", *args, "--json"], env=self.env, capture_output=True,
                             text=True, cwd=str(self.settings.project_dir))
        if out.returncode != 0:
            raise SystemExit(f"mloop {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return json.loads(out.stdout)

    def run_deployment(self, name: str, parameters: dict[str, Any]) -> str:
        flow, dep = name.split("/")
        d = httpx.get(f"{self.api}/deployments/name/{flow}/{dep}", timeout=10).json()
        r = httpx.post(f"{self.api}/deployments/{d['id']}/create_flow_run", json={"parameters": parameters}, timeout=10)
        r.raise_for_status()
        return str(r.json()["id"])

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return dict(httpx.get(f"{self.api}/flow_runs/{run_id}", timeout=10).json())

    def wait_run(self, run_id: str, timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.flow_run(run_id)
            if run["state_type"] in TERMINAL:
                if run["state_type"] != "COMPLETED":
                    raise SystemExit(f"flow run {run['name']} ended {run['state_type']}")
                return run
            time.sleep(0.5)
        raise SystemExit(f"flow run {run_id} not finished after {timeout}s")

    def served(self) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"{self.serve}/model", timeout=2)
            return r.json() if r.status_code == 200 else None
        except httpx.HTTPError:
            return None

    def wait(self, check, timeout: float, what: str, every: float = 0.2):  # noqa: ANN001, ANN201
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(every)
        raise SystemExit(f"timed out waiting for {what}")

    def retrain_runs(self) -> list[dict[str, Any]]:
        body = {"flows": {"name": {"any_": ["retrain"]}}, "sort": "EXPECTED_START_TIME_ASC", "limit": 100}
        return list(httpx.post(f"{self.api}/flow_runs/filter", json=body, timeout=10).json())

    def drift_event(self) -> dict[str, Any] | None:
        body = {"filter": {"event": {"name": ["mloop.drift.detected"]}, "order": "DESC"}, "limit": 1}
        events = httpx.post(f"{self.api}/events/filter", json=body, timeout=10).json().get("events", [])
        return events[0] if events else None


def drifted(rows: int, seed: int) -> pd.DataFrame:
    """Covariate-shifted applicants whose defaults follow the concept-drift mechanism."""
    from mloop import generate as g

    df = generate("covariate-shift", rows, seed)
    feats = {c: df[c].to_numpy() for c in df.columns if c not in ("event_time", "target")}
    for c in ("annual_income", "employment_years", "debt_to_income"):
        col = df[c].astype(float)
        feats[c] = col.fillna(col.median()).to_numpy()
    p = 1.0 / (1.0 + np.exp(-g._log_odds(feats, g.DRIFTED_MECHANISM)))
    df["target"] = (np.random.default_rng(seed).random(rows) < p).astype(np.int64)
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3000, help="Baseline dataset rows.")
    ap.add_argument("--traffic", type=int, default=2000, help="Drifted requests (with labels).")
    ap.add_argument("--keep", action="store_true", help="Leave the platform up and the temp folder in place.")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="mloop-bench-loop-"))
    b = Bench(root)
    t_up = time.perf_counter()
    b.cli("up")
    print(f"platform up in {time.perf_counter() - t_up:.1f}s (home {b.settings.state.root})")
    try:
        source = root / "loans-v1.parquet"
        write_frame(generate("baseline", args.rows, 1), source)
        t_setup = time.perf_counter()
        b.wait_run(b.run_deployment("ingest/local", {"path": str(source), "dataset": MODEL, "target": "target",
                                                      "time_column": "event_time"}))
        v1 = b.wait(b.served, 600, "v1 deployed", every=0.5)
        print(f"setup: ingest -> train -> promote -> deploy v{v1['model_version']} in {time.perf_counter() - t_setup:.1f}s")

        # Baseline: a retrain run created directly (no event), for a model with no data.
        base_id = b.run_deployment("retrain/local", {"model_name": f"bench-noop-{uuid.uuid4().hex[:6]}", "trigger": "bench"})
        base = b.wait_run(base_id)
        baseline = ts(base["start_time"]) - ts(base["created"])

        df = drifted(args.traffic, 7)
        features = df.drop(columns=["target", "event_time"])
        for start in range(0, len(df), 500):
            recs = json.loads(features.iloc[start : start + 500].to_json(orient="records"))
            answers = httpx.post(f"{b.serve}/predict", json={"records": recs}, timeout=60).json()
            labels = [{"prediction_id": a["prediction_id"], "label": int(y)}
                      for a, y in zip(answers, df["target"].iloc[start : start + 500], strict=True)]
            httpx.post(f"{b.serve}/feedback", json={"labels": labels}, timeout=60).raise_for_status()
        before = {r["id"] for r in b.retrain_runs()}

        b.run_deployment("monitor/local", {"model_name": MODEL, "window_size": args.traffic})
        event = b.wait(b.drift_event, 300, "the drift event")
        t0 = ts(event["occurred"])
        run = b.wait(lambda: next((r for r in b.retrain_runs() if r["id"] not in before and r.get("start_time")), None),
                     120, "the retrain run to start")
        to_running = ts(run["start_time"]) - t0
        to_created = ts(run["created"]) - t0
        champion_seen = b.wait(
            lambda: (m := b.served()) and str(m["model_version"]) != str(v1["model_version"]) and (time.time(), m),
            600, "the new version to answer",
        )
        to_serving = champion_seen[0] - t0
        finished = b.wait_run(run["id"])
        new_version = champion_seen[1]["model_version"]

        print()
        print(f"drift event -> retrain flow running : {to_running:6.2f} s  (goal <= 5 s)   "
              f"{'OK' if to_running <= 5 else 'MISSED'}")
        print(f"drift event -> v{new_version} answering       : {to_serving:6.2f} s  (goal <= 60 s)  "
              f"{'OK' if to_serving <= 60 else 'MISSED'}")
        print(f"baseline: run created -> Running (worker pick-up + flow subprocess), same run: {baseline:.2f} s; "
              f"event path / baseline = {to_running / baseline:.2f}x")
        print(f"breakdown: event -> run created {to_created:.2f} s; created -> Running {to_running - to_created:.2f} s; "
              f"retrain run {ts(finished['end_time']) - ts(finished['start_time']):.1f} s; "
              f"retrain end -> new version answering {champion_seen[0] - ts(finished['end_time']):.1f} s")
    finally:
        if not args.keep:
            b.cli("down")
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"platform left up: MLOOP_HOME={b.settings.state.root} (stop: MLOOP_HOME=... mloop down)")


if __name__ == "__main__":
    main()

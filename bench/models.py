"""Many models on one platform: what one more model costs, and whether the loop holds with 20.

One run on a fresh platform (`mloop up` with a temporary MLOOP_HOME and free loopback ports, stopped
by pid at the end, nothing left behind). The platform grows in stages (default 1, then 5, then 20
models); each stage onboards the new datasets exactly as a user would (``mloop ingest FILE --dataset
NAME``; the triggers train, promote and deploy), waits until every champion is served, then measures:

- resident memory of the serving process tree (the BentoML arbiter and its workers: RSS and PSS),
  with every served model loaded (one request each first), and the memory added per model;
- c=32 throughput of single-record requests to ONE hot model (``/models/m00/predict``) while the
  others stay loaded, and its ratio to a 1-model service of the same tag started beside it for the
  measurement (slices interleaved, so a slow spell of the machine hits both; same route, same client:
  bench/serving.py's);
- the time of one monitoring sweep (the ``monitor-sweep/local`` deployment) over every model, each
  with a few hundred fresh predictions and their labels in its log;
- at the last stage: drift event -> new version answering for one model (m00) while all are served,
  measured as bench/loop.py does (drifted traffic with labels, one monitor run, the drift event's
  server timestamp is t0, poll ``GET /models/m00`` until a new version answers); every other model
  keeps its version.

The datasets come from the demo generator with a different seed per model, alternating
classification and regression, and feature counts cycling through 3..14; m00 is the demo's own
shape (classification, all 14 features), so its drifted traffic retrains into a better model.

Goals (issue 12, 2-core 24 GiB machine): 20 models served within 4 GiB; hot-model throughput with
20 loaded >= 0.9 x the single-model figure; a sweep of 20 models <= 60 s; drift event -> new
version answering <= 60 s with 20 models served. Each is printed with PASS/FAIL.

Usage: ``python bench/models.py [--stages 1,5,20] [--rows 2000] [--hot-rows 3000] [--traffic 300] [--requests 3000]
[--ingest-concurrency 1] [--keep]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_platform, drift_event, settle, ts
from bench.serving import _load
from bench.serving_models import tree_memory
from mloop.core.generate import FEATURE_ORDER, MIN_FEATURES, generate, write_frame
from mloop.core.processes import free_port, read_pid, stop_pid
from tests.platform.helpers import Platform, drifted_traffic, records, wait_for

HOT = "m00"
GIB = 1024**3
MIB = 1024**2
DRIFT_TRAFFIC = 2000
SWEEP = "monitor-sweep/local"


# ----------------------------------------------------------------------------- the fleet (pure)


@dataclass(frozen=True)
class ModelPlan:
    """One bench model: its dataset name, generator seed, task and feature count."""

    name: str
    seed: int
    task: str
    features: int


def fleet_plan(count: int) -> list[ModelPlan]:
    """``count`` models of different shapes: m00 is the demo's (classification, all features), then
    regression/classification alternate and the feature count cycles through 3..14."""
    plans = [ModelPlan(HOT, 1, "classification", len(FEATURE_ORDER))]
    span = len(FEATURE_ORDER) - MIN_FEATURES + 1
    for i in range(1, count):
        task = "regression" if i % 2 else "classification"
        plans.append(ModelPlan(f"m{i:02d}", 100 + i, task, MIN_FEATURES + (i * 5) % span))
    return plans


def dataset_rows(plan: ModelPlan, rows: int, hot_rows: int) -> int:
    """m00 gets ``hot_rows`` (bench/loop.py's size: its drift retrain must pass the gate's trusted holdout)."""
    return hot_rows if plan.name == HOT else rows


def frame_of(
    plan: ModelPlan, rows: int, seed: int | None = None, scenario: str = "baseline"
) -> Any:
    """The plan's dataset (or more traffic of the same population with another ``seed``)."""
    return generate(
        scenario, rows, plan.seed if seed is None else seed, task=plan.task, features=plan.features
    )


def parse_stages(text: str) -> list[int]:
    """``"1,5,20"`` -> [1, 5, 20] (strictly increasing, positive)."""
    stages = [int(x) for x in text.split(",") if x.strip()]
    if not stages or stages[0] < 1 or any(b <= a for a, b in zip(stages, stages[1:], strict=False)):
        raise argparse.ArgumentTypeError("stages must be increasing positive counts, e.g. 1,5,20")
    return stages


@dataclass(frozen=True)
class Goal:
    """One printed figure: what, its value and unit, the goal text and whether it passed."""

    what: str
    value: float
    unit: str
    goal: str
    passed: bool

    def line(self) -> str:
        return f"{self.what:<58} {self.value:10.2f} {self.unit:<6} (goal {self.goal:<12}) {'PASS' if self.passed else 'FAIL'}"


@dataclass
class Stage:
    """The figures of one stage (``models`` served)."""

    models: int
    onboard_s: float = 0.0
    ingest_s: list[float] = field(default_factory=list)
    rss_mib: float = 0.0
    pss_mib: float = 0.0
    processes: int = 0
    loaded: int = 0
    rps: float = 0.0
    rps_slices: list[float] = field(default_factory=list)
    p50_ms: float = 0.0
    errors: int = 0
    ref_rps_slices: list[float] = field(
        default_factory=list
    )  # a 1-model service, slices interleaved
    sweep_s: float | None = None
    sweep_total_s: float | None = None
    sweep_state: str = ""
    loop_s: float | None = None
    loop_detail: str = ""


def goals(stages: Sequence[Stage]) -> list[Goal]:
    """The issue's goals from the stage figures (the last stage is the "20 models" one)."""
    last = stages[-1]
    out = [
        Goal(
            f"serving RSS with {last.models} models loaded",
            last.rss_mib / 1024,
            "GiB",
            "<= 4 GiB",
            last.rss_mib <= 4 * 1024 and last.loaded == last.models,
        )
    ]
    for s in stages[1:]:
        ratio = interleaved_ratio(s)
        out.append(
            Goal(
                f"c=32 throughput to {HOT}, {s.models} loaded / 1 loaded (interleaved)",
                ratio,
                "x",
                ">= 0.9x",
                ratio >= 0.9 and s.errors == 0,
            )
        )
    if last.sweep_s is not None:
        out.append(
            Goal(
                f"monitoring sweep of {last.models} models",
                last.sweep_s,
                "s",
                "<= 60 s",
                last.sweep_s <= 60 and last.sweep_state == "COMPLETED",
            )
        )
    else:
        out.append(
            Goal(
                f"monitoring sweep of {last.models} models ({last.sweep_state})",
                float("nan"),
                "s",
                "<= 60 s",
                False,
            )
        )
    loop = last.loop_s if last.loop_s is not None else float("nan")
    out.append(
        Goal(
            f"drift event -> new {HOT} version answering, {last.models} served",
            loop,
            "s",
            "<= 60 s",
            loop <= 60,
        )
    )
    return out


def interleaved_ratio(stage: Stage) -> float:
    """Median of (platform slice / the 1-model service's slice right after it): a slow spell of the
    machine hits both sides of a pair, unlike a ratio of two stages minutes apart. Pure."""
    pairs = [m / o for m, o in zip(stage.rps_slices, stage.ref_rps_slices, strict=False) if o > 0]
    return statistics.median(pairs) if pairs else 0.0


# ----------------------------------------------------------------------------- the service over HTTP


class Service:
    """The platform's prediction service at ``/models/...`` with the bearer token (no retries)."""

    def __init__(self, p: Platform) -> None:
        self.p = p
        self.url = p.serving.url
        self.client = _client(p)

    def models(self) -> dict[str, dict[str, Any]]:
        """``GET /models``; {} while the service is down or does not answer it."""
        return self.p.serving.served_models() or {}

    def version(self, name: str) -> str | None:
        r = self.client.get(f"{self.url}/models/{name}")
        return str(r.json()["model_version"]) if r.status_code == 200 else None

    def predict(self, name: str, frame: Any) -> list[dict[str, Any]]:
        r = self.client.post(f"{self.url}/models/{name}/predict", json={"records": records(frame)})
        if r.status_code != 200:
            raise SystemExit(f"/models/{name}/predict: HTTP {r.status_code} {r.text[:300]}")
        return list(r.json())

    def traffic(self, name: str, frame: Any, batch: int = 500) -> None:
        """Predictions for ``frame`` and its true labels (``/models/<name>/feedback``)."""
        for start in range(0, len(frame), batch):
            chunk = frame.iloc[start : start + batch]
            answers = self.predict(name, chunk)
            cast: Callable[[Any], Any] = int if chunk["target"].dtype.kind in "iub" else float
            labels = [
                {"prediction_id": a["prediction_id"], "label": cast(y)}
                for a, y in zip(answers, chunk["target"], strict=True)
            ]
            r = self.client.post(f"{self.url}/models/{name}/feedback", json={"labels": labels})
            if r.status_code != 200:
                raise SystemExit(f"/models/{name}/feedback: HTTP {r.status_code} {r.text[:300]}")


def _client(p: Platform) -> Any:
    import httpx

    return httpx.Client(headers=p.auth_headers("api"), timeout=120)


# ----------------------------------------------------------------------------- measurements


def champions(p: Platform, names: Sequence[str]) -> dict[str, str | None]:
    """The champion version of each of ``names`` (None: none yet), from one registry read."""
    from serving.control.fleet import champion_versions

    found = champion_versions(p.settings)
    return {n: found.get(n) for n in names}


def onboard(
    p: Platform,
    service: Service,
    plans: Sequence[ModelPlan],
    folder: Path,
    args: argparse.Namespace,
) -> tuple[float, list[float]]:
    """``mloop ingest`` every plan's dataset (``concurrency`` at once, retried on a DVC lock clash),
    then wait until every champion answers; returns (seconds to all served, seconds per ingest)."""
    for plan in plans:
        write_frame(
            frame_of(plan, dataset_rows(plan, args.rows, args.hot_rows)),
            folder / f"{plan.name}.parquet",
        )
    t0 = time.perf_counter()

    def ingest(plan: ModelPlan) -> float:
        t = time.perf_counter()

        def attempt() -> subprocess.CompletedProcess[str]:
            return p.cli(
                "ingest", str(folder / f"{plan.name}.parquet"), "--dataset", plan.name, "--json"
            )

        out = attempt()
        for _retry in range(4):  # 5 attempts in all: a LockError is another ingest's, retried
            if out.returncode == 0 or "LockError" not in out.stderr:
                break
            time.sleep(2)
            out = attempt()
        if out.returncode == 0:
            return time.perf_counter() - t
        raise SystemExit(f"mloop ingest {plan.name} failed:\n{out.stdout}\n{out.stderr[-2000:]}")

    with ThreadPoolExecutor(args.ingest_concurrency) as pool:
        took = list(pool.map(ingest, plans))
    names = [plan.name for plan in plans]
    print(
        f"  ingested {len(plans)} in {time.perf_counter() - t0:.1f}s "
        f"(per ingest: median {statistics.median(took):.1f}s, max {max(took):.1f}s)",
        flush=True,
    )

    def all_served() -> bool:
        c = champions(p, names)
        if not all(c.values()):
            return False
        served = service.models()
        return all(str(served.get(n, {}).get("model_version")) == str(v) for n, v in c.items())

    wait_for(all_served, args.onboard_timeout, f"{len(plans)} new champions to be served", every=3)
    elapsed = time.perf_counter() - t0
    for flow, key in (("train", "dataset"), ("deploy", "name")):
        runs, waits = flow_times(p, flow, key, set(names))
        if runs:
            print(
                f"  {flow} runs: {len(runs)}, run time median {statistics.median(runs):.1f}s max {max(runs):.1f}s; "
                f"created -> running median {statistics.median(waits):.1f}s max {max(waits):.1f}s",
                flush=True,
            )
    return elapsed, took


def flow_times(
    p: Platform, flow: str, key: str, names: set[str]
) -> tuple[list[float], list[float]]:
    """Run times and created -> running waits of the finished ``flow`` runs whose parameter ``key`` is in ``names``."""
    runs, waits = [], []
    for r in p.prefect.flow_runs(flow):
        if str(r["parameters"].get(key)) in names and r.get("start_time") and r.get("end_time"):
            runs.append(ts(r["end_time"]) - ts(r["start_time"]))
            waits.append(ts(r["start_time"]) - ts(r["created"]))
    return runs, waits


def memory(p: Platform) -> tuple[float, float, int]:
    """(RSS MiB, PSS MiB, processes) of the serving process tree (``serve.pid`` and its workers)."""
    pid = read_pid(p.settings.state.run, "serve")
    if pid is None:
        raise SystemExit("no serve.pid: the prediction service is not running")
    return tree_memory(pid)


def throughput(
    p: Platform,
    plan: ModelPlan,
    requests: int,
    slices: int,
    concurrency: int = 32,
    reference_port: int | None = None,
) -> tuple[list[float], float, int, list[float]]:
    """c=``concurrency`` single-record requests to ``/models/<plan>/predict``: (rps per slice, p50 ms,
    errors, rps per slice of the service on ``reference_port`` (each run right after the platform's
    slice; empty without one))."""
    bodies = [
        json.dumps({"records": [r]}).encode()
        for r in records(frame_of(plan, 200, seed=plan.seed + 5000))
    ]
    path = f"/models/{plan.name}/predict"
    token = p.token
    ports = [p.settings.serve_port] + ([reference_port] if reference_port else [])
    for port in ports:
        asyncio.run(
            _load("127.0.0.1", port, bodies, concurrency, max(200, requests // 10), token, path)
        )  # warm-up
    rps, ref_rps, latencies, errors = [], [], [], 0
    for _ in range(slices):
        r = asyncio.run(
            _load("127.0.0.1", ports[0], bodies, concurrency, requests // slices, token, path)
        )
        rps.append(len(r["latencies"]) / r["wall"])
        latencies += r["latencies"]
        errors += r["errors"]
        if reference_port:
            ref = asyncio.run(
                _load(
                    "127.0.0.1",
                    reference_port,
                    bodies,
                    concurrency,
                    requests // slices,
                    token,
                    path,
                )
            )
            ref_rps.append(len(ref["latencies"]) / ref["wall"])
            errors += ref["errors"]
    return rps, 1000 * statistics.median(latencies), errors, ref_rps


def one_model_service(p: Platform, name: str, folder: Path) -> tuple[int, int]:
    """A second prediction service serving only ``name``'s current tag (same MLOOP_HOME, token and
    BentoML store), on a free port: the 1-model side of the interleaved throughput ratio. (pid, port)."""
    from serving.control.process_spec import start_service

    tag = str(Service(p).models()[name]["bentoml_tag"])
    port = free_port()
    run_dir = folder / "one-model-run"
    run_dir.mkdir(exist_ok=True)
    svc = start_service(p.settings, tag, port=port, name="bench-one-model", run_dir=run_dir)
    return svc.pid, port


def sweep(p: Platform) -> tuple[float | None, float | None, str]:
    """One run of the monitoring sweep deployment: (run time, created -> end, final state)."""
    import httpx

    try:
        run_id = p.prefect.run_deployment(SWEEP, {})
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            return None, None, f"{SWEEP} not deployed"
        raise
    run = p.prefect.wait_run(run_id, 900)
    if not run.get("start_time") or not run.get("end_time"):
        return None, None, run["state_type"]
    return (
        ts(run["end_time"]) - ts(run["start_time"]),
        ts(run["end_time"]) - ts(run["created"]),
        run["state_type"],
    )


def loop_latency(p: Platform, service: Service) -> tuple[float | None, str]:
    """Drifted traffic with labels to m00, one monitor run: seconds from the drift event to a new m00
    version answering (None when the retrain promoted nothing), and a breakdown. Raises SystemExit
    when another model's version changed."""
    # Measured on an idle platform: what the sweeps started (retrains of models they found drifted, their
    # deploys) ends first, and m00 has no cooldown left from such a retrain.
    waited = settle(p)
    out = p.cli("monitor", "configure", HOT, "--cooldown-minutes", "0", "--daily-budget", "100")
    if out.returncode != 0:
        raise SystemExit(f"mloop monitor configure {HOT}: {out.stdout}\n{out.stderr}")
    print(f"  (waited {waited:.0f} s for the sweeps' retrains and deploys to end)", flush=True)
    others_before = {n: str(m["model_version"]) for n, m in service.models().items() if n != HOT}
    v_before = service.version(HOT)
    service.traffic(HOT, drifted_traffic(DRIFT_TRAFFIC, 7))
    retrains_before = {r["id"] for r in p.prefect.flow_runs("retrain")}
    since = time.time()
    p.prefect.run_deployment("monitor/local", {"model_name": HOT, "window_size": DRIFT_TRAFFIC})
    event = wait_for(
        lambda: (e := drift_event(p, HOT)) and ts(e["occurred"]) >= since - 5 and e,
        300,
        f"the drift event of {HOT}",
        every=0.2,
    )
    t0 = ts(event["occurred"])
    run = wait_for(
        lambda: next(
            (
                r
                for r in p.prefect.flow_runs("retrain")
                if r["id"] not in retrains_before
                and str(r["parameters"].get("model_name", "")).endswith(HOT)
            ),
            None,
        ),
        120,
        f"the retrain run of {HOT}",
        every=0.2,
    )

    def answered() -> tuple[float, str | None] | None:
        if (v := service.version(HOT)) and v != v_before:
            return time.time(), v
        ended = p.prefect.flow_run(run["id"])
        if (
            ended["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
            and champions(p, [HOT])[HOT] == v_before
        ):
            return (
                time.time(),
                None,
            )  # the retrain ended without a new champion: nothing new will answer
        return None

    seen = wait_for(answered, 600, f"a new {HOT} version to answer", every=0.2)
    finished = p.prefect.wait_run(run["id"], 600)
    if seen[1] is None:
        return None, (
            f"the retrain run ended {finished['state_type']} without a new champion; its summary: "
            + retrain_summary(p, HOT)
        )
    detail = (
        f"v{v_before} -> v{seen[1]}; event -> retrain running {ts(finished['start_time']) - t0:.1f} s, retrain run "
        f"{ts(finished['end_time']) - ts(finished['start_time']):.1f} s, retrain end -> answering "
        f"{seen[0] - ts(finished['end_time']):.1f} s"
    )
    others_after = {n: str(m["model_version"]) for n, m in service.models().items() if n != HOT}
    if others_after != others_before:
        changed = {n for n in others_before if others_after.get(n) != others_before[n]}
        raise SystemExit(
            f"the drift retrain of {HOT} changed other models' versions: {sorted(changed)}"
        )
    return seen[0] - t0, detail + f"; the other {len(others_after)} models kept their versions"


def retrain_summary(p: Platform, name: str) -> str:
    """The newest retrain artifact of ``name`` (why a retrain promoted nothing: cooldown, budget, gate), one line."""
    from mloop.core.artifacts import artifact_key

    found = p.prefect._json(
        "POST",
        "/artifacts/filter",
        {
            "artifacts": {"key": {"any_": [artifact_key("retrain", name)]}},
            "sort": "CREATED_DESC",
            "limit": 1,
        },
    )
    text = str(found[0].get("data") or "") if found else "no retrain artifact"
    return " ".join(text.split())[:600]


def touch_all(service: Service, plans: Sequence[ModelPlan]) -> int:
    """One request per model (loads any unloaded one); returns how many models report ``loaded``."""
    for plan in plans:
        service.predict(plan.name, frame_of(plan, 1, seed=plan.seed + 7000))
    return sum(1 for m in service.models().values() if m.get("loaded"))


# ----------------------------------------------------------------------------- the run


def run_stage(
    p: Platform,
    service: Service,
    plans: list[ModelPlan],
    new: list[ModelPlan],
    folder: Path,
    args: argparse.Namespace,
    last: bool,
) -> Stage:
    stage = Stage(models=len(plans))
    print(
        f"\n== {len(plans)} model(s): onboarding {len(new)} ({', '.join(f'{x.name}:{x.task[:3]}/{x.features}f' for x in new)})",
        flush=True,
    )
    stage.onboard_s, stage.ingest_s = onboard(p, service, new, folder, args)
    print(
        f"  all {len(plans)} served; onboarding {len(new)} took {stage.onboard_s:.1f}s", flush=True
    )
    # Fresh labelled predictions for the new models (the sweep checks every model with enough rows).
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda x: service.traffic(x.name, frame_of(x, args.traffic, seed=x.seed + 1000)),
                new,
            )
        )
    stage.loaded = touch_all(service, plans)
    time.sleep(2)  # let the service settle after the loads
    stage.rss_mib, stage.pss_mib, stage.processes = memory(p)
    print(
        f"  serving tree: {stage.processes} processes, RSS {stage.rss_mib:.0f} MiB, PSS {stage.pss_mib:.0f} MiB, "
        f"{stage.loaded}/{len(plans)} loaded",
        flush=True,
    )
    ref_pid, ref_port = one_model_service(p, HOT, folder) if len(plans) > 1 else (None, None)
    try:
        stage.rps_slices, stage.p50_ms, stage.errors, stage.ref_rps_slices = throughput(
            p, plans[0], args.requests, args.slices, reference_port=ref_port
        )
    finally:
        if ref_pid is not None:
            stop_pid(ref_pid)
    stage.rps = statistics.median(stage.rps_slices)
    loaded_after = sum(1 for m in service.models().values() if m.get("loaded"))
    print(
        f"  c=32 to {HOT}: {stage.rps:.0f} req/s (slices {', '.join(f'{x:.0f}' for x in stage.rps_slices)}), "
        f"p50 {stage.p50_ms:.1f} ms, {stage.errors} errors; {loaded_after}/{len(plans)} still loaded",
        flush=True,
    )
    if stage.ref_rps_slices:
        print(
            f"  the same load to a 1-model service, interleaved: slices {', '.join(f'{x:.0f}' for x in stage.ref_rps_slices)} "
            f"req/s; ratio {len(plans)} loaded / 1 loaded {interleaved_ratio(stage):.2f}x",
            flush=True,
        )
    stage.sweep_s, stage.sweep_total_s, stage.sweep_state = sweep(p)
    if stage.sweep_s is not None:
        print(
            f"  monitoring sweep: {stage.sweep_s:.1f}s run ({stage.sweep_total_s:.1f}s from creation), {stage.sweep_state}",
            flush=True,
        )
    else:
        print(f"  monitoring sweep: {stage.sweep_state}", flush=True)
    if last:
        stage.loop_s, stage.loop_detail = loop_latency(p, service)
        took = f"{stage.loop_s:.1f}s" if stage.loop_s is not None else "no new version"
        print(
            f"  drift event -> new {HOT} version answering: {took} ({stage.loop_detail})",
            flush=True,
        )
    return stage


def report(stages: Sequence[Stage]) -> None:
    first = stages[0]
    print(
        "\n| models | onboarding (new ones) | serving RSS MiB | PSS MiB | added RSS MiB/model | c=32 rps to hot "
        "| ratio | sweep s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for s in stages:
        per_model = (
            f"{(s.rss_mib - first.rss_mib) / (s.models - first.models):.1f}"
            if s.models > first.models
            else "-"
        )
        sweep_s = f"{s.sweep_s:.1f}" if s.sweep_s is not None else "-"
        print(
            f"| {s.models} | {s.onboard_s:.0f} s | {s.rss_mib:.0f} | {s.pss_mib:.0f} | {per_model} | {s.rps:.0f} | "
            f"{s.rps / first.rps if first.rps else 0:.2f}x | {sweep_s} |"
        )
    print()
    for g in goals(stages):
        print(g.line())


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    ap.add_argument(
        "--stages",
        type=parse_stages,
        default=parse_stages("1,5,20"),
        help="Model counts, increasing.",
    )
    ap.add_argument(
        "--rows", type=int, default=2000, help="Rows of each model's dataset (but m00's)."
    )
    ap.add_argument(
        "--hot-rows",
        type=int,
        default=3000,
        help="Rows of m00's dataset (the drifted model, as bench/loop.py).",
    )
    ap.add_argument(
        "--traffic", type=int, default=300, help="Labelled predictions per model before the sweep."
    )
    ap.add_argument(
        "--requests",
        type=int,
        default=3000,
        help="Requests of the c=32 throughput run (in slices).",
    )
    ap.add_argument(
        "--slices", type=int, default=6, help="Throughput slices (the median slice is the figure)."
    )
    ap.add_argument(
        "--ingest-concurrency",
        type=int,
        default=1,
        help="Parallel `mloop ingest` commands (the DVC repo lock serializes them anyway).",
    )
    ap.add_argument(
        "--onboard-timeout",
        type=float,
        default=1800,
        help="Seconds to wait for a stage's champions.",
    )
    ap.add_argument(
        "--keep", action="store_true", help="Leave the platform up and the temp folder in place."
    )
    args = ap.parse_args()

    plans = fleet_plan(args.stages[-1])
    stages: list[Stage] = []
    with bench_platform("mloop-bench-models-", keep=args.keep) as (p, root):
        service = Service(p)
        done = 0
        for count in args.stages:
            last = count == args.stages[-1]
            stages.append(
                run_stage(p, service, plans[:count], plans[done:count], root, args, last=last)
            )
            done = count
        report(stages)
    if any(not g.passed for g in goals(stages)):
        raise SystemExit(1)


if __name__ == "__main__":
    main()

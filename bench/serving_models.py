"""Benchmark: what one more model costs in ONE prediction service process (issue 12, serving level).

In one run, on loopback, stopped by pid at the end:

1. ``--models`` (default 20) models packaged from the demo generator with different seeds, tasks
   (classification and regression, alternating) and shapes (3 to 14 features), like the platform
   packages champions (ONNX);
2. service ``many``: started with the hot model only; RSS of its process tree (the ``bentoml serve``
   arbiter and its worker) with 1 model loaded, then with 5 and with 20, each model added by
   ``/admin/rollout`` and used once (so it is loaded): added MB per model;
3. service ``one``: the hot model alone, for the throughput reference;
4. c=32 throughput (and c=1 p50) of ``POST /models/<hot>/predict`` on ``one`` and on ``many`` (20
   loaded), in alternating slices (a slow spell of the machine hits both): ratio many / one.

Goals (PASS/FAIL): throughput with 20 loaded >= 0.9 x with 1; the serving tree with 20 models
<= 4 GiB; zero errors. ``bench/models.py`` (the full platform) may import :func:`package_models`
and :func:`tree_rss_mb`.

Usage: ``python bench/serving_models.py [--models 20] [--n32 4000] [--slices 8]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serving import Target, load, pooled  # noqa: E402 - after the sys.path insert that makes the project importable
from mloop.core.processes import ServiceProcess, free_port, process_tree, stop_pid  # noqa: E402 - after the sys.path insert that makes the project importable
from mloop.core.settings import Settings  # noqa: E402 - after the sys.path insert that makes the project importable

if TYPE_CHECKING:
    from serving.bundle.package import PackagedModel

GOAL_RATIO = 0.9
GOAL_TREE_MB = 4096
STEPS = (1, 5, 20)


@dataclass(frozen=True)
class Packaged:
    name: str
    tag: str
    task: str
    features: int
    bodies: list[bytes]  # single-record request bodies


def shape(i: int) -> tuple[str, int]:
    """(task, features) of the i-th model: alternating tasks, 3 to 14 features. Pure."""
    return ("classification" if i % 2 == 0 else "regression"), 3 + (i * 5) % 12


def package_models(settings: Settings, n: int, rows: int = 3000) -> list[Packaged]:
    """``n`` demo-generator models (``m00``, ``m01``...) packaged into ``settings``' BentoML store."""
    from tests.serving.helpers import package_generated

    out = []
    for i in range(n):
        task, features = shape(i)
        gen = package_generated(
            settings, f"m{i:02d}", task=task, features=features, seed=100 + i, rows=rows
        )
        packaged = cast("PackagedModel", gen.model)  # typed `object` in the test helper
        bodies = [json.dumps({"records": [rec]}).encode() for rec in gen.records]
        out.append(
            Packaged(gen.contract.name, packaged.model_tag, gen.contract.task, features, bodies)
        )
        print(
            f"packaged {packaged.model_tag}: {gen.contract.task}, {features} features, {packaged.backend}",
            flush=True,
        )
    return out


def tree_memory(pid: int) -> tuple[float, float, int]:
    """(RSS MiB, PSS MiB, processes) of ``pid``'s process tree (:func:`mloop.core.processes.process_tree`:
    the ``bentoml serve`` arbiter and its workers); a process gone meanwhile counts as nothing."""
    rss = pss = 0
    tree = process_tree(pid)
    for proc in tree:
        try:
            info = proc.memory_full_info()
        except Exception:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss / 2**20, pss / 2**20, len(tree)


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MB."""
    return tree_memory(pid)[0]


def settle_rss(pid: int, seconds: float = 3.0) -> float:
    """The tree's RSS after ``seconds`` of quiet (the highest of a few samples)."""
    samples = []
    for _ in range(3):
        time.sleep(seconds / 3)
        samples.append(tree_rss_mb(pid))
    return max(samples)


def use(url: str, token: str | None, model: Packaged) -> None:
    import httpx

    resp = httpx.post(
        f"{url}/models/{model.name}/predict",
        content=model.bodies[0],
        timeout=60,
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    resp.raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", type=int, default=20, help="models in the many-model service (at least 5)"
    )
    parser.add_argument("--n1", type=int, default=400, help="requests at concurrency 1")
    parser.add_argument("--n32", type=int, default=4000, help="requests at concurrency 32")
    parser.add_argument("--slices", type=int, default=8, help="turns each service takes")
    parser.add_argument(
        "--keep", type=Path, default=None, help="work folder to keep (default: temporary)"
    )
    args = parser.parse_args()
    from serving.control.process_spec import start_service
    from serving.control.rollout_client import rollout

    n = max(5, args.models)
    steps = [s for s in STEPS if s < n] + [n]
    work = args.keep or Path(tempfile.mkdtemp(prefix="mloop-bench-models-"))
    work.mkdir(parents=True, exist_ok=True)
    procs: list[ServiceProcess] = []
    try:
        settings = Settings(home=work / "home", project_dir=work)
        settings.state.ensure()
        token = settings.bearer_token()
        t0 = time.perf_counter()
        models = package_models(settings, n)
        print(f"packaged {n} models in {time.perf_counter() - t0:.0f} s")
        hot = models[0]
        many = start_service(
            settings, hot.tag, port=free_port(), name="bench-many", MLOOP_SERVE_MEMORY_MB="0"
        )
        procs.append(many)
        use(many.url, token, hot)
        rss: dict[int, float] = {1: settle_rss(many.pid)}
        loaded = 1
        for step in steps[1:]:
            t1 = time.perf_counter()
            for model in models[loaded:step]:
                rollout(many.url, model.tag, token=token)
                use(many.url, token, model)
            loaded = step
            rss[step] = settle_rss(many.pid)
            print(
                f"{step} models loaded: serving tree {rss[step]:.0f} MB (added {step - steps[steps.index(step) - 1]} "
                f"models in {time.perf_counter() - t1:.1f} s)",
                flush=True,
            )
        one = start_service(settings, hot.tag, port=free_port(), name="bench-one")
        procs.append(one)
        path = f"/models/{hot.name}/predict"
        targets = {
            "one": Target(one, int(one.url.rsplit(":", 1)[1]), hot.bodies, path),
            "many": Target(many, int(many.url.rsplit(":", 1)[1]), hot.bodies, path),
        }
        for name, target in targets.items():
            warm = load(target, 8, 400, token)
            if warm["errors"]:
                print(
                    f"warning: {name} answered {warm['errors']} of 400 warm-up requests with an error"
                )
        slices = max(1, args.slices)
        parts: dict[str, dict[str, list[dict[str, Any]]]] = {
            k: {"c1": [], "c32": []} for k in targets
        }
        for k in range(slices):
            order = list(targets) if k % 2 == 0 else list(reversed(targets))
            for name in order:
                parts[name]["c1"].append(load(targets[name], 1, max(1, args.n1 // slices), token))
                parts[name]["c32"].append(
                    load(targets[name], 32, max(32, args.n32 // slices), token)
                )
        results = {name: {c: pooled(ps) for c, ps in d.items()} for name, d in parts.items()}
        ratios = sorted(
            (len(m["latencies"]) / m["wall"]) / (len(o["latencies"]) / o["wall"])
            for m, o in zip(parts["many"]["c32"], parts["one"]["c32"], strict=True)
        )
        report(rss, results, ratios, n)
    finally:
        for proc in procs:
            stop_pid(proc.pid, first=15)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def goals(
    rss: dict[int, float], r: dict[str, dict[str, Any]], n: int
) -> list[tuple[str, float, bool]]:
    """(label, value, met) of every goal. Pure."""
    ratio = r["many"]["c32"]["rps"] / r["one"]["c32"]["rps"]
    errors = sum(m["errors"] for runs in r.values() for m in runs.values())
    return [
        (
            f"c=32 throughput to the hot model, {n} loaded / 1 loaded (goal >= {GOAL_RATIO})",
            ratio,
            ratio >= GOAL_RATIO,
        ),
        (
            f"serving tree RSS with {n} models, MB (goal <= {GOAL_TREE_MB})",
            rss[n],
            rss[n] <= GOAL_TREE_MB,
        ),
        ("errors (goal 0)", float(errors), errors == 0),
    ]


def report(
    rss: dict[int, float], r: dict[str, dict[str, Any]], ratios: list[float], n: int
) -> None:
    print(f"\n{'models loaded':>14} {'tree RSS MB':>12} {'added MB/model':>15}")
    base = rss[1]
    for step, mb in rss.items():
        per = (mb - base) / (step - 1) if step > 1 else float("nan")
        print(f"{step:>14} {mb:>12.0f} {per:>15.1f}")
    print(
        f"\n{'service':<8} {'c':>3} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}"
    )
    for name, runs in r.items():
        for c, m in runs.items():
            print(
                f"{name:<8} {c[1:]:>3} {m['requests']:>8} {m['errors']:>6} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} {m['rps']:>8.0f}"
            )
    print(
        f"per-slice c=32 many/one: min {ratios[0]:.3f}, median {statistics.median(ratios):.3f}, max {ratios[-1]:.3f}\n"
    )
    for label, value, ok in goals(rss, r, n):
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {value:.3f}")
    print(json.dumps({"rss_mb": rss, "results": r}, default=float))


if __name__ == "__main__":
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    main()

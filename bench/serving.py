"""Benchmark: mloop's prediction service vs BentoML's floor, `mlflow models serve` and a naive FastAPI service.

In one run, on loopback, all started together and stopped by pid at the end:

- ``mloop``: ``bentoml serve serving.api.bento:PredictionService`` with a demo-like champion (the
  demo generator's baseline data, the models helper's pipeline factory, logistic regression by
  default), packaged by ``serving.bundle.package`` (ONNX), prediction log ON with its write-ahead journal
  (every answered batch is written to the journal before the answer leaves), secure defaults (bearer
  token on /predict, Host allowlist, body limit: every service is sent the same token header);
- ``mloop-nolog``: the same with the prediction log off (MLOOP_PREDICTION_LOG=0): the logging cost;
- ``floor``: a BentoML service that parses the same body and returns a constant;
- ``mlflow``: ``mlflow models serve --env-manager local`` of the same fitted pipeline (saved as an
  MLflow model in the work folder, ``predict_proba`` as its pyfunc), one worker, bound to 127.0.0.1,
  sent the same single record as ``{"dataframe_records": [...]}`` on ``/invocations``;
- ``naive``: uvicorn + FastAPI + the same sklearn pipeline, one DataFrame per request;
- ``mloop-nojournal``, ``mloop-nobatch``, ``mloop-unbounded`` (only with ``--only``): mloop with
  the journal off (MLOOP_PREDLOG_JOURNAL=0), with adaptive batching off (MLOOP_BATCHING=0), without
  the batching-wait bound (serving/api/batching.py).

One load generator (a minimal asyncio HTTP/1.1 keep-alive client, so the client's own CPU cost
stays small on 2 cores) sends single-record requests (varied holdout rows) at concurrency 1 and 32,
with bounded request counts, after a warm-up. The machine is noisy, so the requests are sent in
``--slices`` short slices and the services take turns slice by slice (order rotated): a slow
spell of the machine hits every service, not one. Each figure pools all slices; the spread of the
per-slice mloop/floor ratio is printed too. Prints p50, p99, throughput, errors and the ratios.

Goals (PASS/FAIL each): c=32 throughput(mloop) >= 0.85 x floor; c=1 p50(mloop) <= p50(floor) +
0.30 ms; logging cost (nolog - mloop) / nolog <= 10% at c=32; mloop >= 3 x mlflow at c=32;
mloop >= 1.75 x naive at c=32; zero errors.

Usage: ``python bench/serving.py [--model logistic_regression] [--n1 1000] [--n32 6000] [--slices 10]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mloop.core.processes import ServiceProcess, free_port, start_process, stop_pid  # noqa: E402 - after the sys.path insert that makes the project importable
from mloop.core.settings import Settings  # noqa: E402 - after the sys.path insert that makes the project importable

NAME = "loans"


# ----------------------------------------------------------------------------- load generator


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = None
    chunked = False
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        key = key.strip().lower()
        if key == b"content-length":
            length = int(value.strip())
        elif key == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if length is not None:
        await reader.readexactly(length)
    elif chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


def _request(
    host: str, port: int, body: bytes, token: str | None = None, path: str = "/predict"
) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode() + body


async def _load(
    host: str,
    port: int,
    bodies: list[bytes],
    concurrency: int,
    total: int,
    token: str | None = None,
    path: str = "/predict",
) -> dict[str, Any]:
    requests = [_request(host, port, b, token, path) for b in bodies]
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in counter:
                t0 = time.perf_counter()
                try:
                    writer.write(requests[i % len(requests)])
                    status = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    errors += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return {"requests": total, "errors": errors, "latencies": latencies, "wall": wall}


@dataclass(frozen=True)
class Target:
    """A running service under test: where to send, what (its request bodies) and which path."""

    proc: ServiceProcess
    port: int
    bodies: list[bytes]
    path: str = "/predict"


def load(target: Target, concurrency: int, total: int, token: str | None = None) -> dict[str, Any]:
    """Send ``total`` requests at ``concurrency``; every service gets the same records (in its own
    request shape) and the bearer token (mloop requires it on /predict; the others ignore it)."""
    return asyncio.run(
        _load("127.0.0.1", target.port, target.bodies, concurrency, total, token, target.path)
    )


def pooled(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """p50, p99 and throughput over several slices (all latencies; answered requests / time spent)."""
    lat = sorted(x for p in parts for x in p["latencies"])
    wall = sum(p["wall"] for p in parts)
    return {
        "requests": sum(p["requests"] for p in parts),
        "errors": sum(p["errors"] for p in parts),
        "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"),
        "rps": len(lat) / wall if wall else 0.0,
    }


# ----------------------------------------------------------------------------- setup


@dataclass(frozen=True)
class Prepared:
    settings: Settings
    records: list[dict[str, Any]]  # one JSON-ready request record per holdout row
    skops_path: Path
    contract_path: Path
    mlflow_model: Path

    def bodies(self, key: str = "records") -> list[bytes]:
        """Single-record request bodies ``{key: [record]}``."""
        return [json.dumps({key: [rec]}).encode() for rec in self.records]


def save_mlflow_model(pipe: Any, frame: Any, path: Path) -> Path:
    """The fitted pipeline as an MLflow model (the same object mloop packages; pyfunc = predict_proba,
    signature inferred from the model input frame so MLflow converts the JSON records to its types)."""
    import mlflow.sklearn as mlflow_sklearn
    from mlflow.models import infer_signature

    from models.pipeline import TRUSTED_TYPES
    from models.tracking import SERIALIZATION  # as the training flow saves models

    signature = infer_signature(frame, pipe.predict_proba(frame))
    mlflow_sklearn.save_model(
        pipe,
        str(path),
        serialization_format=SERIALIZATION,
        skops_trusted_types=TRUSTED_TYPES,
        signature=signature,
        pyfunc_predict_fn="predict_proba",
    )
    return path


def prepare(work: Path, model: str, rows: int) -> Prepared:
    """Demo-like champion packaged in ``work``; request records; skops + contract for the naive app;
    the same pipeline as an MLflow model for ``mlflow models serve``."""
    import skops.io as sio
    from threadpoolctl import threadpool_limits

    from mloop.core.contract import infer_contract
    from mloop.core.generate import generate
    from models.pipeline import build_pipeline, prepare_features
    from models.spec import ModelSpec
    from models.split import split_dataset
    from serving.bundle.onnx_model import columns_from_frame
    from serving.bundle.package import package_pipeline

    settings = Settings(home=work / "home", project_dir=work)
    settings.state.ensure()
    df = generate("baseline", rows=rows, seed=11)
    contract = infer_contract(df, name=NAME, target="target", time_column="event_time")
    train, hold = split_dataset(df, contract)
    pipe = build_pipeline(contract, ModelSpec.model_validate({"estimator": model}))  # checked
    with threadpool_limits(1):
        pipe.fit(prepare_features(train, contract), train[contract.target].to_numpy())
    packaged = package_pipeline(
        settings,
        name=NAME,
        version="1",
        pipeline=pipe,
        contract=contract,
        holdout=hold,
        build=False,
    )
    print(
        f"packaged {packaged.model_tag}: backend {packaged.backend}, max |onnx-sklearn| {packaged.onnx_max_abs_diff}"
    )
    names = [c.name for c in contract.feature_columns]
    cols = columns_from_frame(hold.head(500), names)
    kinds = {c.name: c.kind for c in contract.feature_columns}
    recs = []
    for i in range(len(cols[names[0]])):
        rec = {}
        for n in names:
            v = cols[n][i]
            if v is not None and kinds[n] == "integer":
                v = int(v)
            elif v is not None and kinds[n] == "numeric":
                v = float(v)
            elif v is not None and kinds[n] == "boolean":
                v = bool(v)
            elif v is not None and kinds[n] in ("categorical", "datetime"):
                v = str(v)
            rec[n] = v
        recs.append(rec)
    skops_path = work / "pipeline.skops"
    sio.dump(pipe, skops_path)
    contract_path = work / "contract.json"
    contract_path.write_text(contract.model_dump_json())
    mlflow_model = save_mlflow_model(
        pipe, prepare_features(train.head(200), contract), work / "mlflow-model"
    )
    return Prepared(settings, recs, skops_path, contract_path, mlflow_model)


def start_mloop(
    settings: Settings, log_on: bool, batching: bool = True, **env: str
) -> tuple[ServiceProcess, int]:
    from serving.control.process_spec import start_service

    port = free_port()
    proc = start_service(
        settings,
        f"{NAME}:v1",
        port=port,
        name=f"bench-mloop-{port}",
        log_predictions=log_on,
        MLOOP_BATCHING="1" if batching else "0",
        **env,  # pyright: ignore[reportArgumentType]  # why: env holds MLOOP_* variables, never run_dir or timeout
    )
    return proc, port


def start_floor(run_dir: Path) -> tuple[ServiceProcess, int]:
    from serving.control.process_spec import serve_argv

    port = free_port()
    proc = start_process(
        f"bench-floor-{port}",
        serve_argv("127.0.0.1", port, service="bench.serving_apps:FloorService"),
        run_dir=run_dir,
        env={
            "PYTHONPATH": str(ROOT),
            "BENTOML_DO_NOT_TRACK": "true",
            "BENTOML_HOME": str(run_dir / "bentoml"),
        },
        cwd=ROOT,
        ready_url=f"http://127.0.0.1:{port}/readyz",
        timeout=120,
    )
    return proc, port


def start_mlflow(run_dir: Path, model_path: Path) -> tuple[ServiceProcess, int]:
    """``mlflow models serve`` of the saved model: local environment, one worker, loopback only."""
    port = free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    head = [str(mlflow_cli)] if mlflow_cli.exists() else [sys.executable, "-m", "mlflow"]
    argv = [
        *head,
        "models",
        "serve",
        "-m",
        str(model_path),
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        "1",
    ]
    proc = start_process(
        f"bench-mlflow-{port}",
        argv,
        run_dir=run_dir,
        env={
            "OMP_NUM_THREADS": "1",
            "MLFLOW_TRACKING_URI": f"file://{run_dir / 'mlruns'}",
            # mlflow runs `uvicorn` by name: this interpreter's scripts first on PATH
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        },
        cwd=run_dir,
        ready_url=f"http://127.0.0.1:{port}/ping",
        timeout=180,
    )
    return proc, port


def start_naive(run_dir: Path, skops_path: Path, contract_path: Path) -> tuple[ServiceProcess, int]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "bench.serving_apps:naive_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    proc = start_process(
        f"bench-naive-{port}",
        argv,
        run_dir=run_dir,
        env={
            "PYTHONPATH": str(ROOT),
            "BENCH_PIPELINE": str(skops_path),
            "BENCH_CONTRACT": str(contract_path),
            "OMP_NUM_THREADS": "1",
        },
        cwd=ROOT,
        ready_url=f"http://127.0.0.1:{port}/docs",
        timeout=120,
    )
    return proc, port


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="logistic_regression", help="estimator of the champion")
    parser.add_argument(
        "--rows", type=int, default=20000, help="rows of the generated training data"
    )
    parser.add_argument("--n1", type=int, default=1000, help="requests at concurrency 1")
    parser.add_argument("--n32", type=int, default=6000, help="requests at concurrency 32")
    parser.add_argument(
        "--keep", type=Path, default=None, help="work folder to keep (default: temporary)"
    )
    parser.add_argument(
        "--only",
        default="floor,mloop,mloop-nolog,mlflow,naive",
        help="comma-separated services to run",
    )
    parser.add_argument(
        "--slices", type=int, default=10, help="turns each service takes (requests split evenly)"
    )
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="mloop-bench-serving-"))
    work.mkdir(parents=True, exist_ok=True)
    services: dict[str, Target] = {}
    try:
        prep = prepare(work, args.model, args.rows)
        settings = prep.settings
        token = (
            settings.bearer_token()
        )  # the generated platform secret of the work folder's MLOOP_HOME
        run_dir = settings.state.run
        bodies, mlflow_bodies = prep.bodies(), prep.bodies("dataframe_records")

        def target(
            started: tuple[ServiceProcess, int], shape: list[bytes] = bodies, path: str = "/predict"
        ) -> Target:
            return Target(started[0], started[1], shape, path)

        starters = {
            "floor": lambda: target(start_floor(run_dir)),
            "mloop": lambda: target(start_mloop(settings, True)),
            "mloop-nolog": lambda: target(start_mloop(settings, False)),
            "mloop-nojournal": lambda: target(
                start_mloop(settings, True, MLOOP_PREDLOG_JOURNAL="0")
            ),
            "mloop-nobatch": lambda: target(start_mloop(settings, True, batching=False)),
            "mloop-unbounded": lambda: target(
                start_mloop(settings, True, MLOOP_BATCH_WAIT_BOUND="0")
            ),
            "mlflow": lambda: target(
                start_mlflow(run_dir, prep.mlflow_model), mlflow_bodies, "/invocations"
            ),
            "naive": lambda: target(start_naive(run_dir, prep.skops_path, prep.contract_path)),
        }
        chosen = [n for n in args.only.split(",") if n in starters]
        for name in chosen:
            services[name] = starters[name]()
            warm = load(
                services[name], 8, 400, token
            )  # warm-up (and BentoML's batching optimizer training)
            if warm["errors"]:
                print(
                    f"warning: {name} answered {warm['errors']} of 400 warm-up requests with an error"
                )
        slices = max(1, args.slices)
        n1, n32 = max(1, args.n1 // slices), max(32, args.n32 // slices)
        parts: dict[str, dict[str, list[dict[str, Any]]]] = {
            n: {"c1": [], "c32": []} for n in chosen
        }
        for k in range(slices):
            for name in (
                chosen[k % len(chosen) :] + chosen[: k % len(chosen)]
            ):  # rotate: no fixed slot
                parts[name]["c1"].append(load(services[name], 1, n1, token))
                parts[name]["c32"].append(load(services[name], 32, n32, token))
            print(
                f"slice {k + 1}/{slices}: "
                + ", ".join(
                    f"{n} c32 {len(parts[n]['c32'][-1]['latencies']) / parts[n]['c32'][-1]['wall']:.0f} req/s"
                    for n in chosen
                )
            )
        results = {n: {c: pooled(ps) for c, ps in d.items()} for n, d in parts.items()}
        report(results)
        if {"mloop", "floor"} <= set(parts):
            ratios = sorted(
                (len(m["latencies"]) / m["wall"]) / (len(f["latencies"]) / f["wall"])
                for m, f in zip(parts["mloop"]["c32"], parts["floor"]["c32"], strict=True)
            )
            print(
                f"per-slice c=32 mloop/floor throughput: min {ratios[0]:.3f}, median "
                f"{statistics.median(ratios):.3f}, max {ratios[-1]:.3f}"
            )
    finally:
        for t in services.values():
            stop_pid(t.proc.pid, first=15)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def goals(r: dict[str, dict[str, Any]]) -> list[tuple[str, float, bool]]:
    """(label, value, met) for every goal whose services were run. Pure."""
    out: list[tuple[str, float, bool]] = []
    if "mloop" not in r:
        return out
    m = r["mloop"]
    if "floor" in r:
        f = r["floor"]
        ratio = m["c32"]["rps"] / f["c32"]["rps"]
        out.append(("c=32 throughput mloop / floor (goal >= 0.85)", ratio, ratio >= 0.85))
        gap = m["c1"]["p50_ms"] - f["c1"]["p50_ms"]
        out.append(("c=1 p50 mloop - floor, ms (goal <= 0.30)", gap, gap <= 0.30))
    if "mloop-nolog" in r:
        q = r["mloop-nolog"]
        cost = (q["c32"]["rps"] - m["c32"]["rps"]) / q["c32"]["rps"]
        out.append(
            ("logging cost (nolog - mloop) / nolog at c=32 (goal <= 0.10)", cost, cost <= 0.10)
        )
    if "mlflow" in r:
        ratio = m["c32"]["rps"] / r["mlflow"]["c32"]["rps"]
        out.append(("c=32 throughput mloop / mlflow (goal >= 3)", ratio, ratio >= 3.0))
    if "naive" in r:
        ratio = m["c32"]["rps"] / r["naive"]["c32"]["rps"]
        out.append(("c=32 throughput mloop / naive (goal >= 1.75)", ratio, ratio >= 1.75))
    errors = m["c32"]["errors"] + m["c1"]["errors"]
    out.append(("errors mloop (goal 0)", float(errors), errors == 0))
    return out


def report(r: dict[str, dict[str, Any]]) -> None:
    print(
        f"\n{'service':<16} {'c':>3} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}"
    )
    for name, runs in r.items():
        for c, m in runs.items():
            print(
                f"{name:<16} {c[1:]:>3} {m['requests']:>8} {m['errors']:>6} {m['p50_ms']:>8.2f} {m['p99_ms']:>8.2f} {m['rps']:>8.0f}"
            )
    print()
    for label, value, ok in goals(r):
        print(f"{'PASS' if ok else 'FAIL'}  {label}: {value:.3f}")
    print(json.dumps({"results": r}, default=float))


if __name__ == "__main__":
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    main()

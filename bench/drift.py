"""Benchmark: drift check over a big window (1M current rows x 20 columns vs 100k reference).

Prints, from one run on the same data:
- mloop's ``check_drift`` (seeded 50k-row samples + exact recompute of near-threshold columns):
  wall time (Evidently import counted separately) and peak memory (ru_maxrss of its subprocess);
- the full, unsampled Evidently report (default DataDriftPreset, all rows) in a subprocess with a
  bounded timeout (``--full-timeout``), its time and memory;
- per-column agreement of mloop's verdicts with the unsampled Evidently verdicts;
- a scipy baseline over the same columns on all rows: two-sample K-S for numeric columns
  (chi-square for categorical ones), its time and how many columns its p < 0.05 flags.

Data: ``mloop.core.generate`` baseline (reference) vs covariate-shift (current), expanded from 14 to
20 feature columns with 6 derived columns (ratios, bands), written to parquet in a temp dir.

Run: ``.venv/bin/python bench/drift.py`` (``--rows 1000000 --reference-rows 100000``).
Each measured step runs in its own subprocess so the memory figures do not mix.

``--sweep N`` instead times the monitor sweep over N models (no platform: a temporary MLOOP_HOME and
a Prefect server on a free loopback port, stopped by pid at the end): N datasets from the demo
generator (seed i; classification and regression alternating; 3 to 14 features), each trained,
1,500 logged predictions each (every third drifted); then one sweep that checks every model
(cold reference cache), one more (warm), and one with nothing new (every model ``unchanged``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mloop.core.contract.model import Task

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CATEGORICAL = [
    "employment_type",
    "home_ownership",
    "loan_purpose",
    "region",
    "credit_band",
    "age_band",
]


def expand(df: pd.DataFrame) -> pd.DataFrame:
    """The generator's 14 features + 6 derived ones = 20 feature columns (plus event_time, target)."""
    out = df.copy()
    out["loan_to_income"] = (df["loan_amount"] / df["annual_income"]).round(4)
    out["log_income"] = np.log(df["annual_income"]).round(4)
    out["monthly_payment"] = (
        df["loan_amount"] * (1 + df["interest_rate"] / 100) / df["loan_term_months"]
    ).round(2)
    out["accounts_per_year"] = (df["num_open_accounts"] / (df["employment_years"] + 1)).round(4)
    # pd.cut of a Series is a Series (its annotation also covers the (bins, edges) pair of retbins)
    out["credit_band"] = cast(
        pd.Series,
        pd.cut(
            df["credit_score"],
            [0, 580, 670, 740, 800, 900],
            labels=["poor", "fair", "good", "very_good", "excellent"],
        ),
    ).astype(str)
    out["age_band"] = cast(
        pd.Series, pd.cut(df["age"], [0, 30, 45, 60, 120], labels=["<30", "30-44", "45-59", "60+"])
    ).astype(str)
    return out


def contract_for(df: pd.DataFrame):  # -> DatasetContract
    from mloop.core.contract import ColumnSpec, DatasetContract

    cols = []
    for name in df.columns:
        if name == "event_time":
            kind = "datetime"
        elif name in CATEGORICAL:
            kind = "categorical"
        elif pd.api.types.is_integer_dtype(df[name]):
            kind = "integer"
        else:
            kind = "numeric"
        cols.append(ColumnSpec(name=name, kind=kind, nullable=bool(df[name].isna().any())))
    return DatasetContract(
        name="bench", task="classification", target="target", time_column="event_time", columns=cols
    )


def _rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step_mloop(ref_path: str, cur_path: str) -> dict:
    ref, cur = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
    contract = contract_for(ref)
    loaded = _rss_mib()
    t0 = time.perf_counter()
    import evidently  # noqa: F401 - imported to time the import (or warm it), not used

    t_import = time.perf_counter() - t0
    from monitoring.drift import check_drift

    t1 = time.perf_counter()
    result = check_drift(ref, cur, contract, time_column="event_time")
    t_check = time.perf_counter() - t1
    return {
        "import_s": t_import,
        "check_s": t_check,
        "peak_mib": _rss_mib(),
        "data_mib": loaded,
        "verdicts": {c.column: c.distribution_drifted for c in result.columns},
        "scores": {c.column: c.score for c in result.columns},
        "methods": {c.column: c.method for c in result.columns},
        "exact": [c.column for c in result.columns if c.exact],
        "drift_share": result.drift_share,
    }


def step_full(ref_path: str, cur_path: str) -> dict:
    """Plain Evidently on all rows: default DataDriftPreset over the same 20 columns."""
    ref, cur = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
    contract = contract_for(ref)
    feats = [c.name for c in contract.feature_columns]
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    num = [c for c in feats if c not in CATEGORICAL]
    definition = DataDefinition(
        numerical_columns=num, categorical_columns=[c for c in feats if c in CATEGORICAL]
    )
    t0 = time.perf_counter()
    snap = Report([DataDriftPreset(columns=feats)], include_tests=True).run(
        Dataset.from_pandas(cur.loc[:, feats], data_definition=definition),
        Dataset.from_pandas(ref.loc[:, feats], data_definition=definition),
    )
    t = time.perf_counter() - t0
    from monitoring.drift import _parse_snapshot

    parsed = _parse_snapshot(snap.dict())
    return {
        "run_s": t,
        "peak_mib": _rss_mib(),
        "verdicts": {c: bool(v[3]) for c, v in parsed.items()},
        "scores": {c: v[2] for c, v in parsed.items()},
        "methods": {c: v[0] for c, v in parsed.items()},
    }


def step_scipy(ref_path: str, cur_path: str) -> dict:
    from scipy import stats

    ref, cur = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
    feats = [c.name for c in contract_for(ref).feature_columns]
    t0 = time.perf_counter()
    pvals = {}
    for c in feats:
        r, k = ref[c].dropna(), cur[c].dropna()
        if c in CATEGORICAL:
            levels = sorted(set(r.unique()) | set(k.unique()))
            table = np.array([s.value_counts().reindex(levels, fill_value=0) for s in (r, k)])
            pvals[c] = float(stats.chi2_contingency(table).pvalue)  # pyright: ignore[reportAttributeAccessIssue]  # why: scipy makes its result classes at run time; pyright cannot see their fields
        else:
            pvals[c] = float(stats.ks_2samp(r.to_numpy(), k.to_numpy()).pvalue)  # pyright: ignore[reportAttributeAccessIssue]  # why: scipy makes its result classes at run time; pyright cannot see their fields
    return {"run_s": time.perf_counter() - t0, "peak_mib": _rss_mib(), "pvalues": pvals}


def run_step(name: str, ref_path: str, cur_path: str, timeout: float | None) -> dict | None:
    cmd = [sys.executable, __file__, "--step", name, "--ref", ref_path, "--cur", cur_path]
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        print(f"  {name}: did not finish within {timeout:.0f} s (stopped)")
        return None
    except subprocess.CalledProcessError as exc:
        print(f"  {name}: failed\n{exc.stderr[-2000:]}")
        return None
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["process_s"] = time.perf_counter() - t0
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="current window rows")
    ap.add_argument("--reference-rows", type=int, default=100_000)
    ap.add_argument(
        "--full-timeout",
        type=float,
        default=600.0,
        help="limit for the unsampled Evidently run (s)",
    )
    ap.add_argument("--skip-full", action="store_true", help="skip the unsampled Evidently run")
    ap.add_argument(
        "--sweep", type=int, default=0, help="time the monitor sweep over N models instead"
    )
    ap.add_argument(
        "--workers", type=int, default=2, help="models a sweep checks at once (--sweep)"
    )
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--ref", help=argparse.SUPPRESS)
    ap.add_argument("--cur", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sweep:
        return bench_sweep(args.sweep, args.workers)

    if args.step:
        fn = {"mloop": step_mloop, "full": step_full, "scipy": step_scipy}[args.step]
        print(json.dumps(fn(args.ref, args.cur)))
        return 0

    from mloop.core.generate import generate

    with tempfile.TemporaryDirectory(prefix="mloop-bench-drift-") as tmp:
        t0 = time.perf_counter()
        ref = expand(generate("baseline", args.reference_rows, seed=1))
        cur = expand(generate("covariate-shift", args.rows, seed=2))
        ref_path, cur_path = f"{tmp}/reference.parquet", f"{tmp}/current.parquet"
        ref.to_parquet(ref_path)
        cur.to_parquet(cur_path)
        feats = [c.name for c in contract_for(ref).feature_columns]
        print(
            f"data: reference {len(ref):,} rows, current {len(cur):,} rows x {len(feats)} feature columns "
            f"(baseline vs covariate-shift), built in {time.perf_counter() - t0:.1f} s"
        )
        del ref, cur

        m = run_step("mloop", ref_path, cur_path, None)
        assert m is not None
        print(
            f"mloop check_drift: {m['check_s']:.2f} s (+ import evidently {m['import_s']:.2f} s), "
            f"peak RSS {m['peak_mib']:.0f} MiB (data loaded: {m['data_mib']:.0f} MiB), "
            f"drift share {m['drift_share']:.2f}, exact-recomputed columns: {m['exact'] or 'none'}"
        )
        s = run_step("scipy", ref_path, cur_path, None)
        assert s is not None
        full = None if args.skip_full else run_step("full", ref_path, cur_path, args.full_timeout)
        if full:
            print(
                f"unsampled Evidently: {full['run_s']:.1f} s (report run), peak RSS {full['peak_mib']:.0f} MiB"
            )
        print(
            f"scipy baseline (K-S numeric / chi2 categorical, all rows): {s['run_s']:.2f} s, "
            f"peak RSS {s['peak_mib']:.0f} MiB"
        )

        print(
            f"\n{'column':22} {'method':14} {'mloop':>8} {'full':>8} {'mloop':>6} {'full':>6}  scipy p"
        )
        agree = 0
        for c in feats:
            fs = f"{full['scores'][c]:.4f}" if full else "-"
            fv = str(full["verdicts"][c]) if full else "-"
            agree += bool(full and full["verdicts"][c] == m["verdicts"][c])
            print(
                f"{c:22} {m['methods'][c]:14} {m['scores'][c]:8.4f} {fs:>8} {m['verdicts'][c]!s:>6} {fv:>6}  "
                f"{s['pvalues'][c]:.2g}"
            )
        ks_flags = sum(p < 0.05 for p in s["pvalues"].values())
        print()
        if full:
            print(f"agreement mloop vs unsampled Evidently: {agree}/{len(feats)} columns")
            print(
                f"speed-up vs unsampled Evidently: {full['run_s'] / m['check_s']:.1f}x "
                f"(memory {full['peak_mib'] / m['peak_mib']:.1f}x less)"
            )
        print(
            f"scipy baseline flags {ks_flags}/{len(feats)} columns (p < 0.05); mloop flags "
            f"{sum(m['verdicts'].values())}/{len(feats)}; mloop time / scipy time: {m['check_s'] / s['run_s']:.2f}"
        )
        goal = m["check_s"] + m["import_s"] <= 15 and m["peak_mib"] <= 4096
        print(
            f"goal (<= 15 s incl. import, <= 4 GiB): {'met' if goal else 'NOT met'}"
            + (
                f"; agreement {'met' if full and agree == len(feats) else 'NOT met'}"
                if full
                else ""
            )
        )
        return 0 if goal and (full is None or agree == len(feats)) else 1


def bench_sweep(models: int, workers: int) -> int:
    """Build ``models`` models in a temporary home, then time sweeps (see the module docstring)."""
    import os
    import shutil

    sys.path.insert(
        0, str(ROOT)
    )  # before bench/ itself: bench/serving.py would shadow the serving package

    from mloop.core.processes import free_port, start_prefect_server, stop_pid
    from mloop.core.service_urls import prefect_api_url
    from mloop.core.settings import Settings
    from tests.helpers import make_project
    from tests.monitoring.helpers import log_traffic

    root = Path(tempfile.mkdtemp(prefix="mloop-bench-sweep-"))
    settings = Settings(home=root / "home", project_dir=make_project(root / "project"), auth=False)
    settings.state.ensure()
    port = free_port()
    os.environ.update(
        {
            **settings.service_env(),
            **settings.child_env(),
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_API_URL": prefect_api_url("127.0.0.1", port),
        }
    )
    server = start_prefect_server(settings.state.run, dict(os.environ), "127.0.0.1", port)
    try:
        from mloop.core.datasets import ingest_dataset
        from mloop.core.generate import generate, write_frame

        t0 = time.perf_counter()
        from flows.monitor import monitor_sweep_flow
        from flows.train import train_flow

        for i in range(models):
            task: Task = "classification" if i % 2 == 0 else "regression"
            feats = 3 + (i * 5) % 12
            src = write_frame(
                generate("baseline", 3000, seed=i, task=task, features=feats),
                root / f"m{i:02d}.parquet",
            )
            ingest_dataset(
                settings,
                src,
                dataset=f"m{i:02d}",
                target="target",
                task=task,
                time_column="event_time",
            )
            trained = train_flow(dataset=f"m{i:02d}")
            scenario = "covariate-shift" if i % 3 == 0 else "baseline"
            log_traffic(
                settings,
                f"m{i:02d}",
                str(trained.version),
                generate(scenario, 1500, seed=100 + i, task=task, features=feats),
            )
        print(f"built {models} models in {time.perf_counter() - t0:.0f} s", flush=True)
        for label, skip in (
            ("cold: every model checked", False),
            ("warm: every model checked", False),
            ("nothing new: every model unchanged", True),
        ):
            t1 = time.perf_counter()
            result = monitor_sweep_flow(workers=workers, skip_unchanged=skip)
            statuses = sorted({e.status for e in result.models})
            print(
                f"sweep of {len(result.models)} models, {workers} workers, {label}: {time.perf_counter() - t1:.1f} s "
                f"(flow {result.seconds:.1f} s; {', '.join(statuses)}; goal <= 60 s for 20)",
                flush=True,
            )
            checked = [e.seconds for e in result.models if e.status not in ("unchanged", "skipped")]
            if checked:
                print(
                    f"  per model check: median {sorted(checked)[len(checked) // 2]:.1f} s, max {max(checked):.1f} s"
                )
    finally:
        stop_pid(server.pid)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

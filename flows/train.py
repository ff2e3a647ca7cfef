"""Train flow: exact dataset version -> split -> fit specs concurrently -> log -> register -> gate -> promote.

Thin orchestration over ``models/``. Tasks run on the flow's task runner: the default
``ThreadPoolTaskRunner`` fits several specs at once in threads. To fit them on a Dask cluster,
set ``MLOOP_DASK_ADDRESS`` (e.g. ``tcp://scheduler:8786``, or ``local`` for a local Dask cluster)
in the flow's environment (the work pool's job variables): the flow then uses
``prefect_dask.DaskTaskRunner`` — configuration only, no code change. In code,
``train_flow.with_options(task_runner=DaskTaskRunner(...))`` does the same.

What is cached and why: nothing through Prefect's result cache (tasks take DataFrames and
fitted models; hashing and pickling them would cost more than it saves, and results must not be
cloudpickled). Idempotence lives in MLflow instead: each run is tagged with a cache key =
hash(data md5, spec, seed, split, code commit) and a FINISHED run with that key is reused, with
its registered version, unless ``force=True``. A run is marked FINISHED only once it is fully
logged and registered, and the champion alias moves only in the last step, under the registry
lock: a failed or killed run never moves the champion.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.input import RunInput
from pydantic import BaseModel, Field

from mloop.core import events
from mloop.core import lineage as L
from mloop.core.contract import DatasetContract
from mloop.core.settings import Settings
from models.gate import GateConfig, GateReport
from models.spec import ModelSpec
from models.split import SplitParams


class GateParams(BaseModel):
    """Promotion gate overrides; empty fields use the MLOOP_GATE_* settings."""

    metric: str | None = Field(default=None, description="Gate metric (roc_auc, pr_auc, f1, log_loss, brier, rmse, mae, r2).")
    min_gain: float | None = Field(default=None, ge=0, description="Smallest gain over the champion that can promote.")
    slice_tolerance: float | None = Field(default=None, ge=0, description="Largest loss on any slice the gate accepts.")
    resamples: int | None = Field(default=None, ge=1000, description="Paired bootstrap resamples (>= 1000).")
    baseline_margin: float | None = Field(default=None, ge=0, description="Margin a first model must beat the dummy by.")
    min_slice_rows: int | None = Field(default=None, ge=1, description="Smallest categorical level checked as a slice.")


class CandidateResult(BaseModel):
    """One fitted (or reused) spec."""

    spec: ModelSpec
    run_id: str
    metrics: dict[str, float]
    reused: bool
    fit_seconds: float = 0.0


class TrainResult(BaseModel):
    """What a train run did."""

    dataset: str
    data_md5: str
    version: str | None = Field(default=None, description="Registered model version of the challenger.")
    run_id: str | None = None
    reused: bool = Field(default=False, description="True: identical inputs, the existing run/version was reused.")
    decision: str | None = Field(default=None, description="Gate decision: promote or reject.")
    promoted: bool = False
    champion: str | None = Field(default=None, description="Champion version after the run.")
    metrics: dict[str, float] = Field(default_factory=dict)
    gate: GateReport | None = None
    candidates: list[CandidateResult] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)


class ApprovalInput(RunInput):
    """Input a person gives in the Prefect UI after reading the gate report."""

    approve: bool = Field(default=False, description="Promote this challenger?")
    comment: str = Field(default="", description="Why (recorded in the audit log).")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:80]


@task(name="materialize", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=1)
def materialize(settings: Settings, dataset: str, version: str | None) -> tuple[L.DatasetVersion, Any, DatasetContract]:
    """The exact bytes of the dataset version (md5-verified, from the DVC cache or remote) and its contract."""
    from mloop.core.contract import load_contract
    from mloop.core.datasets import get_version, read_version

    info = get_version(settings, dataset, version)
    df = read_version(settings, dataset, info.md5)
    return info, df, load_contract(settings.project_dir, dataset)


@task(name="split", cache_policy=NO_CACHE)
def split(df: Any, contract: DatasetContract, params: SplitParams) -> tuple[Any, Any, Any, Any]:
    """(train, holdout, X_train, X_holdout): time-based or stratified split, features prepared once."""
    from models.pipeline import prepare_features
    from models.split import split_dataset

    train, holdout = split_dataset(df, contract, test_size=params.test_size, seed=params.seed)
    return train, holdout, prepare_features(train, contract), prepare_features(holdout, contract)


@task(name="fit", cache_policy=NO_CACHE, task_run_name="fit-{spec.estimator}")
def fit(contract: DatasetContract, spec: ModelSpec, train: Any, holdout: Any, X_train: Any, X_holdout: Any,
        seed: int, min_slice_rows: int) -> Any:
    """Fit one spec and evaluate it on the holdout (overall and per slice)."""
    from models.train import fit_and_evaluate

    return fit_and_evaluate(
        contract, spec, train, holdout, seed=seed, min_slice_rows=min_slice_rows, X_train=X_train, X_holdout=X_holdout
    )


@task(name="log", cache_policy=NO_CACHE)
def log_run(settings: Settings, experiment_id: str, run_id: str, result: Any, params: dict[str, Any],
            contract: DatasetContract, info: L.DatasetVersion, X_holdout: Any, y_holdout: Any) -> None:
    """Params, metrics, plots, dataset input (digest = DVC md5) and the skops model to the MLflow run."""
    from models.evaluate import binary_labels, permutation_importance
    from models.plots import classification_plots, regression_plots
    from models.tracking import log_training_run

    task_kind = contract.task
    with tempfile.TemporaryDirectory(dir=settings.state.tmp) as tmp:
        work = Path(tmp)
        importances = permutation_importance(result.pipeline, X_holdout, y_holdout, task_kind, seed=0, max_rows=1000)
        if task_kind == "classification":
            plots = classification_plots(binary_labels(y_holdout), result.scores, importances, work / "plots")
        else:
            plots = regression_plots(y_holdout, result.scores, importances, work / "plots")
        log_training_run(
            settings.tracking_uri, run_id,
            params=params, metrics=result.evaluation.metrics, pipeline=result.pipeline, X_example=X_holdout,
            plot_paths=plots, dataset_name=info.name, data_md5=info.md5, data_source=info.path, data_rows=info.rows,
            work_dir=work,
            extra_json={
                "evaluation.json": result.evaluation.model_dump(mode="json"),
                "feature_importance.json": importances,
            },
        )


@task(name="gate", cache_policy=NO_CACHE)
def gate(settings: Settings, name: str, contract: DatasetContract, challenger: Any, challenger_version: str | None,
         champion: str | None, train: Any, X_train: Any, X_holdout: Any, y_holdout: Any, config: GateConfig) -> GateReport:
    """Score challenger, champion (on THIS holdout, whatever data it was trained on) and a dummy; decide."""
    from models.evaluate import predict_scores, slice_masks
    from models.gate import decide
    from models.pipeline import build_baseline
    from models.registry import load_pipeline

    champion_scores = None
    if champion is not None:
        champion_scores = predict_scores(load_pipeline(settings.tracking_uri, name, champion), X_holdout, contract.task)
    baseline = build_baseline(contract).fit(X_train, train[contract.target].to_numpy())
    return decide(
        model_name=name, task=contract.task, y=y_holdout, challenger_scores=challenger.scores,
        champion_scores=champion_scores, baseline_scores=predict_scores(baseline, X_holdout, contract.task),
        config=config, slices=slice_masks(X_holdout, contract, config.min_slice_rows),
        challenger_version=challenger_version, champion_version=champion,
    )


@task(name="promote", cache_policy=NO_CACHE)
def promote_challenger(settings: Settings, name: str, version: str, report: GateReport, champion: str | None,
                       reason: str, actor: str, flow_run_id: str | None) -> Any:
    """Move the champion alias (last step, under the registry lock, only if the champion is unchanged)."""
    from models.registry import promote

    metrics = {"gain": report.gain, "ci_low": report.ci_low, "ci_high": report.ci_high,
               f"challenger_{report.metric}": report.challenger_value, f"reference_{report.metric}": report.reference_value}
    return promote(settings.tracking_uri, settings.state, name, version, reason=reason, actor=actor,
                   flow_run_id=flow_run_id, gate_metrics=metrics, expected_champion=champion)


def task_runner(address: str | None = None) -> Any:
    """ThreadPoolTaskRunner, or a DaskTaskRunner for ``address`` (default: MLOOP_DASK_ADDRESS).

    ``local`` starts a local Dask cluster for the run; anything else is a scheduler address.
    """
    import os

    from prefect.task_runners import ThreadPoolTaskRunner

    address = (os.environ.get("MLOOP_DASK_ADDRESS", "") if address is None else address).strip()
    if not address:
        return ThreadPoolTaskRunner()
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner() if address == "local" else DaskTaskRunner(address=address)


def _metric_key(value: float | None, sign: int) -> float:
    return float("-inf") if value is None else sign * value


@flow(name="train", task_runner=task_runner())
def train_flow(
    dataset: str,
    version: str | None = None,
    specs: list[ModelSpec] | None = None,
    split_params: SplitParams | None = None,
    seed: int = 42,
    gate_params: GateParams | None = None,
    force: bool = False,
    promote: bool = True,
    require_approval: bool = False,
    approval_timeout_seconds: int = 3600,
    trigger: str = "manual",
) -> TrainResult:
    """Train one or more model specs on an exact dataset version, register the best, gate it, promote it.

    Args:
        dataset: Dataset name (also the registered model name).
        version: Dataset version md5 (or a unique prefix); empty = the latest version.
        specs: Candidate models; all are fitted concurrently, the best on the gate metric becomes the challenger.
        split_params: Holdout share and seed (time-based split when the contract has a time column).
        seed: Random seed of the estimators.
        gate_params: Promotion gate overrides (metric, min_gain, slice_tolerance, resamples, ...).
        force: Retrain even when a run with identical data, spec, seed, split and code exists.
        promote: Move the champion alias when the gate passes (False: gate and record only).
        require_approval: Pause after the gate until a person approves in the Prefect UI (timeout = reject).
        approval_timeout_seconds: How long the approval pause waits.
        trigger: Why this run started (manual, drift, alert:<name>, ...): recorded as a run tag.
    """
    from prefect.runtime import flow_run

    from models import registry as R
    from models import tracking as T
    from models.evaluate import direction

    t_start = time.perf_counter()
    logger = get_run_logger()
    settings = Settings()
    settings.state.ensure()
    specs = specs or [ModelSpec()]
    split_params = split_params or SplitParams()
    gate_params = gate_params or GateParams()
    config = GateConfig.from_settings(settings, **gate_params.model_dump())
    uri = settings.tracking_uri
    flow_run_id = str(flow_run.get_id() or "")
    actor = f"flow:{flow_run.get_name() or 'train'}"
    timings: dict[str, float] = {}

    info, df, contract = materialize(settings, dataset, version)
    metric = config.metric_for(contract.task)
    sign = direction(metric)
    code_commit = L.git_commit(settings.project_dir)
    experiment_id = T.ensure_experiment(uri, dataset, settings.state.mlflow_artifacts)
    timings["materialize"] = time.perf_counter() - t_start

    keys = {s.key(): T.cache_key(info.md5, s, seed, split_params.test_size, split_params.seed, code_commit) for s in specs}
    cached = {} if force else {k: T.find_cached_run(uri, experiment_id, key) for k, key in keys.items()}
    to_fit = [s for s in specs if cached.get(s.key()) is None]

    train, holdout, X_train, X_holdout = split(df, contract, split_params)
    y_holdout = holdout[contract.target].to_numpy()
    t_fit = time.perf_counter()
    futures = {s.key(): fit.submit(contract, s, train, holdout, X_train, X_holdout, seed, config.min_slice_rows)
               for s in to_fit}
    fitted = {k: f.result() for k, f in futures.items()}
    timings["fit_evaluate"] = time.perf_counter() - t_fit

    base_tags = {
        L.TAG_DATASET_NAME: dataset, L.TAG_DATASET_MD5: info.md5, L.TAG_CODE_COMMIT: code_commit or "",
        L.TAG_DATASET_POINTER_COMMIT: info.git_commit or "", L.TAG_FLOW_RUN_ID: flow_run_id,
        R.TAG_TASK: contract.task, R.TAG_TRIGGER: trigger,
    }
    candidates: list[CandidateResult] = []
    open_runs: list[str] = []
    try:
        t_log = time.perf_counter()
        log_futures = []
        for spec in specs:
            k = spec.key()
            if k in fitted:
                result = fitted[k]
                run_id = T.start_run(uri, experiment_id, run_name=f"{dataset}-{spec.label()}",
                                     tags={**base_tags, R.TAG_CACHE_KEY: keys[k], R.TAG_SPEC: k})
                open_runs.append(run_id)
                params = {"spec": k, "estimator": spec.estimator, "seed": seed, "split_test_size": split_params.test_size,
                          "split_seed": split_params.seed, "split_kind": "time" if contract.time_column else "stratified",
                          "train_rows": len(train), "holdout_rows": len(holdout), "data_md5": info.md5,
                          **{f"hp.{p}": v for p, v in spec.params.items()}}
                log_futures.append(
                    log_run.submit(settings, experiment_id, run_id, result, params, contract, info, X_holdout, y_holdout))
                candidates.append(CandidateResult(spec=spec, run_id=run_id, metrics=result.evaluation.metrics,
                                                  reused=False, fit_seconds=result.fit_seconds))
            else:
                run = cached[k]
                candidates.append(CandidateResult(spec=spec, run_id=run.run_id, metrics=run.metrics, reused=True))
        best = max(candidates, key=lambda c: _metric_key(c.metrics.get(metric), sign))

        if best.reused:
            stored = T.get_run(uri, best.run_id)
            existing = stored.tags.get(T.TAG_REGISTERED_VERSION)
            if existing:
                for f in log_futures:
                    f.result()
                _finish_runs(uri, open_runs)
                v = R.get_version_info(uri, dataset, existing)
                logger.info("identical inputs: reusing run %s and version %s (force=True retrains)", best.run_id, existing)
                return TrainResult(
                    dataset=dataset, data_md5=info.md5, version=v.version, run_id=best.run_id, reused=True,
                    decision=v.decision, promoted="champion" in v.aliases, champion=R.champion_version(uri, dataset),
                    metrics=v.metrics, candidates=candidates, timings=timings,
                )
            # a former loser now wins: score its stored model on this holdout
            chosen = _stored_candidate(uri, stored.model_uri, best.spec, contract, X_holdout, y_holdout)
        else:
            chosen = fitted[best.spec.key()]

        # -- gate (runs while the runs are being logged: it needs only holdout scores)
        champion = R.champion_version(uri, dataset)
        gate_future = gate.submit(settings, dataset, contract, chosen, None, champion, train, X_train, X_holdout,
                                  y_holdout, config)
        for f in log_futures:
            f.result()
        timings["log"] = time.perf_counter() - t_log
        _finish_runs(uri, open_runs, keep=best.run_id)  # losers are complete: finished now, so cacheable

        # -- register the best candidate
        t_reg = time.perf_counter()
        best_run = T.get_run(uri, best.run_id)
        version_tags = {**base_tags, R.TAG_SPEC: best.spec.key(), L.TAG_RUN_ID: best.run_id,
                        R.TAG_SPLIT_TEST_SIZE: str(split_params.test_size), R.TAG_SPLIT_SEED: str(split_params.seed),
                        **{f"{R.TAG_METRIC_PREFIX}{m}": f"{v:.6g}" for m, v in best.metrics.items()}}
        registered = R.register_version(uri, dataset, source=best_run.model_uri, run_id=best.run_id, tags=version_tags,
                                        description=f"{best.spec.label()} on {dataset}@{info.md5[:8]} ({trigger})")
        T.set_run_tags(uri, best.run_id, {T.TAG_REGISTERED_VERSION: registered.version,
                                          L.TAG_MODEL_NAME: dataset, L.TAG_MODEL_VERSION: registered.version})
        timings["register"] = time.perf_counter() - t_reg
        events.emit(events.MODEL_TRAINED, events.model_resource(dataset),
                    {"version": registered.version, "metrics": best.metrics, "reason": trigger, "data_md5": info.md5,
                     "run_id": best.run_id, "spec": best.spec.label()})

        # -- record the gate decision
        t_gate = time.perf_counter()
        report = gate_future.result().model_copy(update={"challenger_version": registered.version})
        reason = report.summary()
        T.log_json(uri, best.run_id, report.model_dump(mode="json"), "gate_report.json")
        R.set_version_tags(uri, dataset, registered.version, R.decision_tags(report.decision, reason, {
            "gain": report.gain, "ci_low": report.ci_low, "ci_high": report.ci_high}))
        R.set_challenger(uri, settings.state, dataset, registered.version)
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(key=f"gate-{_slug(dataset)}", markdown=report.to_markdown(),
                                 description=f"{dataset} v{registered.version}: {report.decision}")
        timings["gate_record"] = time.perf_counter() - t_gate

        decision = report.decision
        if decision == "promote" and require_approval:
            decision, reason = _ask_approval(report, approval_timeout_seconds, reason)
            if decision == "reject":
                R.set_version_tags(uri, dataset, registered.version, R.decision_tags("reject", reason, {}))
        promoted = False
        if decision == "promote" and promote:
            record = promote_challenger(settings, dataset, registered.version, report, champion, reason, actor, flow_run_id)
            promoted = record.outcome == "applied"
            if not promoted:
                reason = f"not promoted: {record.detail}"
        payload = {"version": registered.version, "metrics": best.metrics, "reason": reason, "data_md5": info.md5,
                   "champion": R.champion_version(uri, dataset), "gain": report.gain, "ci_low": report.ci_low}
        if promoted:
            events.emit(events.MODEL_PROMOTED, events.model_resource(dataset), payload)
        elif decision == "reject" or promote:  # gate or approver said no, or the guarded alias move lost
            events.emit(events.MODEL_REJECTED, events.model_resource(dataset), payload)
        # promote=False with a passing gate: the challenger stays registered, nothing was rejected.
        _finish_runs(uri, open_runs)
        timings["total"] = time.perf_counter() - t_start
        logger.info("%s v%s: %s", dataset, registered.version, reason)
        return TrainResult(
            dataset=dataset, data_md5=info.md5, version=registered.version, run_id=best.run_id, reused=False,
            decision=decision, promoted=promoted, champion=R.champion_version(uri, dataset), metrics=best.metrics,
            gate=report, candidates=candidates, timings=timings,
        )
    finally:
        for run_id in open_runs:  # anything still open failed midway: never cacheable, never champion
            try:
                T.finish_run(uri, run_id, status="FAILED")
            except Exception:  # noqa: BLE001 - best effort while an error propagates
                pass


def _finish_runs(uri: str, open_runs: list[str], keep: str | None = None) -> None:
    """Finish the open MLflow runs except ``keep``: a finished run is complete, hence a cache hit later."""
    from models import tracking as T

    for run_id in [r for r in open_runs if r != keep]:
        T.finish_run(uri, run_id)
        open_runs.remove(run_id)


def _stored_candidate(uri: str, model_uri: str, spec: ModelSpec, contract: DatasetContract, X_holdout: Any,
                      y_holdout: Any) -> Any:
    """A FitResult for a model already stored in a run (skops, trusted types), scored on this holdout."""
    from models.evaluate import evaluate_scores, predict_scores
    from models.registry import artifact_dir, load_pipeline_from_dir
    from models.train import FitResult

    pipe = load_pipeline_from_dir(artifact_dir(model_uri, uri))
    scores = predict_scores(pipe, X_holdout, contract.task)
    return FitResult(spec, pipe, scores, evaluate_scores(contract.task, y_holdout, scores), 0.0, 0.0)


def _ask_approval(report: GateReport, timeout: int, reason: str) -> tuple[str, str]:
    """Pause until a person approves or rejects in the UI; a timeout is a reject."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run
    try:
        answer = pause_flow_run(
            wait_for_input=ApprovalInput.with_initial_data(description=report.to_markdown(), approve=False),
            timeout=timeout, poll_interval=2,
        )
    except FlowPauseTimeout:
        return "reject", f"approval timed out after {timeout}s; {reason}"
    if not answer.approve:
        return "reject", f"rejected by a person: {answer.comment or 'no comment'}; {reason}"
    return "promote", f"approved by a person: {answer.comment or 'no comment'}; {reason}"

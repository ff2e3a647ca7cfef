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

import time
from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect.input import RunInput
from pydantic import BaseModel, Field

from mloop.core import events
from mloop.core.artifacts import artifact_key
from mloop.core.contract import DatasetContract
from mloop.core.lineage import LABEL_INGESTED, DatasetVersion, LabelSource
from mloop.core.names import DatasetName
from mloop.core.settings import Settings
from mloop.core.shared import shared_records
from models.audit import AuditRecord
from models.candidates import CandidatePlan, CandidateResult
from models.gate_decision import GateConfig, GateParams, GateReport
from models.spec import ModelSpec
from models.split import HoldoutSplit, SplitParams
from models.tracking import OpenRuns
from models.train import FitResult

__all__ = [
    "ApprovalInput",
    "CandidateResult",
    "GateParams",
    "TrainResult",
    "task_runner",
    "train_flow",
]


class TrainResult(BaseModel):
    """What a train run did."""

    dataset: str
    data_md5: str
    version: str | None = Field(
        default=None, description="Registered model version of the challenger."
    )
    run_id: str | None = None
    reused: bool = Field(
        default=False, description="True: identical inputs, the existing run/version was reused."
    )
    decision: str | None = Field(default=None, description="Gate decision: promote or reject.")
    promoted: bool = False
    champion: str | None = Field(default=None, description="Champion version after the run.")
    metrics: dict[str, float] = Field(default_factory=dict)
    gate: GateReport | None = None
    label_source: LabelSource = Field(
        default=LABEL_INGESTED, description="Where the training data's labels came from."
    )
    candidates: list[CandidateResult] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)


class ApprovalInput(RunInput):
    """Input a person gives in the Prefect UI after reading the gate report."""

    approve: bool = Field(default=False, description="Promote this challenger?")
    comment: str = Field(default="", description="Why (recorded in the audit log).")


@dataclass
class TrainRun:
    """What one train run has established so far, handed from step to step."""

    settings: Settings
    dataset: str
    trigger: str
    seed: int
    split_params: SplitParams
    config: GateConfig
    info: DatasetVersion
    contract: DatasetContract
    plan: CandidatePlan
    data: HoldoutSplit
    frame: Any
    """The dataset version's rows as read (the monitor's reference is sampled from them)."""
    flow_run_id: str
    actor: str
    started: float
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lap_start = self.started

    @property
    def uri(self) -> str:
        return self.settings.tracking_uri

    @property
    def metric(self) -> str:
        """The gate metric, chosen like the gate chooses it (same config, same training class counts)."""
        return self.config.metric_for(self.contract.task, self.data.train_class_counts)

    @property
    def lineage(self) -> dict[str, str]:
        """Tags every run and version of this train run carries."""
        from models.run_tags import lineage_tags

        return lineage_tags(
            self.dataset,
            self.info,
            code_commit=self.plan.code_commit,
            flow_run_id=self.flow_run_id,
            task=self.contract.task,
            trigger=self.trigger,
        )

    def lap(self, name: str) -> None:
        """Record the seconds since the previous lap as ``timings[name]``."""
        now = time.perf_counter()
        self.timings[name], self._lap_start = now - self._lap_start, now

    def result(
        self,
        best: CandidateResult,
        candidates: list[CandidateResult],
        champion: str | None,
        **fields: Any,
    ) -> TrainResult:
        """The flow's result for ``best`` with the champion after the run (``fields``: version, decision,
        promoted, metrics, gate, reused)."""
        self.timings["total"] = time.perf_counter() - self.started
        return TrainResult(
            dataset=self.dataset,
            data_md5=self.info.md5,
            run_id=best.run_id,
            candidates=candidates,
            champion=champion,
            timings=self.timings,
            label_source=self.info.label_source,
            **fields,
        )

    def needs_approval(self, requested: bool) -> bool:
        """A person approves the promotion: asked for, or the labels came from feedback and
        ``MLOOP_APPROVE_FEEDBACK_RETRAINS`` is on."""
        from models.gate_scoring import approval_required

        return approval_required(
            self.settings.approve_feedback_retrains, self.info.label_source, requested
        )


@task(name="materialize", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=1)
def materialize(
    settings: Settings, dataset: str, version: str | None
) -> tuple[DatasetVersion, Any, DatasetContract]:
    """The exact bytes of the dataset version (md5-verified, from the DVC cache or remote) and its contract."""
    from mloop.core.contract import load_contract
    from mloop.core.datasets import get_version, read_version

    info = get_version(settings, dataset, version)
    df = read_version(settings, dataset, info.md5)
    return info, df, load_contract(settings.project_dir, dataset)


@task(name="plan", cache_policy=NO_CACHE)
def plan(
    settings: Settings,
    info: DatasetVersion,
    specs: list[ModelSpec],
    seed: int,
    split_params: SplitParams,
    force: bool,
) -> CandidatePlan:
    """Cache keys of the candidates and the finished runs with the same key (reused unless ``force``)."""
    from models.candidates import plan_candidates

    return plan_candidates(
        settings.tracking_uri,
        settings.state.mlflow_artifact_root,
        settings.project_dir,
        info,
        specs,
        seed=seed,
        split=split_params,
        force=force,
    )


@task(name="split", cache_policy=NO_CACHE)
def split(df: Any, contract: DatasetContract, params: SplitParams) -> HoldoutSplit:
    """Time-based or stratified split, features prepared once for every candidate."""
    from models.split import prepare_split

    return prepare_split(df, contract, params)


@task(name="fit", cache_policy=NO_CACHE, task_run_name="fit-{spec.estimator}")
def fit(
    contract: DatasetContract, spec: ModelSpec, data: HoldoutSplit, seed: int, min_slice_rows: int
) -> FitResult:
    """Fit one spec and evaluate it on the holdout (overall and per slice)."""
    from models.train import fit_and_evaluate

    return fit_and_evaluate(
        contract,
        spec,
        data.train,
        data.holdout,
        seed=seed,
        min_slice_rows=min_slice_rows,
        X_train=data.X_train,
        X_holdout=data.X_holdout,
    )


@task(name="log", cache_policy=NO_CACHE)
def log_run(
    settings: Settings,
    experiment_id: str,
    run_id: str,
    result: FitResult,
    params: dict[str, Any],
    contract: DatasetContract,
    info: DatasetVersion,
    X_holdout: Any,
    y_holdout: Any,
) -> None:
    """Params, metrics, plots, dataset input (digest = DVC md5) and the skops model to the MLflow run."""
    from models.tracking import log_fitted_run

    log_fitted_run(
        settings.tracking_uri,
        run_id,
        result,
        params=params,
        task=contract.task,
        info=info,
        X_holdout=X_holdout,
        y_holdout=y_holdout,
        tmp_root=settings.state.tmp,
    )


@task(name="gate", cache_policy=NO_CACHE)
def gate(run: TrainRun, challenger: tuple[Any, Any], champion: str | None) -> GateReport:
    """Score the champion (on THIS holdout, whatever data it was trained on) and a dummy, and both models on the
    trusted holdout (the newest ingested version's); decide on the challenger (``challenger``: scores, model)."""
    from models.gate_scoring import gate_train_run

    scores, model = challenger
    return gate_train_run(
        run.settings,
        run.dataset,
        run.contract,
        run.info,
        run.split_params,
        run.data,
        run.config,
        scores,
        model,
        champion,
    )


@task(name="register", cache_policy=NO_CACHE)
def register(run: TrainRun, best: CandidateResult) -> str:
    """Register the best candidate's model as a new version; tag its run with the version."""
    from models import registry as R
    from models import tracking as T
    from models.run_tags import registered_run_tags, version_description, version_tags

    tags = version_tags(
        run.lineage,
        spec=best.spec,
        run_id=best.run_id,
        split=run.split_params,
        metrics=best.metrics,
    )
    registered = R.register_version(
        run.uri,
        run.dataset,
        source=T.get_run(run.uri, best.run_id).model_uri,
        run_id=best.run_id,
        tags=tags,
        description=version_description(best.spec, run.dataset, run.info.md5, run.trigger),
    )
    T.set_run_tags(run.uri, best.run_id, registered_run_tags(run.dataset, registered.version))
    return registered.version


@task(name="record-gate", cache_policy=NO_CACHE)
def record_gate(run: TrainRun, version: str, run_id: str, report: GateReport) -> GateReport:
    """The gate report as a run artifact, the decision as version tags, the version as ``challenger``."""
    from models import registry as R
    from models.tracking import log_json

    report = report.model_copy(update={"challenger_version": version})
    log_json(run.uri, run_id, report.model_dump(mode="json"), "gate_report.json")
    from models.run_tags import trusted_tags

    tags = {
        **R.decision_tags(report.decision, report.summary(), report.tag_metrics()),
        **trusted_tags(report),
    }
    R.set_version_tags(run.uri, run.dataset, version, tags)
    R.set_challenger(
        run.uri, run.settings.state, run.dataset, version, records=shared_records(run.settings)
    )
    return report


@task(name="promote", cache_policy=NO_CACHE)
def promote_challenger(
    run: TrainRun, version: str, report: GateReport, champion: str | None, reason: str
) -> AuditRecord:
    """Move the champion alias (last step, under the registry lock, only if the champion is unchanged)."""
    from models.registry import promote

    return promote(
        run.uri,
        run.settings.state,
        run.dataset,
        version,
        reason=reason,
        actor=run.actor,
        flow_run_id=run.flow_run_id,
        gate_metrics=report.audit_metrics(),
        expected_champion=champion,
        records=shared_records(run.settings),
    )


@task(name="package-model", cache_policy=NO_CACHE)
def package_champion(run: TrainRun, version: str, pipeline: Any) -> str:
    """Package the version just promoted as its BentoML model (no Bento), here where its fitted pipeline and
    holdout are in memory, while the deploy flow the promotion triggered is still starting: that flow waits on
    the tag's packaging lock and finds the model in the store (drift event -> new version answering is shorter
    by the deploy's registry load and conversion). Best effort: on failure the deploy flow packages it."""
    from models.registry import get_lineage
    from serving.bundle.package import package_pipeline

    lineage = get_lineage(run.uri, run.dataset, version).model_dump()
    return package_pipeline(
        run.settings,
        name=run.dataset,
        version=version,
        pipeline=pipeline,
        contract=run.contract,
        holdout=run.data.holdout,
        lineage=lineage,
        build=False,
    ).model_tag


@task(name="monitor-reference", cache_policy=NO_CACHE)
def monitor_reference(run: TrainRun, version: str, pipeline: Any) -> int:
    """Score the monitor's reference sample of the version just promoted (the default sampling of
    :class:`monitoring.checks.MonitorOptions`) with the rows and pipeline in memory, and cache it
    (:mod:`monitoring.reference_cache`): its first drift check, in a sweep too, skips the registry load
    and the re-read of the dataset version. Best effort: on failure the check computes it. Returns its rows."""
    from monitoring.checks import MonitorOptions
    from monitoring.reference_cache import scored_reference

    options = MonitorOptions()
    return len(
        scored_reference(
            run.settings,
            run.dataset,
            version,
            run.dataset,
            run.info.md5,
            run.contract,
            seed=options.seed,
            rows=options.reference_rows,
            frame=run.frame,
            pipeline=pipeline,
        )
    )


def task_runner(address: str | None = None) -> Any:
    """ThreadPoolTaskRunner, or a DaskTaskRunner for ``address`` (default: MLOOP_DASK_ADDRESS).

    ``local`` starts a local Dask cluster for the run; anything else is a scheduler address.
    """
    import os

    from prefect.task_runners import ThreadPoolTaskRunner

    address = (os.environ.get("MLOOP_DASK_ADDRESS", "") if address is None else address).strip()
    if not address:
        return ThreadPoolTaskRunner()
    from prefect_dask.task_runners import DaskTaskRunner

    return DaskTaskRunner() if address == "local" else DaskTaskRunner(address=address)


@flow(name="train", task_runner=task_runner())
def train_flow(
    dataset: DatasetName,
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
        require_approval: Pause after the gate until a person approves in the Prefect UI (timeout = reject); also
            on when the data's labels came from feedback and MLOOP_APPROVE_FEEDBACK_RETRAINS is set.
        approval_timeout_seconds: How long the approval pause waits.
        trigger: Why this run started (manual, drift, alert:<name>, ...): recorded as a run tag.
    """
    from models.candidates import best_candidate
    from models.tracking import registered_version

    specs, split_params = specs or [ModelSpec()], split_params or SplitParams()
    run = _prepare(dataset, version, specs, split_params, seed, gate_params, force, trigger)
    fitted = _fit_all(run)
    with OpenRuns(run.uri) as runs:
        candidates, logging = _log_candidates(run, runs, fitted)
        best = best_candidate(candidates, run.metric)
        if best.reused and (existing := registered_version(run.uri, best.run_id)):
            _finish_logging(run, runs, logging)
            return _reused(run, best, existing, candidates)
        approval = (require_approval, approval_timeout_seconds)
        registered, report, verdict, pipeline = _gate_and_decide(
            run, runs, best, fitted, logging, promote=promote, approval=approval
        )
        runs.finish()
    if verdict.promoted:
        _ready_champion(run, registered, pipeline)
    get_run_logger().info("%s v%s: %s", dataset, registered, verdict.reason)
    return run.result(
        best,
        candidates,
        verdict.champion,
        version=registered,
        decision=verdict.decision,
        promoted=verdict.promoted,
        metrics=best.metrics,
        gate=report,
    )


def _gate_and_decide(
    run: TrainRun,
    runs: OpenRuns,
    best: CandidateResult,
    fitted: dict[str, FitResult],
    logging: list[PrefectFuture[None]],
    *,
    promote: bool,
    approval: tuple[bool, int],
) -> tuple[str, GateReport, Verdict, Any]:
    """Gate the best candidate against the champion (read once, here) while the other candidates'
    logging finishes, register it, record the gate and decide. ``approval``: (required, timeout in
    seconds). Returns the registered version, the gate report, the verdict and the fitted pipeline."""
    from models.registry import champion_version

    champion = champion_version(run.uri, run.dataset)
    challenger = _challenger(run, best, fitted)
    gating = gate.submit(run, challenger, champion)  # runs while the candidates are logged
    # the losers are complete: finished now, so cacheable
    _finish_logging(run, runs, logging, keep=best.run_id)
    registered = register(run, best)
    _emit_trained(run, registered, best)
    report = record_gate(run, registered, best.run_id, gating.result())
    _publish_gate(run, registered, report)
    required, timeout = approval
    verdict = _decide(
        run,
        best,
        registered,
        report,
        champion,
        promote=promote,
        require_approval=required,
        timeout=timeout,
    )
    return registered, report, verdict, challenger[1]


def _ready_champion(run: TrainRun, version: str, pipeline: Any) -> None:
    """What the new champion's deploy and first monitor check need, from what is in memory here."""
    if run.settings.package_on_promote:
        package_champion(run, version, pipeline, return_state=True)
    monitor_reference(run, version, pipeline, return_state=True)


def _prepare(
    dataset: str,
    version: str | None,
    specs: list[ModelSpec],
    split_params: SplitParams,
    seed: int,
    gate_params: BaseModel | None,
    force: bool,
    trigger: str,
) -> TrainRun:
    """Settings and gate config, then materialize -> plan (cache hits) -> split: what every step shares."""
    from prefect.runtime import flow_run

    started = time.perf_counter()
    settings = Settings()
    settings.state.ensure()
    info, df, contract = materialize(settings, dataset, version)
    config = GateConfig.from_settings(settings, **(gate_params or GateParams()).model_dump())
    config = config.with_suggested_metric(contract.gate_metric)
    candidate_plan = plan(settings, info, specs, seed, split_params, force)
    run = TrainRun(
        settings=settings,
        dataset=dataset,
        trigger=trigger,
        seed=seed,
        split_params=split_params,
        config=config,
        info=info,
        contract=contract,
        plan=candidate_plan,
        data=split(df, contract, split_params),
        frame=df,
        flow_run_id=str(flow_run.get_id() or ""),
        actor=f"flow:{flow_run.get_name() or 'train'}",
        started=started,
    )
    run.lap("materialize")
    return run


def _fit_all(run: TrainRun) -> dict[str, FitResult]:
    """Fit every spec without a reusable run, concurrently on the flow's task runner (spec key -> fit)."""
    futures = {
        s.key(): fit.submit(run.contract, s, run.data, run.seed, run.config.min_slice_rows)
        for s in run.plan.to_fit
    }
    fitted = {k: f.result() for k, f in futures.items()}
    run.lap("fit_evaluate")
    return fitted


def _log_candidates(
    run: TrainRun, runs: OpenRuns, fitted: dict[str, FitResult]
) -> tuple[list[CandidateResult], list[PrefectFuture[None]]]:
    """Each fitted spec gets an open MLflow run, logged in the background; the others come from their cached runs."""
    from models.candidates import cached_candidate, fitted_candidate, run_params
    from models.run_tags import candidate_run_tags

    candidates: list[CandidateResult] = []
    logging: list[PrefectFuture[None]] = []
    for spec in run.plan.specs:
        key = spec.key()
        if key not in fitted:
            candidates.append(cached_candidate(spec, run.plan.cached[key]))
            continue
        run_id = runs.start(
            run.plan.experiment_id,
            run_name=f"{run.dataset}-{spec.label()}",
            tags=candidate_run_tags(run.lineage, cache_key=run.plan.cache_keys[key], spec=spec),
        )
        params = run_params(
            spec,
            seed=run.seed,
            split=run.split_params,
            contract=run.contract,
            train_rows=len(run.data.train),
            holdout_rows=len(run.data.holdout),
            data_md5=run.info.md5,
        )
        logging.append(
            log_run.submit(
                run.settings,
                run.plan.experiment_id,
                run_id,
                fitted[key],
                params,
                run.contract,
                run.info,
                run.data.X_holdout,
                run.data.y_holdout,
            )
        )
        candidates.append(fitted_candidate(run_id, fitted[key]))
    return candidates, logging


def _finish_logging(
    run: TrainRun, runs: OpenRuns, logging: list[PrefectFuture[None]], keep: str | None = None
) -> None:
    """Wait for the background logging, then finish every open run but ``keep``."""
    for future in logging:
        future.result()
    runs.finish(keep=keep)
    run.lap("log")


def _challenger(
    run: TrainRun, best: CandidateResult, fitted: dict[str, FitResult]
) -> tuple[Any, Any]:
    """The winner's holdout scores and fitted model (the gate scores it on the trusted holdout too): from its fit
    in this run, or (a former loser now wins) from its stored model."""
    from models.evaluate import predict_scores
    from models.registry import artifact_dir, load_pipeline_from_dir

    key = best.spec.key()
    if key in fitted:
        return fitted[key].scores, fitted[key].pipeline
    model = load_pipeline_from_dir(artifact_dir(run.plan.cached[key].model_uri, run.uri))
    return predict_scores(model, run.data.X_holdout, run.contract.task), model


def _reused(
    run: TrainRun, best: CandidateResult, version: str, candidates: list[CandidateResult]
) -> TrainResult:
    """Identical inputs: the result of the run and version registered before."""
    from models.registry import champion_version, get_version_info

    v = get_version_info(run.uri, run.dataset, version)
    get_run_logger().info(
        "identical inputs: reusing run %s and version %s (force=True retrains)",
        best.run_id,
        version,
    )
    return run.result(
        best,
        candidates,
        v.version if "champion" in v.aliases else champion_version(run.uri, run.dataset),
        version=v.version,
        reused=True,
        decision=v.decision,
        promoted="champion" in v.aliases,
        metrics=v.metrics,
    )


def _emit_trained(run: TrainRun, version: str, best: CandidateResult) -> None:
    from models.event_payloads import trained_payload

    run.lap("register")
    events.emit(
        events.MODEL_TRAINED,
        events.model_resource(run.dataset),
        trained_payload(
            version=version,
            metrics=best.metrics,
            trigger=run.trigger,
            data_md5=run.info.md5,
            run_id=best.run_id,
            spec=best.spec.label(),
            label_source=run.info.label_source,
        ),
    )


def _publish_gate(run: TrainRun, version: str, report: GateReport) -> None:
    """The gate report as a markdown artifact (key ``gate-<dataset>``)."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        key=artifact_key("gate", run.dataset),
        markdown=report.to_markdown(),
        description=f"{run.dataset} v{version}: {report.decision}",
    )
    run.lap("gate_record")


@dataclass(frozen=True)
class Verdict:
    """What became of the challenger: the decision, why, whether the alias moved, and the champion after."""

    decision: str
    reason: str
    promoted: bool
    champion: str | None


def _decide(
    run: TrainRun,
    best: CandidateResult,
    version: str,
    report: GateReport,
    champion: str | None,
    *,
    promote: bool,
    require_approval: bool,
    timeout: int,
) -> Verdict:
    """The gate's verdict, a person's when approval is required, then the guarded alias move; emits
    ``mloop.model.promoted`` or ``mloop.model.rejected``. ``champion`` is the one the gate compared
    against; the promotion's record says which holds the alias after it (no second registry read)."""
    from models import registry as R
    from models.event_payloads import decision_event, decision_payload

    decision, reason = report.decision, report.summary()
    if decision == "promote" and run.needs_approval(require_approval):
        decision, reason = _ask_approval(report, timeout, reason)
        if decision == "reject":
            R.set_version_tags(run.uri, run.dataset, version, R.decision_tags("reject", reason, {}))
    promoted = False
    if decision == "promote" and promote:
        record = promote_challenger(run, version, report, champion, reason)
        promoted = record.outcome == "applied"
        champion = record.to_version  # applied: this version; skipped: the one holding the alias
        if not promoted:
            reason = f"not promoted: {record.detail}"
    event = decision_event(promoted=promoted, decision=decision, promote=promote)
    if event is not None:
        events.emit(
            event,
            events.model_resource(run.dataset),
            decision_payload(
                version=version,
                metrics=best.metrics,
                reason=reason,
                data_md5=run.info.md5,
                champion=champion,
                report=report,
            ),
        )
    return Verdict(decision, reason, promoted, champion)


def _ask_approval(report: GateReport, timeout: int, reason: str) -> tuple[str, str]:
    """Pause until a person approves or rejects in the UI; a timeout is a reject."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    try:
        answer = pause_flow_run(
            wait_for_input=ApprovalInput.with_initial_data(
                description=report.to_markdown(), approve=False
            ),
            timeout=timeout,
            poll_interval=2,
        )
    except FlowPauseTimeout:
        return "reject", f"approval timed out after {timeout}s; {reason}"
    if not answer.approve:
        return "reject", f"rejected by a person: {answer.comment or 'no comment'}; {reason}"
    return "promote", f"approved by a person: {answer.comment or 'no comment'}; {reason}"

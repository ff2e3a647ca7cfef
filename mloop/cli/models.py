"""CLI commands for the models stage: ``train``, ``promote``, ``rollback``, ``models``, ``audit``, ``reproduce``.

``train``, ``promote`` and ``rollback`` run their Prefect flows (PREFECT_API_URL, else a local
server on the configured port, else a temporary one); the listing commands read the registry and
the audit log directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mloop.cli.common import (
    ClickUsageError,
    console,
    deprecated,
    err_console,
    load_flow_settings,
    load_settings,
    print_json,
    read_settings,
    user_errors,
)
from mloop.cli.data import name_check

if TYPE_CHECKING:
    from flows.train import TrainResult

ModelArg = Annotated[
    str,
    typer.Argument(help="Registered model name (= dataset name).", callback=name_check("model")),
]
"""A model name argument, refused (exit 2) when it breaks the name rule."""


def train_cmd(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Dataset name (also the registered model name).",
            callback=name_check("dataset"),
            show_default=False,
        ),
    ] = None,
    data_version: Annotated[
        str | None,
        typer.Option("--data-version", help="Dataset version md5 (or prefix); default: latest."),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="Model spec ESTIMATOR[:k=v,...], repeatable (logistic_regression, linear, "
            "hist_gradient_boosting, random_forest). Default: logistic_regression.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Estimator seed.")] = 42,
    test_size: Annotated[float, typer.Option(help="Holdout share.")] = 0.2,
    split_seed: Annotated[
        int, typer.Option(help="Seed of the stratified split (time-based splits ignore it).")
    ] = 42,
    force: Annotated[
        bool,
        typer.Option("--force", help="Retrain even when identical inputs were trained before."),
    ] = False,
    no_promote: Annotated[
        bool, typer.Option("--no-promote", help="Gate and record, but do not move the champion.")
    ] = False,
    require_approval: Annotated[
        bool, typer.Option(help="Pause after the gate for approval in the Prefect UI.")
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the train result as one JSON object.")
    ] = False,
    old_dataset: Annotated[
        str | None, typer.Option("--dataset", hidden=True, callback=name_check("dataset"))
    ] = None,
    old_version: Annotated[str | None, typer.Option("--version", hidden=True)] = None,
) -> None:
    """Train model spec(s) on a dataset version, register the best, run the promotion gate, promote if it passes."""
    from mloop.core.datasets import get_version
    from models.spec import parse_spec
    from models.split import SplitParams

    dataset = deprecated(name, old_dataset, old="--dataset", new="the NAME argument")
    version = deprecated(data_version, old_version, old="--version", new="--data-version")
    if dataset is None:
        raise ClickUsageError("Missing argument 'NAME' (the dataset to train on).")
    with user_errors(json_out):
        specs = [parse_spec(m) for m in (model or ["logistic_regression"])]
        get_version(read_settings(), dataset, version)  # unknown: exit 3 before anything starts
        load_flow_settings()
        with err_console().status(f"training {', '.join(s.label() for s in specs)} on {dataset}"):
            from flows.train import train_flow

            result = train_flow(
                dataset=dataset,
                version=version,
                specs=specs,
                seed=seed,
                force=force,
                promote=not no_promote,
                split_params=SplitParams(test_size=test_size, seed=split_seed),
                require_approval=require_approval,
                trigger="cli",
            )
    if json_out:
        print_json(result)
    else:
        _print_trained(dataset, result)


def _print_trained(dataset: str, result: TrainResult) -> None:
    """The train result for a person: decision, champion, metrics and the gate's summary."""
    state = "reused (identical inputs; --force retrains)" if result.reused else result.decision
    console().print(
        f"[bold]{dataset}[/] v{result.version}: {state}; champion: v{result.champion or '-'}"
    )
    console().print("  " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(result.metrics.items())))
    if result.gate is not None:
        console().print(f"  gate: {result.gate.summary()}", markup=False)


def _alias_change(flow_name: str, json_out: bool, **params: str) -> None:
    """Run the promote or rollback flow as the current user; print the audit record."""
    import getpass

    from mloop.platform.registry_view import require_version

    ref = params.get("version", "previous-champion")  # promote names a version, rollback the alias
    with user_errors(json_out):
        # an unknown model or version (3), or nothing to roll back to (5): before a flow starts
        require_version(read_settings(), params["name"], ref)
        load_flow_settings()
        from flows.promote import promote_flow, rollback_flow

        flow_fn = {"promote": promote_flow, "rollback": rollback_flow}[flow_name]
        record = flow_fn(**params, actor=f"user:{getpass.getuser()}")
    if json_out:
        print_json(record)
    else:
        detail = f": {record.detail}" if record.detail else ""
        console().print(
            f"{record.model_name}: {flow_name} champion v{record.from_version or '-'} -> "
            f"v{record.to_version or '-'} ({record.outcome}{detail})"
        )


def promote_cmd(
    name: ModelArg,
    version: Annotated[str, typer.Argument(help="Version number to make champion.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the audit record as JSON.")
    ] = False,
) -> None:
    """Make VERSION the champion (the current one becomes previous-champion); audited."""
    _alias_change("promote", json_out, name=name, version=version, reason=reason)


def rollback_cmd(
    name: ModelArg,
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded in the audit log).")],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the audit record as JSON.")
    ] = False,
) -> None:
    """Put the previous champion back (champion <- previous-champion); audited."""
    _alias_change("rollback", json_out, name=name, reason=reason)


def models_cmd(
    name: ModelArg,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json", help="Print a JSON list of {version, aliases, metrics, data_md5, decision}."
        ),
    ] = False,
) -> None:
    """List a model's versions with aliases, metrics, data md5 and gate decision (newest first)."""
    from rich.table import Table

    from mloop.platform.registry_view import require_model

    with user_errors(json_out):
        versions = require_model(read_settings(), name)
    if json_out:
        print_json(
            [
                {
                    "version": v.version,
                    "aliases": v.aliases,
                    "metrics": v.metrics,
                    "data_md5": v.data_md5,
                    "decision": v.decision,
                    "run_id": v.run_id,
                }
                for v in versions
            ]
        )
        return
    table = Table(title=f"{name}: {len(versions)} version(s)")
    for col in ("version", "aliases", "decision", "metrics", "data md5"):
        table.add_column(col)
    for v in versions:
        metrics = ", ".join(
            f"{k}={val:.4f}"
            for k, val in sorted(v.metrics.items())
            if k in ("roc_auc", "pr_auc", "rmse", "r2")
        )
        table.add_row(
            v.version, ", ".join(v.aliases), v.decision or "-", metrics, (v.data_md5 or "-")[:12]
        )
    console().print(table)


def audit_cmd(
    name: ModelArg,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the audit records as a JSON list.")
    ] = False,
) -> None:
    """Print the audit log of champion changes (oldest first)."""
    from rich.table import Table

    from mloop.core.shared import shared_records
    from mloop.platform.registry_view import require_model
    from models.audit import read_audit

    with user_errors(json_out):
        settings = read_settings()
        records = read_audit(settings.state.audit, name, records=shared_records(settings))
        if not records:
            require_model(settings, name)  # no record of an unknown model: exit 3
    if json_out:
        print_json(records)
        return
    if not records:
        console().print(f"no alias changes recorded for {name!r}")
        return
    table = Table(title=f"{name}: audit log")
    for col in ("when", "action", "from", "to", "outcome", "by", "reason"):
        table.add_column(col)
    for r in records:
        table.add_row(
            r.when.isoformat(timespec="seconds"),
            r.action,
            r.from_version or "-",
            r.to_version or "-",
            r.outcome,
            r.actor,
            r.reason + (f" ({r.detail})" if r.detail else ""),
        )
    console().print(table)


def reproduce_cmd(
    name: ModelArg,
    version: Annotated[str, typer.Argument(help="Version number (or alias, e.g. champion).")],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the report (metric diffs) as JSON.")
    ] = False,
) -> None:
    """Retrain a version from its recorded data md5, spec, seed and split; print the metric differences."""
    from rich.table import Table

    from mloop.platform.registry_view import require_version
    from models.reproduce import reproduce_version

    with user_errors(json_out):
        require_version(
            read_settings(), name, version
        )  # unknown: exit 3 before anything is written
        settings = load_settings()
        with err_console().status(f"reproducing {name} v{version}"):
            report = reproduce_version(settings, name, version)
    if json_out:
        print_json({**report.model_dump(mode="json"), "max_abs_diff": report.max_abs_diff})
        return
    table = Table(
        title=f"{name} v{report.version}: {report.spec.label()} seed {report.seed} on {report.data_md5[:12]}"
    )
    for col in ("metric", "recorded", "reproduced", "diff"):
        table.add_column(col)
    for d in report.diffs:
        table.add_row(d.metric, f"{d.recorded:.6f}", f"{d.reproduced:.6f}", f"{d.diff:+.2e}")
    console().print(table)
    console().print(f"max |diff| = {report.max_abs_diff:.3g}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("train")(train_cmd)
    app.command("promote")(promote_cmd)
    app.command("rollback")(rollback_cmd)
    app.command("models")(models_cmd)
    app.command("audit")(audit_cmd)
    app.command("reproduce")(reproduce_cmd)

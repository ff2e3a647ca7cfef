"""CLI commands for the serving stage: ``package``, ``serve``, ``deploy``, ``lineage``, ``feedback``.

Heavy libraries (BentoML, MLflow, skl2onnx) are imported inside the commands; packaging runs
BentoML in a child process pointed at MLOOP_HOME/bentoml.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from mloop.cli.common import (
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

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
ModelVersionOpt = Annotated[
    str | None,
    typer.Option("--model-version", help="Registry version; default: the champion."),
]
OldVersionOpt = Annotated[str | None, typer.Option("--version", hidden=True)]
"""``--version`` before it was ``--model-version`` (deprecated: one more release)."""


def _check_model(name: str | None, version: str | None) -> None:
    """Exit 3 (unknown model or version) or 5 (no champion) before anything is packaged or started."""
    if name is not None:
        from mloop.platform.registry_view import require_version

        require_version(read_settings(), name, version or "champion")


def package_cmd(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Registered model name (= dataset name); default: the one model "
            "with a champion (name it when several have one).",
            callback=name_check("model"),
        ),
    ] = None,
    model_version: ModelVersionOpt = None,
    json_out: JsonOpt = False,
    old_version: OldVersionOpt = None,
) -> None:
    """Package a registry version as a BentoML model (ONNX, verified vs sklearn) and a Bento; reuses existing ones."""
    version = deprecated(model_version, old_version, old="--version", new="--model-version")
    with user_errors(json_out):
        _check_model(name, version)
        settings = load_settings()
        from mloop.platform.serve_command import default_model_name
        from serving.bundle.package import package_model

        name = name or default_model_name(settings)
        with err_console().status(f"packaging {name} {version or 'champion'}"):
            packaged = package_model(settings, name, version)
    if json_out:
        print_json(packaged)
        return
    state = "packaged" if packaged.created else "already packaged (reused)"
    console().print(
        f"[bold]{packaged.name}[/] v{packaged.version}: {state} in {packaged.seconds:.1f}s"
    )
    console().print(
        f"  model {packaged.model_tag} ({packaged.backend}), bento {packaged.bento_tag}"
    )
    if packaged.fallback_reason:
        console().print(f"  [yellow]sklearn fallback:[/] {packaged.fallback_reason}", markup=True)


def serve_cmd(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Serve only this registered model; default: every model with a champion.",
            callback=name_check("model"),
        ),
    ] = None,
    only: Annotated[
        str | None, typer.Option("--name", hidden=True, callback=name_check("model"))
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Bind address (default: MLOOP_HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="Port (default: MLOOP_SERVE_PORT, 3000).")
    ] = None,
) -> None:
    """Serve every champion (or only the named model) in the foreground from one service, each at
    /models/<name>/predict (Ctrl-C stops it; queued predictions are flushed)."""
    from mloop.core.errors import NotReadyError

    name = deprecated(name, only, old="--name", new="the NAME argument")
    with user_errors():
        _check_model(name, None)
        settings = load_settings()
        from mloop.platform.serve_command import serve_command

        with err_console().status("packaging the champions"):
            spec = serve_command(settings, name, host=host, port=port)
        if spec is None:
            raise NotReadyError(
                "no registered model has a champion", fix="train one: mloop train NAME"
            )
    from mloop.core.service_urls import http_url

    err_console().print(
        f"serving {spec.describe()} ({', '.join(spec.model_tags)}) on "
        f"{http_url(host or settings.serving_host, port or settings.serve_port)}"
    )
    os.chdir(spec.cwd or Path.cwd())
    os.execvpe(spec.argv[0], spec.argv, {**os.environ, **spec.env})


def deploy_cmd(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Registered model name; default: the one model with a champion "
            "(name it when several have one).",
            callback=name_check("model"),
        ),
    ] = None,
    model_version: ModelVersionOpt = None,
    json_out: JsonOpt = False,
    old_version: OldVersionOpt = None,
) -> None:
    """Package a version and roll it into the running service, beside the other models (zero downtime;
    adds the model when it is not served yet; starts a service with every champion if none runs)."""
    from mloop.core.errors import MloopError

    version = deprecated(model_version, old_version, old="--version", new="--model-version")
    with user_errors(json_out):
        _check_model(name, version)
        settings = load_flow_settings()
        from mloop.platform.serve_command import default_model_name

        name = name or default_model_name(settings)
        from flows.deploy import deploy_flow

        with err_console().status(f"deploying {name} {version or 'champion'}"):
            try:
                result = deploy_flow(name=name, version=version)
            except MloopError:
                raise
            except Exception as exc:  # a flow failure (e.g. refused rollout) as a readable error
                raise MloopError(
                    f"deploy failed: {exc}", fix="the previous model keeps serving"
                ) from None
    if json_out:
        print_json(result)
        return
    console().print(
        f"[bold]{result.name}[/] v{result.version}: {result.action} at {result.url} ({result.backend})"
    )


def lineage_cmd(
    prediction_id: Annotated[
        str, typer.Option("--prediction-id", help="A prediction_id returned by /predict.")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Trace a prediction: model version -> MLflow run -> dataset md5 -> code commit -> .dvc pointer commit."""
    with user_errors(json_out):
        from serving.log.trace import resolve_prediction

        chain = resolve_prediction(read_settings(), prediction_id)
    if json_out:
        print_json(chain)
        return
    for label, value in chain.rows():
        console().print(f"[bold]{label:>14}[/]  {value}", highlight=False)
    for note in chain.notes:
        console().print(f"  [yellow]note:[/] {note}")


def feedback_cmd(
    path: Annotated[
        Path, typer.Argument(help="CSV or parquet file with columns prediction_id,label.")
    ],
    name: Annotated[
        str | None,
        typer.Argument(
            help="Model name; default: the one model with a champion.",
            callback=name_check("model"),
        ),
    ] = None,
    json_out: JsonOpt = False,
    old_model: Annotated[
        str | None, typer.Option("--model", hidden=True, callback=name_check("model"))
    ] = None,
) -> None:
    """Record ground-truth labels for earlier predictions (used by quality monitoring)."""
    from mloop.core.errors import NotFoundError, RejectedError

    model = deprecated(name, old_model, old="--model", new="the NAME argument")
    with user_errors(json_out):
        if not path.is_file():
            raise NotFoundError(f"file not found: {path}", fix="check the path")
        settings = load_settings()
        import pandas as pd

        from mloop.platform.serve_command import default_model_name
        from serving.log.feedback import record_labels
        from serving.log.remote_parts import remote_log

        frame = (
            pd.read_parquet(path)
            if path.suffix.lower() in (".parquet", ".pq")
            else pd.read_csv(path)
        )
        missing = {"prediction_id", "label"} - set(frame.columns)
        if missing:
            raise RejectedError(
                f"{path.name} lacks columns {sorted(missing)}",
                where=str(path),
                fix="provide prediction_id,label columns",
            )
        target = model or default_model_name(settings, "model the labels belong to (NAME)")
        # the service's trust rule: labels only for logged prediction ids, a different second label
        # is a recorded conflict (never an overwrite)
        outcome = record_labels(
            settings.state.feedback,
            target,
            frame,
            predictions_dir=settings.state.predictions,
            source={"via": "mloop feedback", "file": str(path)},
            remote=remote_log(settings),
        )
        if len(frame) and outcome.unknown == len(frame):
            from mloop.platform.registry_view import model_versions

            # labels for no logged prediction: an unknown model (3), else ids the log never saw (4)
            kind = RejectedError if model_versions(settings, target) else NotFoundError
            raise kind(
                f"none of the {len(frame)} prediction ids in {path.name} is in {target}'s prediction log"
                + ("" if kind is RejectedError else f", and model {target!r} is not registered"),
                where=str(path),
                fix="send labels for ids the prediction service answered (its prediction_id field)",
            )
    result = {"model": target, **outcome.answer(), "source": str(path)}
    if json_out:
        print_json(result)
        return
    console().print(
        f"recorded {outcome.recorded} labels for [bold]{target}[/] (duplicates {outcome.duplicates}, "
        f"conflicts {outcome.conflicts}, unknown ids {outcome.unknown})"
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("package")(package_cmd)
    app.command("serve")(serve_cmd)
    app.command("deploy")(deploy_cmd)
    app.command("lineage")(lineage_cmd)
    app.command("feedback")(feedback_cmd)

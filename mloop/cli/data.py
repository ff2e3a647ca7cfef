"""CLI commands for the data stage: ``generate``, ``ingest``, ``data list``, ``data get``, ``data contract``.

Also :func:`name_check`, the Typer callback every CLI module uses for dataset and model names: a
name that breaks the one rule (:mod:`mloop.core.names`) is refused before the command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from mloop.cli.common import (
    HELP_MARKUP,
    console,
    deprecated,
    err_console,
    error_document,
    load_flow_settings,
    load_settings,
    print_json,
    read_settings,
    user_errors,
)

if TYPE_CHECKING:
    from mloop.core.datasets import DatasetVersion

SCENARIO_HELP = (
    "baseline | covariate-shift | concept-drift | new-category | missing-surge | regime-change"
)

data_app = typer.Typer(
    help="Dataset versions: list, retrieve, show contracts.",
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
)


def name_check(what: str) -> Callable[[str | None], str | None]:
    """A Typer callback refusing a ``what`` (dataset, model) name that breaks the name rule (usage error, exit 2)."""

    def check(value: str | None) -> str | None:
        from mloop.core.errors import MloopError
        from mloop.core.names import check_name

        if value is None:
            return None
        try:
            return check_name(value, what)
        except MloopError as exc:
            raise typer.BadParameter(f"{exc.what}: {exc.fix}") from None

    return check


def generate_cmd(
    out: Annotated[
        Path,
        typer.Option("--out", help="Output file; .csv or .parquet (format from the extension)."),
    ],
    scenario: Annotated[str, typer.Option(help=SCENARIO_HELP)] = "baseline",
    rows: Annotated[int, typer.Option(min=1, help="Number of rows.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bytes.")] = 42,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (path, rows, md5).")
    ] = False,
) -> None:
    """Write a deterministic loan-default demo dataset (label `target`, timestamp `event_time`)."""
    from mloop.core.errors import UsageError
    from mloop.core.frames import file_md5
    from mloop.core.generate import SCENARIOS, generate, write_frame

    with user_errors(json_out):
        if scenario not in SCENARIOS:
            raise UsageError(
                f"unknown scenario {scenario!r}", fix=f"use one of: {', '.join(SCENARIOS)}"
            )
        if out.suffix.lower() not in (".csv", ".parquet"):
            raise UsageError(
                f"unsupported output extension {out.suffix or '(none)'!r}",
                fix="use .csv or .parquet",
            )
        with err_console().status(f"generating {rows:,} rows ({scenario})"):
            df = generate(scenario, rows, seed)
            path = write_frame(df, out)
        info = {
            "path": str(path.resolve()),
            "scenario": scenario,
            "rows": len(df),
            "columns": len(df.columns),
            "seed": seed,
            "md5": file_md5(path),
            "positive_share": round(float(df["target"].mean()), 4),
        }
    if json_out:
        print_json(info)
    else:
        console().print(
            f"wrote [bold]{info['path']}[/] ({info['rows']:,} rows x {info['columns']} columns, "
            f"scenario {scenario}, {info['positive_share']:.1%} positives, md5 {info['md5']})"
        )


def _print_version(version, created: bool, contract_path: str | None = None) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None)
    for key, value in (
        ("dataset", version.name),
        ("md5", version.md5),
        ("rows", f"{version.rows:,}"),
        ("columns", str(len(version.columns))),
        ("created_at", version.created_at.isoformat(timespec="seconds")),
        ("path", version.path),
        ("git commit", version.git_commit or "-"),
        (
            "status",
            "new version" if created else "identical to an existing version (nothing written)",
        ),
    ):
        table.add_row(f"[bold]{key}[/]", value)
    if contract_path:
        table.add_row("[bold]contract[/]", contract_path)
    console().print(table)


def ingest_cmd(
    path: Annotated[
        str,
        typer.Argument(help="CSV or parquet file to ingest (in team mode also s3://bucket/key)."),
    ],
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset", help="Dataset name (also the model name).", callback=name_check("dataset")
        ),
    ],
    target: Annotated[
        str | None, typer.Option(help="Label column (first ingest; default 'target').")
    ] = None,
    task: Annotated[
        Literal["classification", "regression"] | None,
        typer.Option(help="classification | regression (first ingest; inferred when omitted)."),
    ] = None,
    time_column: Annotated[
        str | None,
        typer.Option(help="Event-time column (first ingest; default: the only datetime column)."),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the version as one JSON object (key md5 is the version)."
        ),
    ] = False,
) -> None:
    """Check a file against the dataset's contract (inferred on first ingest) and version it with DVC.

    Runs the Prefect flow `ingest` (PREFECT_API_URL, else a local server on the configured port,
    else a temporary one). Exit code 4 and a report naming each failed rule when the data is rejected.
    """
    from mloop.core.contract import contract_path
    from mloop.core.datasets import DataRejected, is_s3_uri, list_versions

    with user_errors(json_out):
        source = path.strip() if is_s3_uri(path) else str(Path(path).expanduser().resolve())
        if not is_s3_uri(source) and not Path(source).exists():
            from mloop.core.errors import NotFoundError

            raise NotFoundError(f"file not found: {path}", fix="check the path")
        settings = load_flow_settings()
        before = {v.md5 for v in list_versions(settings, dataset)}
        try:
            with err_console().status(f"ingesting {source.rsplit('/', 1)[-1]} into {dataset}"):
                from flows.ingest import ingest_flow

                version = ingest_flow(
                    path=source, dataset=dataset, target=target, task=task, time_column=time_column
                )
        except DataRejected as exc:
            if not json_out:
                raise
            # one JSON document: the error object with the rejection report in it
            doc = error_document(exc.exit_code, exc.what, hint=exc.fix, where=exc.where)
            print_json({**doc, "rejected": True, "dataset": dataset, "report": exc.report})
            raise typer.Exit(exc.exit_code) from None
        created = version.md5 not in before
    contract = str(contract_path(settings.project_dir, dataset))
    if json_out:
        print_json({**version.model_dump(mode="json"), "created": created, "contract": contract})
    else:
        _print_version(version, created, contract)


def list_cmd(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Dataset name (omit to list the datasets).", callback=name_check("dataset")
        ),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print a JSON list of versions (md5, rows, created_at, ...)."),
    ] = False,
) -> None:
    """List the versions of a dataset, newest first (without NAME: the datasets and their latest version)."""
    from rich import box
    from rich.table import Table

    from mloop.core.datasets import list_datasets, list_versions
    from mloop.core.errors import NotFoundError

    # set in the block below: user_errors() turns an error into an exit, it never swallows one
    rows: list[dict[str, Any]] = []
    versions: list[DatasetVersion] = []
    with user_errors(json_out):
        settings = read_settings()
        if name is None:
            latest = {n: list_versions(settings, n) for n in list_datasets(settings)}
            rows = [{"name": n, "versions": len(v), "latest": v[0]} for n, v in latest.items() if v]
        else:
            versions = list_versions(settings, name)
            if not versions:
                raise NotFoundError(
                    f"dataset {name!r} has no versions",
                    fix=f"ingest one: mloop ingest FILE --dataset {name} (datasets: mloop data list)",
                )
    if name is None:
        if json_out:
            print_json(rows)
            return
        table = Table(title=f"{len(rows)} dataset(s)", box=box.SIMPLE_HEAD)
        for col in ("dataset", "versions", "latest md5", "rows", "created (UTC)"):
            table.add_column(col, no_wrap=True, min_width=32 if col == "latest md5" else None)
        for row in rows:
            v = row["latest"]
            table.add_row(
                row["name"],
                str(row["versions"]),
                v.md5,
                f"{v.rows:,}",
                f"{v.created_at:%Y-%m-%d %H:%M}",
            )
        console().print(table)
        return
    if json_out:
        print_json(versions)
        return
    table = Table(title=f"{name}: {len(versions)} version(s), newest first", box=box.SIMPLE_HEAD)
    for col in ("md5", "rows", "created (UTC)", "commit"):
        table.add_column(col, no_wrap=True, min_width=32 if col == "md5" else None)
    for v in versions:
        table.add_row(
            v.md5, f"{v.rows:,}", f"{v.created_at:%Y-%m-%d %H:%M}", (v.git_commit or "-")[:8]
        )
    console().print(table)


def get_cmd(
    name: Annotated[str, typer.Argument(help="Dataset name.", callback=name_check("dataset"))],
    out: Annotated[
        Path, typer.Option("--out", help="Where to write the parquet bytes of the version.")
    ],
    data_version: Annotated[
        str | None,
        typer.Option(
            "--data-version", help="Dataset version md5 (or a unique prefix); default: latest."
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (path, md5, rows).")
    ] = False,
    old_version: Annotated[str | None, typer.Option("--version", hidden=True)] = None,
) -> None:
    """Write the exact bytes of a dataset version (from the DVC cache, or the remote), md5-verified."""
    from mloop.core.datasets import export_version, get_version
    from mloop.core.frames import file_md5

    version = deprecated(data_version, old_version, old="--version", new="--data-version")
    with user_errors(json_out):
        settings = load_settings()
        info = get_version(settings, name, version)
        with err_console().status(f"fetching {name} {info.md5}"):
            path = export_version(settings, name, info.md5, out)
        result = {
            "path": str(path.resolve()),
            "dataset": name,
            "md5": file_md5(path),
            "rows": info.rows,
            "verified": True,
        }
    if json_out:
        print_json(result)
    else:
        console().print(
            f"wrote [bold]{result['path']}[/] ({name} {info.md5}, {info.rows:,} rows, md5 verified)"
        )


def contract_cmd(
    name: Annotated[str, typer.Argument(help="Dataset name.", callback=name_check("dataset"))],
    json_out: Annotated[bool, typer.Option("--json", help="Print the contract as JSON.")] = False,
) -> None:
    """Show the data contract of a dataset (data/NAME/contract.yaml)."""
    from mloop.core.contract import contract_to_yaml, load_contract

    with user_errors(json_out):
        contract = load_contract(read_settings().project_dir, name)
    if json_out:
        print_json(contract)
    else:
        console().print(contract_to_yaml(contract), markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("generate")(generate_cmd)
    app.command("ingest")(ingest_cmd)
    data_app.command("list")(list_cmd)
    data_app.command("get")(get_cmd)
    data_app.command("contract")(contract_cmd)
    app.add_typer(data_app, name="data")

"""The data commands through the real CLI (Typer CliRunner), with the session Prefect server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from mloop.cli.app import app
from mloop.core.frames import file_md5
from mloop.core.settings import Settings

runner = CliRunner()


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Point the CLI at the test's MLOOP_HOME and project.

    The CLI applies ``settings.service_env()`` to this process; setting the same keys through
    monkeypatch first means every one of them is restored after the test.
    """
    for key, value in settings.service_env().items():
        monkeypatch.setenv(key, value)
    return settings


def run(*args: str) -> Result:
    return runner.invoke(app, list(args))


def test_help_on_every_data_command() -> None:
    for argv in (
        ["generate"],
        ["ingest"],
        ["data"],
        ["data", "list"],
        ["data", "get"],
        ["data", "contract"],
    ):
        result = run(*argv, "--help")
        assert result.exit_code == 0, result.output
        assert "--json" in result.output or argv == ["data"]


def test_generate_json_and_determinism(tmp_path: Path) -> None:
    a = run(
        "generate",
        "--scenario",
        "missing-surge",
        "--rows",
        "300",
        "--seed",
        "3",
        "--out",
        str(tmp_path / "a.csv"),
        "--json",
    )
    b = run(
        "generate",
        "--scenario",
        "missing-surge",
        "--rows",
        "300",
        "--seed",
        "3",
        "--out",
        str(tmp_path / "b.csv"),
        "--json",
    )
    assert a.exit_code == 0 and b.exit_code == 0, a.output
    info = json.loads(a.stdout)
    assert info["rows"] == 300 and info["md5"] == json.loads(b.stdout)["md5"] == file_md5(
        tmp_path / "a.csv"
    )


def test_generate_refuses_unknown_scenario_and_extension(tmp_path: Path) -> None:
    bad = run("generate", "--scenario", "sideways", "--out", str(tmp_path / "a.csv"))
    assert bad.exit_code == 2 and "unknown scenario 'sideways'" in bad.stderr
    ext = run("generate", "--rows", "10", "--out", str(tmp_path / "a.xlsx"))
    assert ext.exit_code == 2 and "unsupported output extension" in ext.stderr


def test_ingest_list_get_round_trip(
    prefect_server: object, cli_env: Settings, tmp_path: Path
) -> None:
    v1_file, v2_file, bad_file = tmp_path / "v1.csv", tmp_path / "v2.parquet", tmp_path / "bad.csv"
    assert run("generate", "--rows", "1200", "--seed", "1", "--out", str(v1_file)).exit_code == 0
    assert run("generate", "--rows", "1200", "--seed", "2", "--out", str(v2_file)).exit_code == 0
    assert (
        run(
            "generate", "--rows", "1200", "--scenario", "new-category", "--out", str(bad_file)
        ).exit_code
        == 0
    )

    first = run(
        "ingest",
        str(v1_file),
        "--dataset",
        "loans",
        "--target",
        "target",
        "--time-column",
        "event_time",
        "--json",
    )
    assert first.exit_code == 0, first.output
    v1 = json.loads(first.stdout)
    assert v1["created"] is True and v1["rows"] == 1200 and len(v1["md5"]) == 32
    second = run("ingest", str(v2_file), "--dataset", "loans", "--json")
    assert second.exit_code == 0, second.output
    v2 = json.loads(second.stdout)
    again = run("ingest", str(v2_file), "--dataset", "loans", "--json")
    assert (
        json.loads(again.stdout)["md5"] == v2["md5"]
        and json.loads(again.stdout)["created"] is False
    )

    rejected = run("ingest", str(bad_file), "--dataset", "loans")
    assert rejected.exit_code == 4
    assert (
        "unknown_category_share" in rejected.stderr
        and "loan_purpose" in rejected.stderr
        and "crypto" in rejected.stderr
    )
    rejected_json = run("ingest", str(bad_file), "--dataset", "loans", "--json")
    assert rejected_json.exit_code == 4
    assert (
        json.loads(rejected_json.stdout)["report"]["failures"][0]["rule"]
        == "unknown_category_share"
    )

    listed = run("data", "list", "loans", "--json")
    assert listed.exit_code == 0
    versions = json.loads(listed.stdout)
    assert [v["md5"] for v in versions] == [v2["md5"], v1["md5"]]
    assert all({"md5", "rows", "created_at"} <= set(v) for v in versions)
    table = run("data", "list", "loans")
    assert v1["md5"] in table.stdout  # full md5, copyable
    datasets = json.loads(run("data", "list", "--json").stdout)
    assert [(d["name"], d["versions"], d["latest"]["md5"]) for d in datasets] == [
        ("loans", 2, v2["md5"])
    ]

    shutil.rmtree(cli_env.state.dvc_cache)
    (cli_env.project_dir / "data" / "loans" / "loans.parquet").unlink()
    out = tmp_path / "restored" / "v1.parquet"
    got = run("data", "get", "loans", "--data-version", v1["md5"], "--out", str(out), "--json")
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout)["md5"] == v1["md5"] == file_md5(out)

    contract = run("data", "contract", "loans")
    assert contract.exit_code == 0 and "max_null_share" in contract.stdout


def test_cli_errors_are_readable(cli_env: Settings, tmp_path: Path) -> None:
    missing = run("ingest", str(tmp_path / "nope.csv"), "--dataset", "loans")
    assert missing.exit_code == 3 and "file not found" in missing.stderr
    unknown = run(
        "data", "get", "loans", "--data-version", "abc123", "--out", str(tmp_path / "x.parquet")
    )
    assert unknown.exit_code == 3 and "has no versions" in unknown.stderr
    listed = run("data", "list", "loans", "--json")  # an unknown dataset: 3, the error as JSON
    assert listed.exit_code == json.loads(listed.stdout)["code"] == 3
    assert run("data", "contract", "loans").exit_code == 3


def test_unreachable_prefect_api_is_a_clear_error(
    cli_env: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mloop.core.processes import free_port

    path = tmp_path / "v.csv"
    assert run("generate", "--rows", "50", "--out", str(path)).exit_code == 0
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    result = run("ingest", str(path), "--dataset", "loans")
    assert result.exit_code == 5  # not ready: the platform is not running
    assert "the Prefect API is not reachable" in result.stderr and "mloop up" in result.stderr
    assert (
        json.loads(run("data", "list", "loans", "--json").stdout)["code"] == 3
    )  # nothing ingested

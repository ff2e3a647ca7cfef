"""The facts README.md and docs/ state match their sources, so the docs cannot drift from the code.

- deployments, their triggers, schedules and concurrency limits: the deployments table of
  docs/architecture.md §3 against prefect.yaml (and every "N deployments" the docs say);
- every settings table (``MLOOP_*``): each variable exists, README's two tables list every field of
  ``Settings`` and ``ServingSettings``, and the defaults they state are the fields' defaults;
- every ``mloop ...`` command in a code block parses with the CLI's own parser (click); every
  option the CLI reference names exists, with the default it states, and its list of commands
  without ``--json`` is right;
- every ``MLOOP_*`` name the docs mention is a setting or a documented variable the code uses;
- the ``MLOOP_HOME`` tree of README.md lists what the code writes there, and nothing else;
- no section is named after an issue number.

The comparisons live in :mod:`tests.core.docs_facts`; the tests below also feed them a changed copy
of a source to show each one catches a drift.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from mloop.cli.app import app
from mloop.core.paths import CODE_ROOT, StatePaths
from mloop.core.settings import Settings
from serving.api.config import ServingSettings
from tests.core import docs_facts as facts

README = CODE_ROOT / "README.md"
ARCHITECTURE = CODE_ROOT / "docs" / "architecture.md"
DOCS = (README, *sorted((CODE_ROOT / "docs").glob("*.md")))
SOURCE_DIRS = ("mloop", "flows", "models", "serving", "monitoring", "deploy")
"""Where a documented environment variable that is not a setting must be read or set."""


def _texts() -> dict[str, str]:
    return {str(p.relative_to(CODE_ROOT)): p.read_text() for p in DOCS}


def _setting_defaults() -> dict[str, Any]:
    return {
        name: facts.field_default(info)
        for name, info in facts.env_fields(Settings, ServingSettings).items()
    }


def _prefect_yaml() -> dict[str, Any]:
    doc = yaml.safe_load((CODE_ROOT / "prefect.yaml").read_text())
    assert isinstance(doc, dict)
    return doc


def _code_deployments(doc: dict[str, Any]) -> dict[str, facts.Deployment]:
    return facts.deployments_from_yaml(doc, CODE_ROOT, _setting_defaults())


def _doc_deployments() -> dict[str, facts.Deployment]:
    return facts.deployments_from_doc(ARCHITECTURE.read_text())


# ---------------------------------------------------------------- deployments


def test_the_deployments_table_is_prefect_yaml() -> None:
    code = _code_deployments(_prefect_yaml())
    assert len(code) >= 8, code.keys()
    assert facts.deployment_problems(code, _doc_deployments()) == []


def test_a_deployment_added_to_prefect_yaml_without_the_docs_fails() -> None:
    doc = _prefect_yaml()
    changed = copy.deepcopy(doc)
    changed["deployments"].append(
        {
            "name": "nightly",
            "entrypoint": "flows/train.py:train_flow",
            "work_pool": {"name": "mloop-local"},
        }
    )
    problems = facts.deployment_problems(_code_deployments(changed), _doc_deployments())
    assert problems == [
        "deployment train/nightly is in prefect.yaml but not in the docs' deployments table"
    ]
    counts = facts.deployment_count_problems(
        {"doc": f"{len(doc['deployments'])} deployments"}, len(changed["deployments"])
    )
    assert len(counts) == 1, counts


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["schedules"][0].update(active=True), "schedules"),
        (lambda d: d["concurrency_limit"].update(limit=1), "concurrency"),
        (lambda d: d["triggers"][0]["expect"].append("mloop.model.trained"), "events"),
        (lambda d: d["triggers"][0]["parameters"].pop("trigger"), "parameters"),
        (lambda d: d["triggers"][0].update(name="mloop-retrain-on-anything"), "triggers"),
        (
            lambda d: d["triggers"][0]["match"].update({"prefect.resource.id": "mloop.*"}),
            "resources",
        ),
        (
            lambda d: d["triggers"][0]["match_related"]["prefect.resource.name"].append("ingest"),
            "related",
        ),
    ],
)
def test_a_changed_deployment_fails(change: Any, field: str) -> None:
    """A schedule turned on, a limit, an expected event, a parameter, a trigger's name, the resources
    or the related flows it matches, changed in prefect.yaml, each make the comparison fail, naming what."""
    changed = _prefect_yaml()
    target = {
        "schedules": "flows/train.py:train_flow",
        "related": "flows/recover.py:recover_flow",
    }.get(field, "flows/retrain.py:retrain_flow")
    [deployment] = [d for d in changed["deployments"] if d["entrypoint"] == target]
    change(deployment)
    problems = facts.deployment_problems(_code_deployments(changed), _doc_deployments())
    assert problems, field
    assert all(field in p or "not in" in p for p in problems), problems


def test_the_docs_state_the_real_deployment_count() -> None:
    count = len(_code_deployments(_prefect_yaml()))
    assert facts.deployment_count_problems(_texts(), count) == []


def test_concurrency_limits_named_in_prose_are_prefect_yaml_s() -> None:
    code = _code_deployments(_prefect_yaml())
    assert facts.concurrency_mention_problems(_texts(), code) == []
    wrong = {"x": "`concurrency_limit` 1, `CANCEL_NEW` on `retrain/local`"}
    assert len(facts.concurrency_mention_problems(wrong, code)) == 1


# ---------------------------------------------------------------- settings


def _other_variables() -> dict[str, str]:
    """README's "Other environment variables" table: name -> row."""
    table = facts.tables(facts.section(README.read_text(), "Other environment variables"))[0]
    return {facts.ticked(row[0])[0]: " | ".join(row) for row in table.rows}


def _table_names(heading: str) -> set[str]:
    rows = facts.setting_rows(facts.section(README.read_text(), heading), "README.md")
    return {r.variable for r in rows}


def test_readme_settings_table_lists_every_setting_and_nothing_else() -> None:
    table = _table_names("Settings") - _table_names("Serving process settings")
    table -= _table_names("Other environment variables")
    assert table == set(facts.env_fields(Settings))


def test_readme_serving_table_lists_every_serving_setting_and_nothing_else() -> None:
    assert _table_names("Serving process settings") == set(facts.env_fields(ServingSettings))


def test_every_settings_table_names_real_variables_with_their_defaults() -> None:
    fields = facts.env_fields(Settings, ServingSettings)
    known = set(fields) | set(_other_variables())
    rows = [r for where, text in _texts().items() for r in facts.setting_rows(text, where)]
    assert len(rows) > len(fields), "the settings tables were not found"
    assert [f"{r.where}: {r.variable}" for r in rows if r.variable not in known] == []
    # ServingSettings and Settings have no name in common, so one lookup serves both tables.
    assert not set(facts.env_fields(Settings)) & set(facts.env_fields(ServingSettings))
    assert facts.default_problems(rows, fields) == []


def test_a_wrong_default_or_an_unknown_variable_fails() -> None:
    fields = facts.env_fields(Settings, ServingSettings)
    markdown = (
        "| variable | default |\n|---|---|\n| `MLOOP_GATE_RESAMPLES` | `999` |\n"
        "| `MLOOP_SERVE_STRICT` | `1` |\n| `MLOOP_MAX_BODY_BYTES` | 16 MiB |\n"
        "| `MLOOP_NOTIFY_URL` | (unset) |\n| `MLOOP_HOST` | the loopback address |\n"
    )
    rows = facts.setting_rows(markdown, "x")
    problems = facts.default_problems(rows, fields)
    assert [p.split(": ")[1].split()[0] for p in problems] == [
        "MLOOP_GATE_RESAMPLES",
        "MLOOP_SERVE_STRICT",
    ]
    assert facts.unknown_mentions({"x": "set MLOOP_GATE_METRICS or MLOOP_GATE_*"}, fields) == [
        "x:1 mentions MLOOP_GATE_METRICS, which no setting or documented variable has"
    ]


def test_other_variables_are_read_or_set_by_the_code() -> None:
    sources = [
        p.read_text(errors="replace")
        for d in SOURCE_DIRS
        for p in (CODE_ROOT / d).rglob("*")
        if p.is_file() and p.suffix in (".py", ".yaml", ".sh", "") and "__pycache__" not in p.parts
    ] + [(CODE_ROOT / "prefect.yaml").read_text()]
    others = _other_variables()
    assert {"MLOOP_DASK_ADDRESS", "MLOOP_CODE_DIR"} <= set(others)
    unused = [name for name in others if not any(name in text for text in sources)]
    assert unused == [], "documented variables nothing reads or sets"
    assert not set(others) & set(facts.env_fields(Settings, ServingSettings))


def test_every_mloop_variable_the_docs_mention_exists() -> None:
    known = set(facts.env_fields(Settings, ServingSettings)) | set(_other_variables())
    assert facts.unknown_mentions(_texts(), known) == []


# ---------------------------------------------------------------- commands


@pytest.fixture(scope="module")
def root() -> Iterator[Any]:
    with facts.without_file_checks(typer.main.get_command(app)) as command:
        yield command


def _examples() -> list[tuple[str, list[str]]]:
    return [
        example
        for path in DOCS
        for example in facts.command_examples(path.read_text(), str(path.relative_to(CODE_ROOT)))
    ]


def test_every_command_example_parses(root: Any) -> None:
    examples = _examples()
    readme = [e for e in examples if e[0].startswith("README.md")]
    assert len(readme) >= 8, readme
    failed = []
    for where, argv in examples:
        try:
            facts.parse_command(root, argv)
        except Exception as exc:  # click's UsageError, BadParameter ...: each is a wrong example
            failed.append(f"{where}: mloop {' '.join(argv)}: {exc}")
    assert failed == []


@pytest.mark.parametrize(
    "argv",
    [
        ["ingest", "f.csv", "--dataset", "churn", "--no-such-option"],
        ["no-such-command"],
        ["monitor", "churn", "--window-sizes", "5"],
        ["data", "lists"],
        ["ingest"],
        ["train", "--dataset", "churn", "--test-size", "many"],
    ],
)
def test_a_wrong_command_example_fails_to_parse(root: Any, argv: list[str]) -> None:
    with pytest.raises(Exception):  # noqa: B017  # click raises several UsageError kinds
        facts.parse_command(root, argv)


def test_file_checks_are_off_only_inside_the_block(tmp_path: Path) -> None:
    """A command whose path argument must exist (none of mloop's checks that while parsing since its
    errors are its own; a small app stands in) parses an example's missing file only inside the block."""
    small = typer.Typer()

    @small.command()
    def feedback(path: Path = typer.Argument(..., exists=True), name: str = "x") -> None:
        """Read PATH."""

    @small.command()
    def other() -> None:
        """A second command, so that the app is a group."""

    missing = ["feedback", str(tmp_path / "labels.csv"), "--name", "churn"]
    with facts.without_file_checks(typer.main.get_command(small)) as command:
        assert facts.parse_command(command, missing) == ["feedback"]
    with pytest.raises(Exception, match="does not exist"):
        facts.parse_command(typer.main.get_command(small), missing)


def test_command_examples_are_found_in_code_blocks() -> None:
    text = (
        "```\nmloop ingest a.csv --dataset x   # comment --bogus\n$ mloop up && mloop down\n"
        'uv run mloop status\neval "$(mloop infra env)"\n# mloop not-this\n```\nmloop not-code\n'
    )
    assert [argv for _, argv in facts.command_examples(text, "x")] == [
        ["ingest", "a.csv", "--dataset", "x"],
        ["up"],
        ["down"],
        ["status"],
        ["infra", "env"],
    ]


def test_the_cli_reference_names_only_real_options(root: Any) -> None:
    options = facts.command_options(root)
    defaults = facts.option_defaults(root)
    table = facts.tables(facts.section(README.read_text(), "CLI reference"))[0]
    wrong = []
    for row in table.rows:
        for command in facts.ticked(row[0]):
            words = command.split()[1:]
            path = " ".join(w for w in words if re.fullmatch(r"[a-z][a-z-]*", w))
            if path not in options:
                path = " ".join(path.split()[:1])  # `mloop monitor MODEL`: the group's default
                path = f"{path} check" if f"{path} check" in options else path
            if path not in options:
                wrong.append(f"{command}: no such command")
                continue
            for token in facts.ticked(row[2]):
                for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", token):
                    if option not in options[path]:
                        wrong.append(f"{command}: no option {option}")
            wrong += _default_problems(command, row[2], defaults.get(path, {}))
    assert wrong == []


def _default_problems(command: str, cell: str, defaults: dict[str, Any]) -> list[str]:
    """ "`--rows` (100000)": a number in parentheses right after an option is its default."""
    wrong = []
    for option, said in re.findall(r"`(--[a-z][a-z0-9-]*)[^`]*` \((\d+(?:\.\d+)?)\)", cell):
        real = defaults.get(option)
        if real is not None and not (
            isinstance(real, int | float) and abs(float(said) - real) < 1e-9
        ):
            wrong.append(
                f"{command}: {option} default is documented as {said}, the CLI has {real!r}"
            )
    return wrong


def test_the_json_exceptions_are_the_commands_without_json(root: Any) -> None:
    """ "Every command except `serve`, ... accepts `--json`" names exactly the commands without it."""
    text = facts.section(README.read_text(), "CLI reference")
    match = re.search(r"Every command except (.*?) accepts `--json`", text, flags=re.S)
    assert match, "README's CLI reference no longer says which commands lack --json"
    without = {path for path, opts in facts.command_options(root).items() if "--json" not in opts}
    assert set(facts.ticked(match.group(1))) == without


# ---------------------------------------------------------------- state


def _code_state_entries(root: Path) -> set[str]:
    """The top-level names the code writes under MLOOP_HOME (StatePaths and the files outside it)."""
    from mloop.core.outbox import outbox_dir
    from mloop.core.secrets import secrets_path
    from mloop.platform.infra import InfraPaths
    from monitoring.model_config import config_dir
    from monitoring.policy import ledger_path
    from monitoring.reference_cache import cache_path
    from monitoring.sweep import mark_path
    from monitoring.webhook import notifications_path
    from serving.api.rollout_record import rolled_out_path

    state = StatePaths(root=root)
    paths = [
        getattr(state, name)
        for name, attr in vars(StatePaths).items()
        if isinstance(attr, property) and isinstance(getattr(state, name), Path)
    ]
    paths += [
        outbox_dir(root),
        secrets_path(root),
        InfraPaths(root).root,
        config_dir(root),
        ledger_path(root),
        cache_path(root, "m", "1", "abc", 0, 1),
        mark_path(root, "m"),
        notifications_path(root),
        rolled_out_path(root, "m"),
    ]
    return {p.relative_to(root).parts[0] for p in paths if p != root}


def test_the_state_tree_is_what_the_code_writes(tmp_path: Path) -> None:
    block = facts.section(README.read_text(), "Where state lives").split("```")[1]
    assert block.strip().splitlines()[0] == "$MLOOP_HOME/"
    documented = facts.tree_entries(block)
    assert documented == _code_state_entries(tmp_path)


# ---------------------------------------------------------------- wording


def test_no_doc_cites_an_issue_number() -> None:
    cited = [
        f"{where}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
        for where, text in _texts().items()
        for m in re.finditer(r"(?i)\bissues? #?\d+|§ ?issue", text)
    ]
    assert cited == []

"""The facts README.md and docs/ state, read from the markdown, and the same facts read from their sources.

Each ``*_problems`` function compares the two and returns what differs, one readable line per
problem (empty: the docs tell the truth). They are pure given their arguments, so a test can feed
them a changed copy of a source (a deployment added to a parsed prefect.yaml) and see the
difference reported. ``tests/core/test_docs_facts.py`` runs them on the real files.

Formats the docs keep so the facts can be read (each table says so where it stands):

- the deployments table of docs/architecture.md §3: one row per deployment, columns
  ``deployment | entrypoint | trigger: events | parameters from the event | schedule | concurrency``;
- settings tables: first column ``variable`` or ``setting`` holding a backticked ``MLOOP_*`` name, and
  a ``default`` column where a backticked or plain literal (``(unset)``, ``true``, ``1000``, ``16 MiB``,
  JSON) is compared with the field's default and any other text is a description;
- command examples: lines of fenced code blocks that run ``mloop ...``.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

# ---------------------------------------------------------------- markdown


@dataclass(frozen=True)
class Table:
    """One markdown table: its header cells, its rows (cells, backslash-escaped pipes undone) and
    the 1-based line of its header."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    line: int


_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_TICKED = re.compile(r"`([^`]+)`")


def cells(line: str) -> tuple[str, ...]:
    """The cells of one ``| a | b |`` table line, stripped, ``\\|`` read as ``|``."""
    inner = line.strip().removeprefix("|").removesuffix("|")
    return tuple(c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(inner))


def tables(text: str) -> list[Table]:
    """Every table of a markdown text (a header line, a ``|---|`` line, then rows)."""
    lines = text.splitlines()
    found: list[Table] = []
    i = 0
    while i < len(lines) - 1:
        if lines[i].lstrip().startswith("|") and re.match(r"^\s*\|[\s:|-]+\|\s*$", lines[i + 1]):
            header, rows, j = cells(lines[i]), [], i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                rows.append(cells(lines[j]))
                j += 1
            found.append(Table(header, tuple(rows), i + 1))
            i = j
        else:
            i += 1
    return found


def section(text: str, heading: str) -> str:
    """The text under the heading whose title is ``heading`` (any level), up to the next heading of
    the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, flags=re.M)
    if match is None:
        raise AssertionError(f"no heading {heading!r}")
    level = len(match.group(1))
    rest = text[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, flags=re.M)
    return rest[: end.start()] if end else rest


def code_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) of every line inside a fenced code block."""
    out: list[tuple[int, str]] = []
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().startswith("```"):
            inside = not inside
            continue
        if inside:
            out.append((number, line))
    return out


def ticked(cell: str) -> list[str]:
    """The backticked tokens of a cell, in order."""
    return _TICKED.findall(cell)


# ---------------------------------------------------------------- deployments


@dataclass(frozen=True)
class Schedule:
    cron: str
    timezone: str
    active: bool
    switch: str | None
    """The MLOOP_* setting that turns the schedule on or off at deploy time (None: fixed)."""
    parameters: frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Deployment:
    """What the docs say about one deployment, and what prefect.yaml says."""

    name: str
    entrypoint: str
    triggers: frozenset[str]
    resources: frozenset[str]
    """The ``prefect.resource.id`` patterns the triggers match (none: any resource)."""
    related: frozenset[str]
    """The names of the related resources the triggers require (``match_related``: which flows)."""
    events: frozenset[str]
    parameters: frozenset[str]
    schedules: frozenset[Schedule]
    concurrency: tuple[int, str] | None


_TEMPLATE_VAR = re.compile(r"^\{\{\s*\$([A-Z][A-Z0-9_]*)\s*\}\}$")


def flow_name(code_root: Path, entrypoint: str) -> str:
    """The ``@flow(name=...)`` of a ``path.py:function`` entrypoint, read from the source (no import)."""
    path, _, function = entrypoint.partition(":")
    tree = ast.parse((code_root / path).read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and getattr(deco.func, "id", None) == "flow":
                    for kw in deco.keywords:
                        if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                            return str(kw.value.value)
            return function.replace("_", "-")  # Prefect's own default name
    raise AssertionError(f"prefect.yaml entrypoint {entrypoint} names no function in {path}")


def _schedule_from_yaml(raw: Mapping[str, Any], setting_defaults: Mapping[str, Any]) -> Schedule:
    active = raw.get("active", True)
    switch = None
    if isinstance(active, str):
        match = _TEMPLATE_VAR.match(active.strip())
        if match is None:
            raise AssertionError(
                f"schedule {raw.get('cron')}: active {active!r} is neither a bool nor a variable"
            )
        switch = match.group(1)
        active = bool(setting_defaults[switch])
    params = frozenset((str(k), str(v)) for k, v in (raw.get("parameters") or {}).items())
    return Schedule(str(raw["cron"]), str(raw.get("timezone", "UTC")), bool(active), switch, params)


def deployments_from_yaml(
    doc: Mapping[str, Any], code_root: Path, setting_defaults: Mapping[str, Any]
) -> dict[str, Deployment]:
    """Every deployment of a parsed prefect.yaml, by ``<flow>/<name>``. ``setting_defaults`` maps an
    ``MLOOP_*`` name to its default: a schedule whose ``active`` is ``{{ $MLOOP_X }}`` is as active as
    that setting is by default."""
    out: dict[str, Deployment] = {}
    for raw in doc.get("deployments") or []:
        name = f"{flow_name(code_root, raw['entrypoint'])}/{raw['name']}"
        triggers = raw.get("triggers") or []
        limit = raw.get("concurrency_limit")
        if isinstance(limit, int):
            limit = {"limit": limit, "collision_strategy": "ENQUEUE"}
        out[name] = Deployment(
            name=name,
            entrypoint=str(raw["entrypoint"]),
            triggers=frozenset(str(t["name"]) for t in triggers),
            resources=frozenset(
                str(r)
                for t in triggers
                for r in _listed((t.get("match") or {}).get("prefect.resource.id"))
            ),
            related=frozenset(
                str(r)
                for t in triggers
                for r in _listed((t.get("match_related") or {}).get("prefect.resource.name"))
            ),
            events=frozenset(str(e) for t in triggers for e in t.get("expect") or []),
            parameters=frozenset(str(p) for t in triggers for p in (t.get("parameters") or {})),
            schedules=frozenset(
                _schedule_from_yaml(s, setting_defaults) for s in raw.get("schedules") or []
            ),
            concurrency=(
                (int(limit["limit"]), str(limit.get("collision_strategy", "ENQUEUE")))
                if limit
                else None
            ),
        )
    return out


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


DEPLOYMENT_COLUMNS = (
    "deployment",
    "entrypoint",
    "trigger: events",
    "parameters from the event",
    "schedule",
    "concurrency",
)


def _schedule_from_cell(text: str) -> Schedule:
    tokens = ticked(text)
    if not tokens:
        raise AssertionError(f"schedule cell {text!r} has no `cron`")
    after = text.split(f"`{tokens[0]}`", 1)[1]
    zone = re.match(r"\s*([A-Za-z_/]+)", after)
    inactive = re.search(r"\binactive\b", text) is not None
    if not inactive and re.search(r"\bactive\b", text) is None:
        raise AssertionError(f"schedule cell {text!r} says neither active nor inactive")
    switch = re.search(r"\b(MLOOP_[A-Z0-9_]+)", text)
    params = frozenset(re.findall(r"`(\w+)` = `([^`]*)`", text))
    return Schedule(
        tokens[0],
        zone.group(1) if zone else "",
        not inactive,
        switch.group(1) if switch else None,
        params,
    )


def _none(cell: str) -> bool:
    return cell.strip() in ("", "-", "—")


def _related(trigger: str) -> list[str]:
    """The flows named in "... of a train, retrain or deploy run" (a trigger on other flows' runs)."""
    match = re.search(r"\bof an? ([\w, -]+?) run\b", trigger)
    return re.split(r",\s*|\s+or\s+", match.group(1)) if match else []


def deployments_from_doc(markdown: str) -> dict[str, Deployment]:
    """The deployments table of docs/architecture.md (the one table whose header is
    :data:`DEPLOYMENT_COLUMNS`), by deployment name."""
    found = [t for t in tables(markdown) if t.header == DEPLOYMENT_COLUMNS]
    if len(found) != 1:
        raise AssertionError(
            f"expected one deployments table {DEPLOYMENT_COLUMNS}, found {len(found)}"
        )
    out: dict[str, Deployment] = {}
    for row in found[0].rows:
        name, entry, trigger, params, schedule, limit = row
        resources = re.findall(r"\bresource `([^`]+)`", trigger)
        tokens = [t for t in ticked(trigger) if t not in resources]
        concurrency = None
        if not _none(limit):
            number = re.search(r"\d+", limit)
            strategy = re.search(r"ENQUEUE|CANCEL_NEW", limit)
            if number is None or strategy is None:
                raise AssertionError(f"{name}: concurrency {limit!r} is not `N, STRATEGY`")
            concurrency = (int(number.group()), strategy.group())
        out[ticked(name)[0]] = Deployment(
            name=ticked(name)[0],
            entrypoint=ticked(entry)[0],
            triggers=frozenset(t for t in tokens if "." not in t and "*" not in t),
            resources=frozenset(resources),
            related=frozenset(_related(trigger)),
            events=frozenset(t for t in tokens if "." in t or "*" in t),
            parameters=frozenset(ticked(item)[0] for item in params.split(";") if ticked(item)),
            schedules=frozenset(
                _schedule_from_cell(s) for s in schedule.split("<br>") if not _none(s)
            ),
            concurrency=concurrency,
        )
    return out


def deployment_problems(code: Mapping[str, Deployment], doc: Mapping[str, Deployment]) -> list[str]:
    """What the documented deployments get wrong about prefect.yaml's (names, count, entrypoints,
    triggers and their events and parameters, schedules, concurrency limits)."""
    problems = [
        f"deployment {n} is in prefect.yaml but not in the docs' deployments table"
        for n in sorted(set(code) - set(doc))
    ]
    problems += [
        f"deployment {n} is in the docs' deployments table but not in prefect.yaml"
        for n in sorted(set(doc) - set(code))
    ]
    for name in sorted(set(code) & set(doc)):
        real, said = code[name], doc[name]
        for field in (
            "entrypoint",
            "triggers",
            "resources",
            "related",
            "events",
            "parameters",
            "schedules",
            "concurrency",
        ):
            if getattr(real, field) != getattr(said, field):
                problems.append(
                    f"deployment {name}: the docs say {field} {_show(getattr(said, field))}, "
                    f"prefect.yaml has {_show(getattr(real, field))}"
                )
    return problems


def _show(value: object) -> str:
    if isinstance(value, frozenset):
        return repr(sorted(value, key=repr))
    return repr(value)


_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
}


def deployment_count_problems(texts: Mapping[str, str], count: int) -> list[str]:
    """Every ``N deployments`` a doc states that is not the real count."""
    problems = []
    for where, text in texts.items():
        for match in re.finditer(
            r"\b(\d+|one|two|three|four|five|six|seven|eight) deployments\b", text
        ):
            said = match.group(1)
            n = int(said) if said.isdigit() else _NUMBER_WORDS[said]
            if n != count:
                line = text.count("\n", 0, match.start()) + 1
                problems.append(f"{where}:{line} says {match.group(0)!r}; prefect.yaml has {count}")
    return problems


_LIMIT_MENTION = re.compile(
    r"`concurrency_limit`\s+(\d+),?\s+`?(ENQUEUE|CANCEL_NEW)`?\s+on\s+`([\w-]+/[\w-]+)`"
)


def concurrency_mention_problems(
    texts: Mapping[str, str], code: Mapping[str, Deployment]
) -> list[str]:
    """Prose like "`concurrency_limit` 2, `ENQUEUE` on `remediate/local`" that prefect.yaml contradicts."""
    problems = []
    for where, text in texts.items():
        for match in _LIMIT_MENTION.finditer(text):
            limit, strategy, name = int(match.group(1)), match.group(2), match.group(3)
            real = code[name].concurrency if name in code else None
            if real != (limit, strategy):
                problems.append(f"{where}: {match.group(0)!r}, prefect.yaml has {real}")
    return problems


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class SettingRow:
    where: str
    variable: str
    default: str | None
    """The ``default`` cell (None: the table has no default column)."""


def setting_rows(markdown: str, where: str) -> list[SettingRow]:
    """The ``MLOOP_*`` rows of every settings table (first column ``variable`` or ``setting``)."""
    rows = []
    for table in tables(markdown):
        if table.header[0].lower() not in ("variable", "setting"):
            continue
        header = [h.lower() for h in table.header]
        col = header.index("default") if "default" in header else None
        for row in table.rows:
            for name in ticked(row[0]):
                if name.startswith("MLOOP_"):
                    rows.append(
                        SettingRow(
                            f"{where}:{table.line}", name, row[col] if col is not None else None
                        )
                    )
    return rows


def field_default(info: FieldInfo) -> Any:
    """A pydantic field's default (a default factory's value, e.g. ``[]``)."""
    return info.get_default(call_default_factory=True, validated_data={})


_SIZE = re.compile(r"^([\d.]+)\s*(KiB|MiB|GiB)$")
_SIZES = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_DESCRIBED = object()
"""A default cell that describes the default in words (compared with nothing)."""


def documented_value(cell: str, is_bool: bool) -> Any:
    """The value a default cell states, or :data:`_DESCRIBED` when it describes it in words."""
    text = cell.strip()
    quoted = len(ticked(text)) == 1 and text == f"`{ticked(text)[0]}`"
    if quoted:
        text = ticked(text)[0]
    if text == "(unset)":
        return None
    if is_bool and text.lower() in ("true", "false", "1", "0"):
        return text.lower() in ("true", "1")
    size = _SIZE.match(text)
    if size:
        return float(size.group(1)) * _SIZES[size.group(2)]
    try:
        return json.loads(text)
    except ValueError:
        return text if quoted else _DESCRIBED


def default_problems(rows: Iterable[SettingRow], fields: Mapping[str, FieldInfo]) -> list[str]:
    """Rows naming no field of ``fields`` (by ``MLOOP_<FIELD>``), and stated defaults that differ."""
    problems = []
    for row in rows:
        info = fields.get(row.variable)
        if info is None:
            continue  # not of this class: the caller checks every row names some known variable
        if row.default is None:
            continue
        said = documented_value(
            row.default, info.annotation is bool or "bool" in str(info.annotation)
        )
        if said is _DESCRIBED:
            continue
        real = field_default(info)
        if real is PydanticUndefined:
            continue
        same = (
            abs(float(said) - float(real)) < 1e-9
            if isinstance(said, int | float)
            and isinstance(real, int | float)
            and not isinstance(said, bool)
            else said == real
        )
        if not same:
            problems.append(
                f"{row.where}: {row.variable} default is documented as {row.default}, the code has {real!r}"
            )
    return problems


def env_fields(*classes: type[BaseModel]) -> dict[str, FieldInfo]:
    """``MLOOP_<FIELD>`` -> field of pydantic-settings classes with the ``MLOOP_`` prefix."""
    out: dict[str, FieldInfo] = {}
    for cls in classes:
        for name, info in cls.model_fields.items():
            out[f"MLOOP_{name.upper()}"] = info
    return out


def unknown_mentions(texts: Mapping[str, str], known: Iterable[str]) -> list[str]:
    """Every ``MLOOP_*`` name a doc mentions that no setting or documented variable has; a name
    ending in ``_*`` (``MLOOP_GATE_*``) must be the prefix of one."""
    names = set(known)
    problems = []
    for where, text in texts.items():
        for match in re.finditer(r"\bMLOOP_[A-Z0-9_]+\*?", text):
            word = match.group(0)
            if word.endswith("*"):
                ok = any(n.startswith(word[:-1]) for n in names)
            else:
                ok = word in names
            if not ok:
                line = text.count("\n", 0, match.start()) + 1
                problems.append(
                    f"{where}:{line} mentions {word}, which no setting or documented variable has"
                )
    return problems


# ---------------------------------------------------------------- command examples


def command_examples(text: str, where: str) -> list[tuple[str, list[str]]]:
    """(``file:line``, argv after ``mloop``) of every ``mloop`` command in the fenced code blocks:
    a line starting with ``mloop``, ``$ mloop`` or ``uv run mloop``, each ``&&``/``;``/``|`` part of it,
    and ``$(mloop ...)``. A ``# comment`` ends the command."""
    out = []
    for number, line in code_lines(text):
        commands: list[list[str]] = []
        try:
            start = _command_start(line)
            if start is not None:
                commands += _parts(shlex.split(line[start:], comments=True))
            for inner in re.findall(r"\$\((mloop [^)|;&]*)", line):
                commands += _parts(shlex.split(inner))
        except ValueError as exc:
            raise AssertionError(f"{where}:{number}: cannot split {line!r}: {exc}") from None
        out += [(f"{where}:{number}", argv[1:]) for argv in commands if argv and argv[0] == "mloop"]
    return out


def _command_start(line: str) -> int | None:
    """Where the ``mloop`` of a command line begins (None: the line does not run mloop first)."""
    match = re.match(
        r"^\s*(?:\$\s+)?(?:uv run\s+(?:--\S+\s+)*)?(?:\.venv/bin/)?(?=mloop(\s|$))", line
    )
    return match.end() if match else None


def _parts(words: list[str]) -> list[list[str]]:
    """A word list split at ``&&``, ``;``, ``|`` and ``||``."""
    parts: list[list[str]] = [[]]
    for word in words:
        if word in ("&&", ";", "|", "||"):
            parts.append([])
        else:
            parts[-1].append(word)
    return [p for p in parts if p]


def parse_command(root: Any, argv: list[str]) -> list[str]:
    """Parse ``mloop ARGV`` with click's own parser down the subcommand chain, as the CLI would
    before running anything; returns the command path. Raises click's UsageError for an unknown
    command or option, a missing argument or a bad value."""
    ctx = root.make_context("mloop", list(argv), resilient_parsing=False)
    cmd, path = root, []
    while hasattr(cmd, "commands"):
        args = [*ctx._protected_args, *ctx.args]
        if not args:
            break
        name, sub, rest = cmd.resolve_command(ctx, args)
        if sub is None or name is None:
            raise AssertionError(f"no command {args[0]!r}")
        path.append(name)
        ctx = sub.make_context(name, rest, parent=ctx, resilient_parsing=False)
        cmd = sub
    return path


@contextmanager
def without_file_checks(root: Any) -> Iterator[Any]:
    """``root`` with every path parameter's ``exists`` check off while the block runs, then back on:
    the files an example names (``labels.csv``) are the reader's, not this checkout's. Everything else
    (commands, options, counts, value types) is parsed as the CLI parses it. Each
    ``typer.main.get_command(app)`` builds its own parameter infos, so only ``root`` is changed, and
    only while the block runs."""
    infos: list[Any] = []
    for cmd in leaf_commands(root).values():
        for param in cmd.params:
            info = getattr(getattr(param, "type_descriptor", None), "parameter_info", None)
            if getattr(info, "exists", False):  # Typer's path check (typer._param_types)
                infos.append(info)
    try:
        for info in infos:
            info.exists = False
        yield root
    finally:
        for info in infos:
            info.exists = True


def leaf_commands(root: Any) -> dict[str, Any]:
    """``"monitor check"`` -> that command, for every command that is not a group."""
    out: dict[str, Any] = {}

    def walk(cmd: Any, path: list[str]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        else:
            out[" ".join(path)] = cmd

    walk(root, [])
    return out


def command_options(root: Any) -> dict[str, set[str]]:
    """``"monitor check"`` -> every option spelling of that command (``--window``, ``--no-publish`` ...)."""
    return {
        path: {
            o
            for p in cmd.params
            for o in (*p.opts, *getattr(p, "secondary_opts", ()))
            if o.startswith("-")
        }
        for path, cmd in leaf_commands(root).items()
    }


def option_defaults(root: Any) -> dict[str, dict[str, Any]]:
    """``"generate"`` -> ``{"--rows": 100000, ...}``: each option's default, by its first spelling."""
    return {
        path: {o: p.default for p in cmd.params for o in p.opts if o.startswith("--")}
        for path, cmd in leaf_commands(root).items()
    }


# ---------------------------------------------------------------- state tree


def tree_entries(block: str) -> set[str]:
    """The top-level names of a ``$MLOOP_HOME/`` tree: ``  name/...`` lines indented two spaces,
    ``{a,b}/`` read as both."""
    names: set[str] = set()
    for line in block.splitlines():
        match = re.match(r"^  (\S+)", line)
        if not match:
            continue
        first = match.group(1).split("/")[0]
        brace = re.fullmatch(r"\{([^}]*)\}", first)
        names.update(brace.group(1).split(",") if brace else [first])
    return names

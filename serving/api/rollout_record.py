"""What the prediction service rolled out, persisted so a restarted worker serves it again.

BentoML respawns a killed worker by running the service's ``__init__`` again with the environment the
service was started with, so without a record the worker would come back with the model it was
STARTED with, not the one rolled out since. ``/admin/rollout`` therefore writes
``<MLOOP_HOME>/serving/<model>/rolled-out.json`` (atomically: temporary file, fsync, rename) with the
rolled-out tag and the service's initial tag, and a starting worker asks :func:`startup_tag`.

The rule (:func:`startup_tag`, pure): the record wins when it was rolled out from the SAME initial
tag the worker is started with (a respawned worker, or the service restarted with the same
command), and its tag is in the BentoML store; a service started with another tag (e.g. a new
champion) serves that tag: the newest explicit instruction wins. A record whose tag is gone from
the store is ignored with a warning (the initial tag serves).

Many models (one service, :mod:`serving.api.modelset`): every model has its own record. A model in the
service's start tags keeps the rule above with its own start tag as the initial tag. A model ADDED
by a rollout (its name not among the start tags) is recorded with the service's whole start list
(:func:`start_key`, e.g. ``loans:v3,rates:v1``) as its initial tag, and :func:`startup_tags`
restores it when the worker is started with that same list (a respawn, or the same command again);
a service started with another list does not pick up models another service once added.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from mloop.core.files import write_atomic
from mloop.core.names import check_name, child_path

log = logging.getLogger(__name__)

SERVING_DIR = "serving"
ROLLED_OUT_FILE = "rolled-out.json"


@dataclass(frozen=True)
class RolledOut:
    """One persisted rollout."""

    model_name: str
    model_tag: str  # the BentoML tag now served, e.g. loans:v2
    initial_tag: str  # the tag the service was started with when it rolled out model_tag
    rolled_out_at: str  # ISO time, UTC


def model_name_of(tag: str) -> str:
    """The model name of a BentoML tag (``loans:v2`` -> ``loans``). Pure."""
    return tag.partition(":")[0]


def rolled_out_path(home: Path, model_name: str) -> Path:
    """``<home>/serving/<model_name>/rolled-out.json`` (the name is checked: no path escapes)."""
    return child_path(Path(home), SERVING_DIR, check_name(model_name, "model"), ROLLED_OUT_FILE)


def write_rolled_out(
    home: Path, model_tag: str, initial_tag: str, now: datetime | None = None
) -> RolledOut:
    """Persist that ``model_tag`` is served (a temporary file, fsynced, renamed into place)."""
    record = RolledOut(
        model_name=model_name_of(model_tag),
        model_tag=model_tag,
        initial_tag=initial_tag,
        rolled_out_at=(now or datetime.now(UTC)).isoformat(),
    )
    path = rolled_out_path(home, record.model_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, (json.dumps(asdict(record)) + "\n").encode())
    return record


def read_rolled_out(home: Path, model_name: str) -> RolledOut | None:
    """The persisted rollout of ``model_name``; None when there is none or it cannot be read (warned)."""
    path = rolled_out_path(home, model_name)
    try:
        data = json.loads(path.read_text())
        return RolledOut(
            **{k: str(data[k]) for k in ("model_name", "model_tag", "initial_tag", "rolled_out_at")}
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the unreadable rollout record %s: %s", path, exc)
        return None


def startup_tag(
    initial_tag: str, record: RolledOut | None, in_store: Callable[[str], bool]
) -> tuple[str, str | None]:
    """The tag a starting worker serves, and a warning to log (None: nothing to say). Pure given
    ``in_store`` (whether a tag is in the BentoML store)."""
    if (
        record is None
        or record.model_tag == initial_tag
        or record.model_name != model_name_of(initial_tag)
    ):
        return initial_tag, None
    if record.initial_tag != initial_tag:
        return (
            initial_tag,
            None,
        )  # started with another tag since that rollout: the newer instruction wins
    if not in_store(record.model_tag):
        return initial_tag, (
            f"the rolled-out model {record.model_tag} is not in the BentoML store any more; serving the "
            f"initial {initial_tag}"
        )
    return record.model_tag, None


def start_key(start_tags: Sequence[str]) -> str:
    """The initial tag recorded for a model a rollout ADDED: the service's start tags, joined. Pure."""
    return ",".join(start_tags)


def initial_tag_for(model_name: str, start_tags: Sequence[str]) -> str:
    """The initial tag of ``model_name``'s record: its own start tag, else :func:`start_key`. Pure."""
    for tag in start_tags:
        if model_name_of(tag) == model_name:
            return tag
    return start_key(start_tags)


def read_all_rolled_out(home: Path) -> dict[str, RolledOut]:
    """Every readable rollout record under ``<home>/serving/``, by model name."""
    root = Path(home) / SERVING_DIR
    out: dict[str, RolledOut] = {}
    if not root.is_dir():
        return out
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            record = read_rolled_out(home, folder.name)
        except Exception as exc:
            log.warning("ignoring %s: %s", folder, exc)
            continue
        if record is not None and record.model_name == folder.name:
            out[folder.name] = record
    return out


def startup_tags(
    start_tags: Sequence[str], records: Mapping[str, RolledOut], in_store: Callable[[str], bool]
) -> tuple[list[str], list[str]]:
    """The tags a starting worker serves (start models first, in order, then restored added ones by
    name) and the warnings to log. Pure given ``in_store``: :func:`startup_tag` per start model; an
    added model's record is restored when its initial tag is :func:`start_key` of ``start_tags``
    and its tag is in the store."""
    tags: list[str] = []
    warnings: list[str] = []
    names = {model_name_of(t) for t in start_tags}
    for tag in start_tags:
        chosen, warning = startup_tag(tag, records.get(model_name_of(tag)), in_store)
        tags.append(chosen)
        if warning:
            warnings.append(warning)
    key = start_key(start_tags)
    for name in sorted(records):
        record = records[name]
        if name in names or record.initial_tag != key:
            continue
        if in_store(record.model_tag):
            tags.append(record.model_tag)
        else:
            warnings.append(
                f"the added model {record.model_tag} is not in the BentoML store any more; not restored"
            )
    return tags, warnings

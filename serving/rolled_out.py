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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
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


def write_rolled_out(home: Path, model_tag: str, initial_tag: str, now: datetime | None = None) -> RolledOut:
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
        return RolledOut(**{k: str(data[k]) for k in ("model_name", "model_tag", "initial_tag", "rolled_out_at")})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the unreadable rollout record %s: %s", path, exc)
        return None


def startup_tag(initial_tag: str, record: RolledOut | None, in_store: Callable[[str], bool]) -> tuple[str, str | None]:
    """The tag a starting worker serves, and a warning to log (None: nothing to say). Pure given
    ``in_store`` (whether a tag is in the BentoML store)."""
    if record is None or record.model_tag == initial_tag or record.model_name != model_name_of(initial_tag):
        return initial_tag, None
    if record.initial_tag != initial_tag:
        return initial_tag, None  # started with another tag since that rollout: the newer instruction wins
    if not in_store(record.model_tag):
        return initial_tag, (
            f"the rolled-out model {record.model_tag} is not in the BentoML store any more; serving the "
            f"initial {initial_tag}"
        )
    return record.model_tag, None

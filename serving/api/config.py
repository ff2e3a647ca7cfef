"""The prediction service's own settings: one typed class, read once by the service process.

Every knob is an environment variable ``MLOOP_<FIELD>``. :mod:`serving.api.bento` builds one
:class:`ServingSettings` at import (BentoML builds the HTTP schema from the class at import, so the
request limits must be known then), and :func:`serving.control.process_spec.serve_env` writes the service
process's environment with :meth:`ServingSettings.to_env`: the names exist only here.

Platform-wide values the service also needs (MLOOP_HOME, MLOOP_SERVE_HOST, MLOOP_SERVE_PORT, the
token and the security settings: MLOOP_AUTH, MLOOP_API_TOKEN, MLOOP_PREDICT_REQUIRES_TOKEN,
MLOOP_ALLOWED_HOSTS, MLOOP_MAX_BODY_BYTES) stay in :class:`mloop.core.settings.Settings`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "MLOOP_"
MAX_RECORDS_DEFAULT = 1000
MAX_STRING_LENGTH_DEFAULT = 256
SERVE_MEMORY_MB_DEFAULT = 2048.0
"""Half of the issue's 4 GiB goal for 20 served models, the other half left to the process itself
(about 0.4 GB) and to request buffers: a small ONNX model costs well under 1 MB loaded (0.3 MB
each measured over 180 loads; see bench/serving_models.py for the serving tree), so hundreds of
them fit, while a box of big models (forests of hundreds of MB) unloads cold ones instead of
growing into swap."""
_OFF = ("0", "false", "no", "off")


def _flag(value: Any) -> bool:
    """The service's historic on/off rule: anything but 0/false/no/off (any case) is on."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in _OFF


def _threads(value: Any) -> int:
    """At least 1; a value that is not an integer means the default (1), as before."""
    try:
        return max(1, int(value))
    except (TypeError, ValueError):
        return 1


Flag = Annotated[bool, BeforeValidator(_flag)]


def tag_list(model_tags: str | Sequence[str]) -> list[str]:
    """One tag, a comma-separated string of tags, or a sequence of tags as a list (blanks and
    repeats dropped, order kept). Pure."""
    items = model_tags.split(",") if isinstance(model_tags, str) else list(model_tags)
    out: list[str] = []
    for tag in (t.strip() for t in items):
        if tag and tag not in out:
            out.append(tag)
    return out


class ServingSettings(BaseSettings):
    """Settings of one prediction service process (env prefix ``MLOOP_``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    serve_model: str = Field(
        default="",
        description="BentoML model tag the service loads first (<name>:v<version>); the same as a one-tag MLOOP_SERVE_MODELS.",
    )
    serve_models: str = Field(
        default="",
        description="Comma-separated BentoML model tags the service loads at start (loans:v3,rates:v1), one per model "
        "name; each is served at /models/<name>/..., the first one's contract types the legacy /predict.",
    )
    serve_memory_mb: float = Field(
        default=SERVE_MEMORY_MB_DEFAULT,
        ge=0,
        description="Memory budget of the loaded models, in MB (each model's measured cost): over it, the least "
        "recently used models are unloaded and reloaded on their next request. 0: no limit.",
    )
    prediction_log: Flag = Field(
        default=True,
        description="Write every answered record to the prediction log (0 turns it off).",
    )
    max_records: int = Field(
        default=MAX_RECORDS_DEFAULT,
        ge=1,
        description="Largest number of records in one /predict request.",
    )
    max_string_length: int = Field(
        default=MAX_STRING_LENGTH_DEFAULT,
        ge=1,
        description="Longest text value accepted in a request field.",
    )
    serve_strict: Flag = Field(
        default=False,
        description="Also refuse values outside the contract's numeric ranges (widened by range_tolerance) and category lists.",
    )
    batching: Flag = Field(
        default=True,
        description="BentoML adaptive batching of /predict (0 answers each request on its own).",
    )
    batch_max_size: int = Field(
        default=256, ge=1, description="Largest adaptive batch, in records."
    )
    batch_max_latency_ms: int = Field(
        default=5000, ge=1, description="Latency budget of the adaptive batcher, in ms."
    )
    batch_wait_bound: Flag = Field(
        default=True,
        description="mloop's fix of BentoML's batching wait (a cork that caught nobody stops corking).",
    )
    predlog_flush_rows: int = Field(
        default=5000,
        ge=1,
        description="The prediction log writes a part once this many rows are pending.",
    )
    predlog_flush_seconds: float = Field(
        default=1.0, gt=0, description="... or every this many seconds."
    )
    predlog_journal: Flag = Field(
        default=True,
        description="Write-ahead journal: every answered batch is appended to a journal file before its answer "
        "leaves, so a killed worker loses no logged prediction (0: in-memory buffer only).",
    )
    feedback_index_size: int = Field(
        default=1_000_000,
        ge=1,
        description="Prediction ids the service remembers for /feedback (about 80 MB at one million); older "
        "ids are looked up in the prediction log.",
    )
    onnx_threads: Annotated[int, BeforeValidator(_threads)] = Field(
        default=1, description="ONNX Runtime intra-op threads (1 on a small shared box)."
    )

    def tags(self) -> list[str]:
        """The start tags: ``serve_models`` in order, then ``serve_model`` if not among them (blanks
        and repeats dropped). Pure; raises ValueError for two tags of the same model name."""
        out = tag_list([*self.serve_models.split(","), self.serve_model])
        names = [t.partition(":")[0] for t in out]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(
                f"two start tags of the same model {doubled}: give one tag per model name ({out})"
            )
        return out

    def to_env(self) -> dict[str, str]:
        """The explicitly set values (arguments or environment) as environment variables, for the
        service process; unset fields are left out so the process applies its own defaults."""
        return {
            f"{ENV_PREFIX}{k.upper()}": _env_value(v)
            for k, v in self.model_dump(exclude_unset=True).items()
        }


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)

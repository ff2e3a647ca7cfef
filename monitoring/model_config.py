"""Per-model monitoring and retrain settings: window, minimum rows, cooldown, daily budget.

A model's overrides live in ``MLOOP_HOME/monitoring/models/<name>.json`` (set with
``mloop monitor configure NAME ...``); a field left unset follows the global setting
(``MLOOP_MONITOR_WINDOW_SIZE``, ``MLOOP_MONITOR_MIN_ROWS``, ``MLOOP_RETRAIN_COOLDOWN_MINUTES``,
``MLOOP_DAILY_RETRAIN_BUDGET``), so changing a global default still reaches every model that did not
choose its own. The monitor sweep and the retrain policy read the effective values
(:func:`resolve_config`) on every run: nothing is cached, no prefect.yaml edit is needed.

:func:`effective_config` is pure; the rest is the file edge (names checked by
:mod:`mloop.core.names`, atomic writes, an update under a file lock).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mloop.core.errors import MloopError
from mloop.core.names import check_name, child_path
from mloop.core.settings import Settings

GLOBAL_SETTINGS = {
    "window_size": "monitor_window_size",
    "min_rows": "monitor_min_rows",
    "retrain_cooldown_minutes": "retrain_cooldown_minutes",
    "daily_retrain_budget": "daily_retrain_budget",
}
"""Per-model field -> the :class:`Settings` field it falls back to (``MLOOP_<NAME>``)."""
CONFIG_FIELDS = tuple(GLOBAL_SETTINGS)
"""The per-model fields, in the order they are shown."""


class ModelMonitorConfig(BaseModel):
    """A model's own values; None = the global setting."""

    model_config = ConfigDict(extra="forbid")

    window_size: int | None = Field(
        default=None, ge=1, description="Check the newest N logged predictions."
    )
    min_rows: int | None = Field(
        default=None, ge=1, description="Fewer predictions in the window: skip the check."
    )
    retrain_cooldown_minutes: float | None = Field(
        default=None,
        ge=0,
        description="A retrain of this model within this many minutes of its last one is skipped.",
    )
    daily_retrain_budget: int | None = Field(
        default=None,
        ge=0,
        description="At most this many automatic retrains of this model a day (0: none).",
    )

    def overridden(self) -> list[str]:
        """The fields this model sets itself."""
        return [f for f in CONFIG_FIELDS if getattr(self, f) is not None]


class EffectiveModelConfig(BaseModel):
    """The values in force for one model: its own where set, else the global settings."""

    model_name: str
    window_size: int
    min_rows: int
    retrain_cooldown_minutes: float
    daily_retrain_budget: int
    overridden: list[str] = Field(default_factory=list, description="Fields the model sets itself.")


def global_defaults(settings: Settings) -> dict[str, int | float]:
    """The global settings every model falls back to."""
    return {field: getattr(settings, name) for field, name in GLOBAL_SETTINGS.items()}


def effective_config(
    settings: Settings, model_name: str, own: ModelMonitorConfig
) -> EffectiveModelConfig:
    """``own`` over the global defaults (pure)."""
    values = global_defaults(settings)
    values.update({f: getattr(own, f) for f in own.overridden()})
    # validated from a dict: the fields come from the settings by name, not as typed arguments
    return EffectiveModelConfig.model_validate(
        {"model_name": model_name, "overridden": own.overridden(), **values}
    )


def check_consistent(config: EffectiveModelConfig) -> EffectiveModelConfig:
    """Refuse a minimum that no window can reach (``min_rows > window_size``: the model would never be checked)."""
    if config.min_rows > config.window_size:
        raise MloopError(
            f"model {config.model_name}: min rows {config.min_rows} > window size {config.window_size}: "
            "the model would never be checked",
            fix="lower --min-rows or raise --window",
        )
    return config


def config_dir(state_root: Path) -> Path:
    """Where the per-model files live under MLOOP_HOME."""
    return state_root / "monitoring" / "models"


def config_path(state_root: Path, model_name: str) -> Path:
    """``<MLOOP_HOME>/monitoring/models/<name>.json`` for a name that follows the name rule."""
    return child_path(config_dir(state_root), check_name(model_name, "model") + ".json")


def load_model_config(state_root: Path, model_name: str) -> ModelMonitorConfig:
    """The model's own values (all None when it has no file); a broken file is a readable error."""
    path = config_path(state_root, model_name)
    if not path.is_file():
        return ModelMonitorConfig()
    try:
        return ModelMonitorConfig.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise MloopError(
            f"the monitoring config of model {model_name} is not valid: {exc.errors()[0]['msg']}",
            where=str(path),
            fix=f"set it again with `mloop monitor configure {model_name} ...` (or `--reset`)",
        ) from None


def resolve_config(settings: Settings, model_name: str) -> EffectiveModelConfig:
    """The values in force for ``model_name`` now (its file over the global settings)."""
    return effective_config(
        settings, model_name, load_model_config(settings.state.root, model_name)
    )


def update_model_config(
    settings: Settings,
    model_name: str,
    changes: dict[str, int | float | None],
    *,
    reset: bool = False,
) -> EffectiveModelConfig:
    """Apply ``changes`` (None values are left as they are) to the model's file under its lock and
    return the values now in force; ``reset`` first drops every own value. Nothing is written when
    the result is invalid (:func:`check_consistent`). The write is atomic."""
    from filelock import FileLock

    from mloop.core.files import write_atomic

    state_root = settings.state.root
    path = config_path(state_root, model_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=30):
        current = ModelMonitorConfig() if reset else load_model_config(state_root, model_name)
        merged = current.model_dump() | {k: v for k, v in changes.items() if v is not None}
        try:
            new = ModelMonitorConfig.model_validate(merged)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise MloopError(
                f"invalid {'.'.join(map(str, err['loc']))}: {err['msg']}", fix="see --help"
            ) from None
        effective = check_consistent(effective_config(settings, model_name, new))
        if new.overridden():
            write_atomic(path, new.model_dump_json(indent=2, exclude_none=True).encode() + b"\n")
        else:
            path.unlink(missing_ok=True)
        return effective


def configured_models(state_root: Path) -> list[str]:
    """Models that have a config file (sorted); files whose name breaks the rule are ignored."""
    from mloop.core.names import NAME_PATTERN

    folder = config_dir(state_root)
    if not folder.is_dir():
        return []
    return sorted(
        p.stem for p in folder.glob("*.json") if NAME_PATTERN.match(p.stem) and ".." not in p.stem
    )

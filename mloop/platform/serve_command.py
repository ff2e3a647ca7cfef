"""How the platform (``mloop up``) and ``mloop serve`` start the prediction service: one service
process holding every champion (``MLOOP_SERVE_MODELS``), or just the named model."""

from __future__ import annotations

from dataclasses import dataclass, field

from mloop.core.errors import NotReadyError, UsageError
from mloop.core.settings import Settings
from mloop.platform.services import ServeCommand
from serving.control.fleet import champion_versions, one_or_many
from serving.control.process_spec import CODE_ROOT, serve_argv, serve_env

__all__ = ["ServeSpec", "champion_versions", "default_model_name", "serve_command"]


@dataclass(frozen=True)
class ServeSpec(ServeCommand):
    """The platform's ServeCommand plus which models it serves (model name -> version, and the tags)."""

    model_tags: tuple[str, ...] = ()
    models: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """``loans v3, rates v1`` (for a person). Pure."""
        return ", ".join(f"{n} v{v}" for n, v in sorted(self.models.items()))


def default_model_name(settings: Settings, what: str = "model") -> str:
    """The one model with a champion, for commands whose model name is optional.

    Raises a :class:`MloopError` when no model has a champion, or when several do (never guesses one:
    the answer would silently be about the wrong model).
    """
    names = sorted(champion_versions(settings))
    if not names:
        raise NotReadyError("no registered model has a champion", fix="train one: mloop train NAME")
    if len(names) > 1:
        raise UsageError(
            f"{len(names)} models have a champion ({', '.join(names)}): name the {what}",
            fix=f"pass the model name, e.g. {names[0]}",
        )
    return names[0]


def serve_command(
    settings: Settings, name: str | None = None, *, host: str | None = None, port: int | None = None
) -> ServeSpec | None:
    """How to serve every champion (packaged first if needed), or only ``name``'s; None when nothing
    can be served (no champion, or none could be packaged).

    The service binds ``host`` or ``settings.serving_host`` (exposing predictions exposes nothing else).
    A champion that fails to package is logged and left out (:func:`serving.control.fleet.package_champions`);
    a named model that fails raises.
    """
    from serving.bundle.package import package_model
    from serving.control.fleet import package_champions

    if name is not None:
        packaged = {name: package_model(settings, name)}
    else:
        packaged = package_champions(settings)
    if not packaged:
        return None
    tags = tuple(p.model_tag for p in packaged.values())
    return ServeSpec(
        argv=serve_argv(host or settings.serving_host, port or settings.serve_port),
        env=serve_env(settings, one_or_many(tags)),
        cwd=CODE_ROOT,
        model_tags=tags,
        models={n: p.version for n, p in packaged.items()},
    )

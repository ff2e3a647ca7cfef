"""Manual promotion and rollback as flows (also what ``mloop promote`` / ``mloop rollback`` run).

Both move aliases through :mod:`models.registry`, which serializes alias changes per model with
a file lock and appends the audit record while holding it. Nothing is cached: these are side
effects, and a repeated promotion of the current champion is recorded as "skipped".
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from mloop.core import events
from mloop.core.artifacts import artifact_key
from mloop.core.names import ModelName
from mloop.core.settings import Settings
from mloop.core.shared import shared_records
from models.audit import AuditRecord


def _actor(default: str) -> tuple[str, str | None]:
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    return (f"flow:{flow_run.get_name()}" if run_id else default), (str(run_id) if run_id else None)


def _markdown(record: AuditRecord) -> str:
    return (
        "\n".join(
            [
                f"# {record.action.title()} `{record.model_name}`: {record.outcome}",
                "",
                "| field | value |",
                "|---|---|",
                f"| champion before | {record.from_version or '-'} |",
                f"| champion after | {record.to_version or '-'} |",
                f"| reason | {record.reason} |",
                f"| by | {record.actor} |",
                f"| when | {record.when.isoformat()} |",
                *([f"| detail | {record.detail} |"] if record.detail else []),
            ]
        )
        + "\n"
    )


@flow(name="promote")
def promote_flow(
    name: ModelName, version: str, reason: str, actor: str | None = None
) -> AuditRecord:
    """Make a registered version the champion (the old champion becomes previous-champion).

    Args:
        name: Registered model name (= dataset name).
        version: Version number to promote.
        reason: Why: recorded in the audit log, the registry tags and the event.
        actor: Who asked (default: this flow run).
    """
    from models.registry import get_version_info, promote

    settings = Settings()
    who, run_id = _actor("cli")
    record = promote(
        settings.tracking_uri,
        settings.state,
        name,
        str(version),
        reason=reason,
        actor=actor or who,
        flow_run_id=run_id,
        records=shared_records(settings),
    )
    create_markdown_artifact(
        key=artifact_key("promote", name), markdown=_markdown(record), description=f"promote {name}"
    )
    if record.outcome == "applied":
        info = get_version_info(settings.tracking_uri, name, record.to_version or version)
        events.emit(
            events.MODEL_PROMOTED,
            events.model_resource(name),
            {
                "version": record.to_version,
                "previous": record.from_version,
                "metrics": info.metrics,
                "reason": reason,
                "manual": True,
            },
        )
    get_run_logger().info("promote %s v%s: %s %s", name, version, record.outcome, record.detail)
    return record


@flow(name="rollback")
def rollback_flow(name: ModelName, reason: str, actor: str | None = None) -> AuditRecord:
    """Put the previous champion back (champion <- previous-champion).

    Args:
        name: Registered model name (= dataset name).
        reason: Why: recorded in the audit log, the registry tags and the event.
        actor: Who asked (default: this flow run).
    """
    from models.registry import get_version_info, rollback

    settings = Settings()
    who, run_id = _actor("cli")
    record = rollback(
        settings.tracking_uri,
        settings.state,
        name,
        reason=reason,
        actor=actor or who,
        flow_run_id=run_id,
        records=shared_records(settings),
    )
    create_markdown_artifact(
        key=artifact_key("rollback", name),
        markdown=_markdown(record),
        description=f"rollback {name}",
    )
    info = get_version_info(settings.tracking_uri, name, record.to_version or "champion")
    events.emit(
        events.MODEL_ROLLED_BACK,
        events.model_resource(name),
        {
            "version": record.to_version,
            "from_version": record.from_version,
            "metrics": info.metrics,
            "reason": reason,
        },
    )
    get_run_logger().info("rollback %s: v%s -> v%s", name, record.from_version, record.to_version)
    return record

"""The ingest flow on the session Prefect server: event and artifact are really emitted."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mloop.core import events
from mloop.core.datasets import DataRejected, list_versions
from mloop.core.generate import generate, write_frame
from mloop.core.settings import Settings

if TYPE_CHECKING:
    from prefect.events.schemas.events import ReceivedEvent


def read_versioned_events(resource_id: str) -> list[ReceivedEvent]:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    with get_client(sync_client=True) as client:
        page = client.read_events(
            filter=EventFilter(
                event=EventNameFilter(name=[events.DATASET_VERSIONED]),
                resource=EventResourceFilter(id=[resource_id]),
            ),
            limit=50,
        )
    return list(page.events)


def wait_for_events(resource_id: str, count: int, timeout: float = 60.0) -> list[ReceivedEvent]:
    deadline = time.monotonic() + timeout
    found: list[ReceivedEvent] = []
    while time.monotonic() < deadline:
        found = read_versioned_events(resource_id)
        if len(found) >= count:
            return found
        time.sleep(0.5)
    return found


def test_ingest_flow_emits_versioned_event_and_artifact(
    prefect_server: object, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.ingest import ingest_flow

    monkeypatch.setenv("MLOOP_HOME", str(settings.state.root))
    monkeypatch.setenv("MLOOP_PROJECT_DIR", str(settings.project_dir))
    name = f"flowtest-{tmp_path.name[-12:].lower().replace('_', '-')}"
    path = write_frame(generate("baseline", 800, 1), tmp_path / "v1.csv")
    version = ingest_flow(path=str(path), dataset=name)
    assert [v.md5 for v in list_versions(settings, name)] == [version.md5]

    found = wait_for_events(events.dataset_resource(name), 1)
    assert len(found) == 1, found
    event = found[0]
    assert event.resource.id == f"mloop.dataset.{name}"
    assert (
        event.payload["md5"] == version.md5
        and event.payload["rows"] == 800
        and event.payload["dataset"] == name
    )

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"dataset-{name}"]))
        )
    assert artifacts and isinstance(artifacts[0].data, str), artifacts  # markdown: its text
    assert version.md5 in artifacts[0].data

    bad = write_frame(generate("baseline", 800, 1).drop(columns=["region"]), tmp_path / "bad.csv")
    with pytest.raises(DataRejected, match="column 'region' is missing"):
        ingest_flow(path=str(bad), dataset=name)
    with get_client(sync_client=True) as client:
        latest = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"dataset-{name}"]))
        )
    assert any("rejected" in (a.data or "") and "missing_column" in (a.data or "") for a in latest)

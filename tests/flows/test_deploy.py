"""The deploy flow with many models: what a deploy of one model does to the service (switch it, add
it, nothing, or start a service with every champion), and that it never touches another model.

The service, the packaging and the launcher are stubbed (they have tests of their own); the last
test runs the flow itself on the session Prefect server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flows.deploy import deploy_action, rollout_task
from mloop.core.settings import Settings
from serving.control.rollout_client import RolloutFailed

URL = "http://127.0.0.1:9"
LOANS = {"model_name": "loans", "model_version": "3", "bentoml_tag": "loans:v3", "loaded": True}
RATES = {"model_name": "rates", "model_version": "1", "bentoml_tag": "rates:v1", "loaded": False}


def test_deploy_action_looks_only_at_the_deployed_model() -> None:
    served = {"loans": LOANS, "rates": RATES}
    assert deploy_action(served, "rates", "rates:v2") == ("rolled-out", "1")
    assert deploy_action(served, "rates", "rates:v1") == ("already-serving", "1")
    assert deploy_action(served, "apples", "apples:v1") == ("added", None)
    assert deploy_action({}, "loans", "loans:v1") == (
        "added",
        None,
    )  # a service serving nothing yet
    assert deploy_action({"loans": LOANS}, "rates", "rates:v2") == ("added", None)


@dataclass
class FakeService:
    """What the stubbed service serves, and every call the deploy made to it."""

    models: dict[str, dict[str, Any]] | None
    champions: list[str] = field(default_factory=lambda: ["loans:v3", "rates:v1"])
    won_race: bool = True
    rollouts: list[str] = field(default_factory=list)
    started: list[Any] = field(default_factory=list)

    def served_models(
        self, url: str, timeout: float = 10, deadline: float = 10, *, token: str | None = None
    ) -> Any:
        if self.models is None:
            raise RolloutFailed(f"the prediction service at {url} is not reachable")
        return dict(self.models)

    def rollout(self, url: str, model_tag: str, **kw: Any) -> dict[str, Any]:
        self.rollouts.append(model_tag)
        return {"status": "switched"}

    def start_service(self, settings: Settings, tags: Any, **kw: Any) -> Any:
        self.started.append(tags)
        if not self.won_race:  # another starter's service, with the champions only
            self.models = {"loans": LOANS, "rates": RATES}
        return type("Proc", (), {"started": self.won_race, "pid": 1})()


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> FakeService:
    import serving.control.fleet
    import serving.control.process_spec
    import serving.control.rollout_client

    fake = FakeService(models={"loans": LOANS, "rates": RATES})
    monkeypatch.setattr(serving.control.fleet, "served_models", fake.served_models)
    monkeypatch.setattr(
        serving.control.fleet,
        "champion_tags",
        lambda settings, champions=None: list(fake.champions),
    )
    monkeypatch.setattr(serving.control.rollout_client, "rollout", fake.rollout)
    monkeypatch.setattr(serving.control.process_spec, "start_service", fake.start_service)
    return fake


@pytest.fixture
def plain_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", auth=False)


def test_a_new_version_of_one_model_is_rolled_out_alone(
    service: FakeService, plain_settings: Settings
) -> None:
    assert rollout_task.fn(plain_settings, "rates", "rates:v2", URL) == ("rolled-out", "1")
    assert service.rollouts == ["rates:v2"] and service.started == []


def test_a_model_not_served_yet_is_added(service: FakeService, plain_settings: Settings) -> None:
    assert rollout_task.fn(plain_settings, "apples", "apples:v1", URL) == ("added", None)
    assert service.rollouts == ["apples:v1"] and service.started == []


def test_a_model_already_served_is_left_alone(
    service: FakeService, plain_settings: Settings
) -> None:
    assert rollout_task.fn(plain_settings, "loans", "loans:v3", URL) == ("already-serving", "3")
    assert service.rollouts == [] and service.started == []


def test_without_a_service_one_is_started_with_every_champion(
    service: FakeService, plain_settings: Settings
) -> None:
    service.models = None
    assert rollout_task.fn(plain_settings, "rates", "rates:v2", URL) == ("started", None)
    assert service.started == [
        ["loans:v3", "rates:v2"]
    ]  # this version in place of its champion, loans too
    assert service.rollouts == []
    service.started.clear()
    service.champions = []
    assert rollout_task.fn(plain_settings, "loans", "loans:v1", URL) == ("started", None)
    assert service.started == [
        "loans:v1"
    ]  # one tag: the single-model form every service understands


def test_a_service_another_starter_won_gets_the_model_rolled_in(
    service: FakeService, plain_settings: Settings
) -> None:
    service.models, service.won_race = None, False
    assert rollout_task.fn(plain_settings, "apples", "apples:v1", URL) == ("added", None)
    assert service.rollouts == ["apples:v1"]


@pytest.mark.integration
def test_the_flow_reports_and_emits_per_model(
    service: FakeService, settings: Settings, monkeypatch: pytest.MonkeyPatch, prefect_server: Any
) -> None:
    import serving.bundle.package
    from flows.deploy import deploy_flow
    from mloop.core import events
    from serving.bundle.package import PackagedModel

    monkeypatch.setenv("MLOOP_HOME", str(settings.state.root))
    monkeypatch.setenv("MLOOP_PROJECT_DIR", str(settings.project_dir))
    monkeypatch.setenv("MLOOP_AUTH", "false")
    calls: list[tuple[bool, list[str]]] = []  # (build, what had been rolled out by then)

    def package_model(
        s: Settings, name: str, version: str | None = None, *, build: bool = True
    ) -> PackagedModel:
        calls.append((build, list(service.rollouts)))
        return PackagedModel(
            name=name,
            version="2",
            model_tag=f"{name}:v2",
            bento_tag=f"{name}-service:v2" if build else None,
            backend="onnx",
            created=True,
        )

    monkeypatch.setattr(serving.bundle.package, "package_model", package_model)
    emitted: list[tuple[str, str, dict[str, Any]]] = []
    monkeypatch.setattr(
        events, "emit", lambda event, resource, payload: emitted.append((event, resource, payload))
    )
    result = deploy_flow(name="rates")
    assert (result.name, result.version, result.action, result.previous_version) == (
        "rates",
        "2",
        "rolled-out",
        "1",
    )
    assert service.rollouts == ["rates:v2"]
    # The model first (what the service loads), the Bento only once the new version answers.
    assert calls == [(False, []), (True, ["rates:v2"])]
    assert result.bento_tag == "rates-service:v2"
    assert [(e, r) for e, r, _ in emitted] == [
        (events.MODEL_DEPLOYED, events.model_resource("rates"))
    ]
    assert emitted[0][2]["model"] == "rates" and emitted[0][2]["action"] == "rolled-out"

    from prefect.client.orchestration import get_client

    from mloop.core.artifacts import artifact_key

    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[artifact_key("deploy", "rates")])
            )
        )
    assert found and "Deploy `rates` version 2: rolled-out" in str(found[-1].data)

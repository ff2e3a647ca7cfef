"""The fleet (:mod:`serving.control.fleet`): which models need a deploy, what a new service starts with, the
``GET /models`` client (and its fallback to a single-model service), packaging every champion
with one broken model left out. No server: HTTP and packaging are stubbed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import serving.control.fleet as fleet
import serving.control.rollout_client as rollout_client
from mloop.core.settings import Settings
from serving.control.rollout_client import RolloutFailed

URL = "http://127.0.0.1:9"


def routes(answers: dict[str, tuple[int, Any] | Exception]) -> Callable[..., httpx.Response]:
    """Stands in for :func:`mloop.core.http.request`: an answer (status, JSON) or an error per path."""

    def fake(method: str, url: str, **kwargs: Any) -> httpx.Response:
        path = url.removeprefix(URL)
        answer = answers.get(path, (404, {"error": "not found"}))
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        return httpx.Response(status, json=body, request=httpx.Request(method, url))

    return fake


LOANS = {"model_name": "loans", "model_version": "3", "bentoml_tag": "loans:v3", "loaded": True}
RATES = {"model_name": "rates", "model_version": "1", "bentoml_tag": "rates:v1", "loaded": False}


def test_to_deploy_lists_only_the_models_that_differ() -> None:
    champions = {"loans": "3", "rates": "2", "apples": "1"}
    served = {"loans": "3", "rates": "1", "gone": "9"}
    assert fleet.to_deploy(champions, served) == {
        "apples": "apples is not served, champion of apples is version 1",
        "rates": "serving rates version 1, champion of rates is version 2",
    }
    assert fleet.to_deploy(champions, {"loans": "3", "rates": "2", "apples": "1"}) == {}
    assert fleet.to_deploy({}, served) == {}  # a served model without champion: nothing to deploy


def test_served_versions_and_the_answers_parsed() -> None:
    assert fleet.models_of({"models": {"loans": LOANS, "rates": RATES}}) == {
        "loans": LOANS,
        "rates": RATES,
    }
    assert fleet.models_of({"models": []}) == {} and fleet.models_of(["x"]) == {}
    assert fleet.models_of({"models": {"loans": LOANS, "bad": "x"}}) == {"loans": LOANS}
    assert fleet.served_versions(
        {"loans": LOANS, "rates": {**RATES, "model_version": 1}, "x": {}}
    ) == {"loans": "3", "rates": "1"}
    assert fleet.single_model_answer({k: v for k, v in LOANS.items() if k != "loaded"}) == {
        "loans": LOANS
    }
    assert fleet.single_model_answer({"error": "no model loaded yet"}) == {}


def test_start_tags_put_the_deployed_version_in_place_of_its_champion() -> None:
    champions = ["loans:v3", "rates:v1"]
    assert fleet.start_tags(champions, "loans:v4") == [
        "loans:v4",
        "rates:v1",
    ]  # not two versions of loans
    assert fleet.start_tags(champions, "apples:v1") == [
        "apples:v1",
        "loans:v3",
        "rates:v1",
    ]  # a new model
    assert fleet.start_tags([], "loans:v1") == ["loans:v1"]
    assert fleet.one_or_many(["loans:v1"]) == "loans:v1"
    assert fleet.one_or_many(["loans:v1", "rates:v1"]) == ["loans:v1", "rates:v1"]


def test_served_models_lists_every_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        rollout_client,
        "request",
        routes({"/models": (200, {"models": {"loans": LOANS, "rates": RATES}})}),
    )
    assert fleet.served_models(URL) == {"loans": LOANS, "rates": RATES}
    assert fleet.current_model(URL, "rates") == RATES
    with pytest.raises(RolloutFailed, match="does not serve 'apples'"):
        fleet.current_model(URL, "apples")
    monkeypatch.setattr(rollout_client, "request", routes({"/models": (200, {"models": {}})}))
    assert fleet.served_models(URL) == {}  # a service that serves nothing: empty, and only then


def test_served_models_of_a_single_model_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service without ``/models`` (404 there) is asked ``GET /model``: its one model, loaded."""
    one = {k: v for k, v in LOANS.items() if k != "loaded"}
    monkeypatch.setattr(rollout_client, "request", routes({"/model": (200, one)}))
    assert fleet.served_models(URL) == {"loans": LOANS}
    monkeypatch.setattr(
        rollout_client, "request", routes({"/model": (503, {"error": "no model loaded yet"})})
    )
    with pytest.raises(RolloutFailed, match="no model loaded yet"):
        fleet.served_models(URL)


def test_served_models_never_answers_empty_for_an_unreachable_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        rollout_client, "request", routes({"/models": httpx.ConnectError("refused")})
    )
    with pytest.raises(RolloutFailed, match="not reachable"):
        fleet.served_models(URL)
    monkeypatch.setattr(rollout_client, "request", routes({"/models": (500, {"error": "boom"})}))
    with pytest.raises(RolloutFailed, match="boom"):
        fleet.served_models(URL)


def test_one_model_failing_to_package_leaves_the_others_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serving.bundle.package as package
    from serving.bundle.package import PackagedModel

    def fake_package(
        settings: Settings, name: str, version: str | None = None, **kw: Any
    ) -> PackagedModel:
        if name == "broken":
            raise RuntimeError("ONNX and skops both failed")
        return PackagedModel(
            name=name,
            version=str(version),
            model_tag=f"{name}:v{version}",
            backend="onnx",
            created=False,
        )

    monkeypatch.setattr(package, "package_model", fake_package)
    settings = Settings(home=tmp_path / "home")
    champions = {"rates": "1", "broken": "2", "loans": "3"}
    packaged = fleet.package_champions(settings, champions)
    assert list(packaged) == ["loans", "rates"] and packaged["loans"].version == "3"
    assert fleet.champion_tags(settings, champions) == ["loans:v3", "rates:v1"]
    assert fleet.champion_tags(settings, {}) == []
    monkeypatch.setattr(fleet, "champion_versions", lambda s: {"loans": "3"})
    assert fleet.champion_tags(settings) == ["loans:v3"]  # default: the registry's champions


def test_serve_command_serves_every_champion_or_only_the_named_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mloop.platform.serve_command as serve
    import serving.bundle.package as package
    from serving.bundle.package import PackagedModel

    def fake_package(
        settings: Settings, name: str, version: str | None = None, **kw: Any
    ) -> PackagedModel:
        version = version or {"loans": "3", "rates": "1"}[name]
        return PackagedModel(
            name=name,
            version=version,
            model_tag=f"{name}:v{version}",
            backend="onnx",
            created=False,
        )

    monkeypatch.setattr(package, "package_model", fake_package)
    monkeypatch.setattr(fleet, "champion_versions", lambda s: {"loans": "3", "rates": "1"})
    envs: list[Any] = []
    monkeypatch.setattr(
        serve, "serve_env", lambda settings, tags, **kw: envs.append(tags) or {"MLOOP_X": "1"}
    )
    settings = Settings(home=tmp_path / "home")

    spec = serve.serve_command(settings)
    assert spec is not None and spec.model_tags == ("loans:v3", "rates:v1")
    assert spec.models == {"loans": "3", "rates": "1"} and spec.describe() == "loans v3, rates v1"
    assert envs[-1] == ["loans:v3", "rates:v1"]  # ONE service holding both (MLOOP_SERVE_MODELS)
    assert "--port" in spec.argv and spec.env == {"MLOOP_X": "1"}

    only = serve.serve_command(settings, "rates")
    assert only is not None and only.model_tags == ("rates:v1",) and envs[-1] == "rates:v1"

    monkeypatch.setattr(fleet, "champion_versions", lambda s: {})
    assert serve.serve_command(settings) is None


def test_a_model_name_is_only_defaulted_when_exactly_one_model_has_a_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mloop.platform.serve_command as serve
    from mloop.core.errors import MloopError

    settings = Settings(home=tmp_path / "home")
    monkeypatch.setattr(serve, "champion_versions", lambda s: {"loans": "3"})
    assert serve.default_model_name(settings) == "loans"
    monkeypatch.setattr(serve, "champion_versions", lambda s: {})
    with pytest.raises(MloopError, match="no registered model has a champion"):
        serve.default_model_name(settings)
    monkeypatch.setattr(serve, "champion_versions", lambda s: {"loans": "3", "rates": "1"})
    with pytest.raises(MloopError, match=r"2 models have a champion \(loans, rates\)"):
        serve.default_model_name(
            settings
        )  # never a guess: the answer would be about the wrong model

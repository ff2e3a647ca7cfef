"""The access rule of the prediction service (pure ASGI, no server)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serving.api.access import AccessMiddleware, is_loopback, is_predict


def _app(
    token: str | Callable[[], str | None] | None,
    predict_requires_token: bool = True,
    client: tuple[str, int] = ("127.0.0.1", 5000),
) -> TestClient:
    async def ok(request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    paths = (
        "/predict",
        "/feedback",
        "/admin/rollout",
        "/model",
        "/other",
        "/models/rates/predict",
        "/models/rates/feedback",
    )
    app = Starlette(routes=[Route(p, ok, methods=["GET", "POST"]) for p in paths])
    return TestClient(AccessMiddleware(app, token, predict_requires_token), client=client)


def test_posts_need_the_token_gets_do_not() -> None:
    c = _app("s3cret")
    for path in ("/predict", "/feedback", "/admin/rollout", "/other"):
        assert c.post(path).status_code == 401, path
        assert c.post(path, headers={"authorization": "Bearer s3cret"}).status_code == 200, path
    assert c.get("/model").status_code == 200


def test_predict_can_be_opened_but_writes_cannot() -> None:
    c = _app("s3cret", predict_requires_token=False)
    assert c.post("/predict").status_code == 200
    assert c.post("/feedback").status_code == 401


def test_a_callable_token_is_asked_once_and_none_turns_the_token_off() -> None:
    assert (
        _app(lambda: "t").post("/feedback", headers={"authorization": "Bearer t"}).status_code
        == 200
    )
    assert _app(None).post("/feedback").status_code == 200


def test_rollout_answers_loopback_clients_only() -> None:
    remote = _app("s3cret", client=("203.0.113.9", 5000))
    resp = remote.post("/admin/rollout", headers={"authorization": "Bearer s3cret"})
    assert resp.status_code == 403 and "loopback" in resp.json()["error"]
    assert remote.post("/feedback", headers={"authorization": "Bearer s3cret"}).status_code == 200
    no_auth = _app(None, client=("203.0.113.9", 5000))
    assert no_auth.post("/admin/rollout").status_code == 403
    assert is_loopback("::1") and is_loopback("127.0.0.2") and not is_loopback("testclient")


def test_a_model_route_follows_the_rule_of_its_legacy_route() -> None:
    closed, opened = _app("s3cret"), _app("s3cret", predict_requires_token=False)
    assert closed.post("/models/rates/predict").status_code == 401
    assert opened.post("/models/rates/predict").status_code == 200
    assert (
        opened.post("/models/rates/predict/").status_code != 401
    )  # a trailing slash is the same route
    assert opened.post("/models/rates/feedback").status_code == 401
    assert is_predict("/models/a/predict") and not is_predict("/models//predict")
    assert not is_predict("/models/a/b/predict") and not is_predict("/models/a/feedback")

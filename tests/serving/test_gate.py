"""ServingGate: the prediction service's Host, body, access and pre-routing checks in one ASGI layer
(pure ASGI with Starlette's test client, no server)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serving.api.access import LocalAnswer, ServingGate

AUTH = {"authorization": "Bearer s3cret"}


def _local(method: str, path: str, content_type: str) -> LocalAnswer | None:
    if path == "/model" and method == "GET":
        return 200, [(b"content-type", b"text/plain")], b"model"
    if path == "/predict" and method == "POST" and content_type != "application/json":
        return 415, [(b"content-type", b"text/plain")], b"json please"
    return None


def _client(client: tuple[str, int] = ("127.0.0.1", 5000), max_body: int = 100) -> TestClient:
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(len(await request.body())))

    app = Starlette(
        routes=[
            Route(p, echo, methods=["GET", "POST"])
            for p in ("/predict", "/admin/rollout", "/other")
        ]
    )
    gate = ServingGate(
        app,
        allowed_hosts=["testserver", "localhost"],
        max_body_bytes=max_body,
        token="s3cret",
        local=_local,
    )
    return TestClient(gate, client=client, raise_server_exceptions=False)


def test_the_host_allowlist_answers_as_starlette_does_on_every_route() -> None:
    c = _client()
    for path in ("/predict", "/model", "/other"):
        resp = c.get(path, headers={"host": "evil.example"})
        assert resp.status_code == 400 and resp.text == "Invalid host header", path
    assert (
        c.post("/predict", json={}, headers={**AUTH, "host": "localhost:3000"}).status_code == 200
    )
    assert (
        c.post("/predict", json={}, headers={**AUTH, "host": "localhost:3000"}).status_code == 200
    )  # remembered


def _guarded_status(body: object) -> int:
    """The status the previous stack (GuardMiddleware around the same app) answers."""
    from mloop.core.web import GuardMiddleware

    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(len(await request.body())))

    app = Starlette(routes=[Route("/predict", echo, methods=["POST"])])
    guarded = TestClient(
        GuardMiddleware(app, allowed_hosts=["testserver"], max_body_bytes=100),
        raise_server_exceptions=False,
    )
    return guarded.post(
        "/predict", content=body, headers={"content-type": "application/json"}
    ).status_code


def test_the_body_limit_by_length_and_while_streaming() -> None:
    c = _client()
    resp = c.post(
        "/predict", content=b"x" * 101, headers={**AUTH, "content-type": "application/json"}
    )
    assert resp.status_code == 413 and "MLOOP_MAX_BODY_BYTES" in resp.text

    def chunks():  # no Content-Length: counted while it streams
        yield b"x" * 60
        yield b"x" * 60

    resp = c.post(
        "/predict", content=chunks(), headers={**AUTH, "content-type": "application/json"}
    )
    assert resp.status_code != 200 and resp.status_code == _guarded_status(
        chunks()
    )  # as GuardMiddleware answers
    ok = c.post(
        "/predict", content=b"x" * 100, headers={**AUTH, "content-type": "application/json"}
    )
    assert ok.status_code == 200 and ok.text == "100"


def test_access_then_the_local_answers() -> None:
    c = _client()
    assert c.post("/predict", json={}).status_code == 401
    assert c.post("/predict", json={}, headers={"authorization": "Bearer nope"}).status_code == 401
    assert (
        c.post(
            "/predict/", content=b"a=1", headers={**AUTH, "content-type": "text/plain"}
        ).status_code
        == 415
    )
    assert c.get("/model").text == "model"  # open without a token
    remote = _client(client=("203.0.113.9", 5000))
    assert remote.post("/admin/rollout", json={}, headers=AUTH).status_code == 403
    assert remote.post("/other", json={}, headers=AUTH).status_code == 200


def test_a_read_only_route_answers_any_other_method_405_token_or_not() -> None:
    c = _client()
    for path in ("/healthz", "/model", "/models", "/models/loans", "/docs.json/"):
        for headers in ({}, AUTH):
            resp = c.request("TRACE", path, headers=headers)
            assert resp.status_code == 405, (path, headers)
            assert resp.headers["allow"] == "GET, HEAD" and "use GET" in resp.json()["error"]
    assert c.post("/models/loans/predict", json={}).status_code == 401  # not read-only
    assert c.request("TRACE", "/predict").status_code == 401  # a write route: the token first

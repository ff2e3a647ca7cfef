"""ASGI guards every mloop HTTP service wears: a Host header allowlist and a request body limit.

* **Host allowlist** (Starlette's ``TrustedHostMiddleware``): a request whose ``Host`` is not one
  of :meth:`mloop.core.settings.Settings.host_allowlist` gets 400. Loopback is not a security
  boundary: a web page can reach 127.0.0.1 through DNS rebinding, and then its requests carry the
  attacker's host name, which this refuses.
* **Body limit**: a body over ``max_body_bytes`` gets 413 before the application reads it (by
  Content-Length, or while streaming a chunked body).

The body limit answers JSON ``{"error": ...}``, the Host check Starlette's plain text. Lifespan and other non-HTTP scopes pass through untouched.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Refusal:
    """One kind of refusal a service answers: its status, what it means (the OpenAPI description)
    and its media type. The code that answers and the document that declares it read the same
    constant, so the served document cannot forget a status the code answers."""

    status: int
    description: str
    media_type: str = "application/json"


HOST_REFUSED = Refusal(
    400,
    "Host header not allowed (MLOOP_ALLOWED_HOSTS): Starlette's plain-text 'Invalid host header'",
    "text/plain",
)
LENGTH_NOT_A_NUMBER = Refusal(400, "Content-Length is not a number")
BODY_TOO_LARGE = Refusal(413, "Request body larger than MLOOP_MAX_BODY_BYTES")
TOKEN_REFUSED = Refusal(401, "Bearer token missing or wrong (`mloop token` prints it)")
GUARD_REFUSALS = (HOST_REFUSED, LENGTH_NOT_A_NUMBER, BODY_TOO_LARGE)
"""What :class:`GuardMiddleware` (and the prediction service's gate) may answer on ANY route."""


def bearer_header(token: str | None) -> dict[str, str]:
    """``Authorization: Bearer <token>`` (nothing without a token). Pure."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def bearer_matches(authorization: str | bytes, token: str) -> bool:
    """Whether an ``Authorization`` header value is exactly ``Bearer <token>`` (constant time). Pure."""
    given = authorization.encode("latin-1") if isinstance(authorization, str) else authorization
    return hmac.compare_digest(given.strip(), f"Bearer {token}".encode())


class _BodyTooLarge(Exception):
    pass


async def answer(
    send: Send, status: int, error: str, extra_headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """A JSON ``{"error": ...}`` response."""
    body = json.dumps({"error": error}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Refuses request bodies larger than ``max_body_bytes`` with 413."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        error = f"request body larger than {limit} bytes (MLOOP_MAX_BODY_BYTES): send fewer records per request"
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await answer(send, LENGTH_NOT_A_NUMBER.status, "Content-Length is not a number")
                    return
                if declared > limit:
                    await answer(send, BODY_TOO_LARGE.status, error)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message.get("type") == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await answer(send, BODY_TOO_LARGE.status, error)


def guard(
    app: ASGIApp, *, allowed_hosts: Sequence[str], max_body_bytes: int | None = None
) -> ASGIApp:
    """``app`` behind the Host allowlist (outermost) and, when given, the body limit."""
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    inner: ASGIApp = BodyLimitMiddleware(app, max_body_bytes) if max_body_bytes is not None else app
    return TrustedHostMiddleware(inner, allowed_hosts=list(allowed_hosts))


class GuardMiddleware:
    """:func:`guard` as a middleware class (for ``app.add_middleware`` / BentoML's ``add_asgi_middleware``)."""

    def __init__(
        self, app: ASGIApp, allowed_hosts: Sequence[str], max_body_bytes: int | None = None
    ) -> None:
        self.app = guard(app, allowed_hosts=allowed_hosts, max_body_bytes=max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

"""Who may call what on the prediction service: an ASGI middleware, in front of BentoML's routes.

The rule (deny by default):

- ``GET``/``HEAD``/``OPTIONS`` requests are open: health (``/healthz``, ``/livez``, ``/readyz``),
  ``/metrics``, ``/docs.json`` and the docs page, ``GET /model``. They read, never write.
- Every other request needs ``Authorization: Bearer <token>`` (compared in constant time):
  ``/feedback``, ``/admin/rollout`` and any other route, and ``/predict`` unless
  ``predict_requires_token`` is off (``MLOOP_PREDICT_REQUIRES_TOKEN=false``).
- ``/admin/rollout`` also answers loopback clients only (403 otherwise), whatever the token.
- With no token at all (``MLOOP_AUTH=false``) only the loopback rule is left.

Answers are JSON ``{"error": ...}`` that say which header to send and where the token is
(``mloop token``); 401 carries ``WWW-Authenticate: Bearer``. The token is never logged or echoed.
Pure ASGI (no BentoML import), so it is testable on its own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

from mloop.core.web import ASGIApp, Receive, Scope, Send, answer, bearer_matches

OPEN_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PREDICT_ROUTE = "/predict"
LOOPBACK_ROUTES = ("/admin/rollout",)
AUTH_HINT = "send the header 'Authorization: Bearer <token>'; `mloop token` prints the platform's API token"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a client address) is a loopback address."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def route(path: str) -> str:
    """``path`` without trailing slashes (``/predict/`` is ``/predict``: the rule cannot be dodged)."""
    return path.rstrip("/") or "/"


def bearer_ok(headers: Sequence[tuple[bytes, bytes]], token: str) -> bool | None:
    """True when the ``Authorization`` header is ``Bearer <token>`` (constant time); None when the
    request has no such header, False when it has a wrong one."""
    given = None
    for key, value in headers:
        if key.lower() == b"authorization":
            given = value
            break
    if given is None:
        return None
    return bearer_matches(given, token)


async def drain(receive: Receive) -> None:
    """Read the rest of the request body (bounded by the guard in front of this middleware)."""
    while True:
        message = await receive()
        if message.get("type") != "http.request" or not message.get("more_body"):
            return


class AccessMiddleware:
    """The access rule of the module docstring. ``token`` None: no token is required; a callable is
    asked once, here (so the secret is not held in the service's middleware options, which BentoML
    may show in a repr)."""

    def __init__(
        self, app: ASGIApp, token: str | Callable[[], str | None] | None, predict_requires_token: bool = True
    ) -> None:
        self.app = app
        value = token() if callable(token) else token
        self._token = value or None
        self.predict_requires_token = predict_requires_token

    def needs_token(self, method: str, path: str) -> bool:
        """Whether a ``method`` request to ``path`` must carry the token (pure)."""
        if self._token is None or method in OPEN_METHODS:
            return False
        return not (route(path) == PREDICT_ROUTE and not self.predict_requires_token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET")
        path = route(scope.get("path", ""))
        if path in LOOPBACK_ROUTES and method not in OPEN_METHODS:
            client = scope.get("client") or ("", 0)
            if not is_loopback(str(client[0])):
                await drain(receive)
                await answer(send, 403, f"{path} only answers loopback clients: call it on the service's host")
                return
        if self._token is not None and self.needs_token(method, path):
            ok = bearer_ok(scope.get("headers", []), self._token)
            if not ok:
                what = "missing bearer token" if ok is None else "wrong bearer token"
                await drain(receive)
                await answer(send, 401, f"{what} for {method} {path}: {AUTH_HINT}", [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)

"""The Prefect server behind mloop's Host allowlist: ``python -m mloop.platform.prefect_server``.

``prefect server start`` has no Host header check, so a web page could reach the loopback server
through DNS rebinding. This starter does what ``prefect server start`` does in the foreground
(``prefect.cli._server_utils._run_in_foreground``: ``create_app(final=True,
webserver_only=False)`` served by uvicorn with the server's keep-alive, websocket ping and log
settings) with the app wrapped in :func:`mloop.core.web.guard`: a request whose Host is not one of
:meth:`mloop.core.settings.Settings.host_allowlist` (rebuilt from the ``MLOOP_*`` environment,
plus the bind address) gets 400. Lifespan (Prefect's background services) passes through.

Everything else comes from Prefect's own settings in the environment, as for ``prefect server
start``: PREFECT_HOME, the database, and ``PREFECT_SERVER_API_AUTH_STRING`` (basic auth, which
``mloop up`` sets; the test suite's session server runs without it). The database is SQLite under
PREFECT_HOME, or in team mode PostgreSQL: ``mloop up`` puts ``PREFECT_SERVER_DATABASE_CONNECTION_URL``
(``postgresql+asyncpg://.../<name>_prefect``, see :mod:`mloop.core.team`) in this process's
environment only, never in its argv; Prefect masks the password when it prints the URL.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mloop.core.service_urls import WILDCARD_BINDS
from mloop.core.settings import Settings


def allowed_hosts(settings: Settings, bind_host: str) -> list[str]:
    """Host header names the server accepts: the settings' allowlist and its own bind address. Pure."""
    names = settings.host_allowlist()
    bind = bind_host.strip().strip("[]").lower()
    if bind not in WILDCARD_BINDS and bind not in names:
        names.append(bind)
    return names


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``--host``/``--port``; both default to Prefect's server settings (PREFECT_SERVER_API_HOST/PORT)."""
    parser = argparse.ArgumentParser(description="Prefect server behind mloop's Host allowlist.")
    parser.add_argument(
        "--host", default=None, help="Bind address (default: PREFECT_SERVER_API_HOST)."
    )
    parser.add_argument(
        "--port", type=int, default=None, help="Port (default: PREFECT_SERVER_API_PORT)."
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve Prefect's API, UI and services on host:port, Host allowlist first."""
    args = parse_args(argv)
    import uvicorn
    from prefect.server.api.server import create_app
    from prefect.settings import (
        PREFECT_SERVER_API_HOST,
        PREFECT_SERVER_API_KEEPALIVE_TIMEOUT,
        PREFECT_SERVER_API_PORT,
        PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL,
        PREFECT_SERVER_API_WEBSOCKET_PING_TIMEOUT,
        PREFECT_SERVER_LOGGING_LEVEL,
    )

    from mloop.core.web import guard

    host = args.host or PREFECT_SERVER_API_HOST.value()
    port = args.port or PREFECT_SERVER_API_PORT.value()
    hosts = allowed_hosts(Settings(), host)
    app = guard(create_app(final=True, webserver_only=False), allowed_hosts=hosts)
    print(
        f"Prefect server on http://{host}:{port} (Host allowlist: {', '.join(hosts)})", flush=True
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        timeout_keep_alive=PREFECT_SERVER_API_KEEPALIVE_TIMEOUT.value(),
        ws_ping_interval=PREFECT_SERVER_API_WEBSOCKET_PING_INTERVAL.value(),
        ws_ping_timeout=PREFECT_SERVER_API_WEBSOCKET_PING_TIMEOUT.value(),
        log_level=str(PREFECT_SERVER_LOGGING_LEVEL.value()).lower(),
    )


if __name__ == "__main__":
    main()

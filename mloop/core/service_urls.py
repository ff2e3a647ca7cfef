"""Where a client reaches a local service: the address to connect to for a bind address, and the URLs
built from it. Pure functions, no I/O; both the settings (their URL properties) and the process
supervisor (:mod:`mloop.core.processes`) use them, so they live below both.
"""

from __future__ import annotations

import ipaddress


def prefect_api_url(host: str, port: int) -> str:
    """The REST API URL of a Prefect server listening on ``host:port`` (the one place it is spelled)."""
    return f"http://{host}:{port}/api"


WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})  # nosec B104 - recognised in settings, never bound here
"""Bind addresses meaning "every interface": not a name a client connects to or a Host header carries."""


def connect_host(bind_host: str) -> str:
    """The address a local client uses to reach a service bound to ``bind_host``. Pure.

    A wildcard bind (``0.0.0.0``, ``::``, empty) is not an address to connect to: loopback is.
    """
    host = bind_host.strip().strip("[]")
    if host in WILDCARD_BINDS:
        return "::1" if host == "::" else "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # a host name
    if address.is_unspecified:  # other spellings of a wildcard, e.g. 0:0::0
        return "::1" if address.version == 6 else "127.0.0.1"
    return host


def http_url(bind_host: str, port: int) -> str:
    """``http://host:port`` of a service bound to ``bind_host`` (see :func:`connect_host`; IPv6 bracketed). Pure."""
    host = connect_host(bind_host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

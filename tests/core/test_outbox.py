"""mloop.core.outbox: events are on disk before anything is sent, delivered oldest first when a server
answers, exactly once per file even with several flushers, and set aside when unreadable or refused.

The "server" is a real HTTP server on loopback that answers from a script (:class:`ScriptedServer`);
the last test emits from inside a real flow run on the session Prefect server.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mloop.core import outbox
from mloop.core.outbox import (
    OutboxTarget,
    build_event,
    deliver_pending,
    outbox_dir,
    parse_event,
    pending_count,
    pending_files,
    run_related_resources,
    write_event,
)
from mloop.core.processes import free_port
from mloop.core.settings import Settings

DROP = 0
"""A scripted "status" that closes the connection without an answer (a worker killed mid-request)."""


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class ScriptedServer:
    """A loopback HTTP server answering each request with the next status of ``script`` (the last repeats).

    ``DROP`` closes the connection unanswered. Every request is recorded in ``seen``.
    """

    script: list[int]
    body: bytes = b""
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    def next_status(self) -> int:
        with self.lock:
            index = min(len(self.seen) - 1, len(self.script) - 1)
            return self.script[index]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def serve(server: ScriptedServer, port: int = 0) -> Iterator[ScriptedServer]:
    """Run ``server`` in a thread for the duration of the ``with`` block."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with server.lock:
                server.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
            status = server.next_status()
            if status == DROP:
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(server.body)))
            self.end_headers()
            self.wfile.write(server.body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def home(tmp_path: Path) -> Settings:
    s = Settings(home=tmp_path / "home", project_dir=tmp_path, auth=False)
    s.state.ensure()
    return s


def down_target() -> OutboxTarget:
    """A Prefect API on a port where nothing listens."""
    return OutboxTarget(f"http://127.0.0.1:{free_port()}/api")


def queue(settings: Settings, n: int, name: str = "mloop.test.event") -> list[str]:
    ids = []
    for i in range(n):
        body = build_event(name, {"prefect.resource.id": "mloop.dataset.d"}, {"n": i})
        write_event(settings.state.root, body)
        ids.append(body["id"])
    return ids


# -- pure parts


def test_build_event_is_a_prefect_event_body_and_parses_back() -> None:
    import numpy as np

    body = build_event(
        "mloop.model.trained",
        {"prefect.resource.id": "mloop.model.m", "k": "v"},
        {"auc": np.float64(0.5), "n": np.int64(3), "when": uuid.UUID(int=1)},
    )
    assert set(body) == {"id", "occurred", "event", "resource", "related", "payload"}
    assert uuid.UUID(body["id"]) and body["related"] == []
    assert body["payload"] == {"auc": 0.5, "n": 3, "when": "00000000-0000-0000-0000-000000000001"}
    assert parse_event(json.dumps(body).encode()) == body


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"[]", b'{"event": "x"}', b'{"event": "x", "resource": {}, "id": "no"}']
)
def test_parse_event_refuses_what_is_not_an_event(raw: bytes) -> None:
    with pytest.raises(ValueError):
        parse_event(raw)


def test_no_related_resources_outside_a_run() -> None:
    assert run_related_resources() == []


# -- durable queue


def test_emit_with_the_server_down_queues_the_event_durably(
    home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", down_target().api)
    old = os.umask(0o077)
    try:
        event_id = outbox.emit(
            home,
            "mloop.dataset.versioned",
            {"prefect.resource.id": "mloop.dataset.d"},
            {"md5": "abc"},
            deadline=0.3,
        )
    finally:
        os.umask(old)
    files = pending_files(home.state.root)
    assert len(files) == 1 and event_id in files[0].name
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(outbox_dir(home.state.root).stat().st_mode) == 0o700
    body = parse_event(files[0].read_bytes())
    assert (
        body["id"] == event_id
        and body["payload"] == {"md5": "abc"}
        and body["event"] == "mloop.dataset.versioned"
    )
    assert not list(outbox_dir(home.state.root).glob(".tmp-*"))


def test_queued_events_are_delivered_oldest_first_when_the_server_answers(home: Settings) -> None:
    down = down_target()
    ids = queue(home, 3)
    report = deliver_pending(home, deadline=0.3, target=down)
    assert (
        report.delivered == 0
        and report.pending == 3
        and report.error
        and "not answering" in report.error
    )
    port = int(down.api.split(":")[2].split("/")[0])
    with serve(ScriptedServer([204]), port=port) as server:
        report = deliver_pending(home, target=down)
        assert report.delivered == 3 and report.pending == 0 and report.error is None
        assert [s.path for s in server.seen] == ["/api/events"] * 3
        assert [s.json()[0]["id"] for s in server.seen] == ids
    assert pending_count(home.state.root) == 0


def test_emit_delivers_at_once_and_keeps_nothing(
    home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serve(ScriptedServer([204])) as server:
        monkeypatch.setenv("PREFECT_API_URL", f"{server.url}/api")
        monkeypatch.setenv("PREFECT_API_AUTH_STRING", "user:s3cret")
        event_id = outbox.emit(
            home, "mloop.model.deployed", {"prefect.resource.id": "mloop.model.m"}, {"v": "1"}
        )
        assert [s.json()[0]["id"] for s in server.seen] == [event_id]
        expected = "Basic " + base64.b64encode(b"user:s3cret").decode()
        assert server.seen[0].headers["Authorization"] == expected
    assert pending_count(home.state.root) == 0


def test_transient_errors_are_retried_within_the_deadline(home: Settings) -> None:
    ids = queue(home, 1)
    with serve(ScriptedServer([503, DROP, 502, 204])) as server:
        report = deliver_pending(home, target=OutboxTarget(f"{server.url}/api"))
        assert report.delivered == 1 and report.pending == 0
        assert [s.json()[0]["id"] for s in server.seen] == ids * 4  # the same id on every attempt


def test_a_server_error_past_the_deadline_keeps_the_event_and_its_order(home: Settings) -> None:
    ids = queue(home, 2)
    with serve(ScriptedServer([500])) as server:
        report = deliver_pending(home, deadline=0.2, target=OutboxTarget(f"{server.url}/api"))
        assert (
            report.delivered == 0
            and report.pending == 2
            and report.error is not None
            and "500" in report.error
        )
        assert {s.json()[0]["id"] for s in server.seen} == {
            ids[0]
        }  # the second never overtakes the first


def test_unauthorized_keeps_the_event_and_never_shows_the_secret(home: Settings) -> None:
    queue(home, 1)
    with serve(ScriptedServer([401])) as server:
        report = deliver_pending(
            home, target=OutboxTarget(f"{server.url}/api", auth_string="user:s3cret")
        )
        assert report.pending == 1 and report.error is not None and "401" in report.error
        assert "s3cret" not in repr(report) and "s3cret" not in repr(
            OutboxTarget("x", "user:s3cret")
        )


def test_a_refused_event_is_set_aside_and_the_queue_goes_on(
    home: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    ids = queue(home, 2)
    with serve(ScriptedServer([422, 204])) as server:
        report = deliver_pending(home, target=OutboxTarget(f"{server.url}/api"))
        assert (report.rejected, report.delivered, report.pending) == (1, 1, 0)
    rejected = list((outbox_dir(home.state.root) / "rejected").iterdir())
    assert len(rejected) == 1 and ids[0] in rejected[0].name
    assert "set aside in rejected/" in caplog.text


def test_a_corrupt_file_is_set_aside_counted_and_the_rest_delivered(
    home: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    queue(home, 1)
    torn = outbox_dir(home.state.root) / f"{0:020d}-{uuid.uuid4()}.json"
    torn.write_bytes(b'{"id": "')  # a torn write (older than every other file)
    with serve(ScriptedServer([204])) as server:
        report = deliver_pending(home, target=OutboxTarget(f"{server.url}/api"))
        assert (report.corrupt, report.delivered, report.pending) == (1, 1, 0)
        assert len(server.seen) == 1
    assert [p.name for p in (outbox_dir(home.state.root) / "corrupt").iterdir()] == [torn.name]
    assert "set aside in corrupt/" in caplog.text


def test_concurrent_flushers_send_each_event_once(home: Settings) -> None:
    ids = queue(home, 40)
    with serve(ScriptedServer([204])) as server:
        target = OutboxTarget(f"{server.url}/api")
        reports: list[outbox.DeliveryReport] = []
        threads = [
            threading.Thread(target=lambda: reports.append(deliver_pending(home, target=target)))
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        sent = [s.json()[0]["id"] for s in server.seen]
        assert sorted(sent) == sorted(ids)  # every event, none twice
        assert sum(r.delivered for r in reports) == 40
    assert pending_count(home.state.root) == 0


def test_a_stale_temporary_file_is_removed_a_fresh_one_kept(home: Settings) -> None:
    folder = outbox_dir(home.state.root)
    folder.mkdir(parents=True)
    stale, fresh = folder / ".tmp-stale.json", folder / ".tmp-fresh.json"
    stale.write_bytes(b"{")
    fresh.write_bytes(b"{")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    report = deliver_pending(home, target=down_target(), deadline=0.1)
    assert report.pending == 0 and not stale.exists() and fresh.exists()


# -- a real Prefect server


def test_an_event_emitted_in_a_flow_run_is_on_the_server_related_to_the_run(
    prefect_server: object, home: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As with prefect.events.emit_event: the event is linked to its flow run (the UI shows it there)."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventIDFilter
    from prefect.runtime import flow_run

    from mloop.core import events

    monkeypatch.setenv("MLOOP_HOME", str(home.state.root))
    monkeypatch.setenv("MLOOP_AUTH", "false")

    @flow(name="outbox-probe")
    def probe() -> tuple[str, str]:
        return events.emit(
            "mloop.test.probe", "mloop.model.probe", {"x": 1}, **{"mloop.label.k": "v"}
        ), flow_run.id

    event_id, run_id = probe()
    assert pending_count(home.state.root) == 0

    def found() -> list[Any]:
        with get_client(sync_client=True) as client:
            return list(
                client.read_events(
                    filter=EventFilter(id=EventIDFilter(id=[uuid.UUID(event_id)])), limit=10
                ).events
            )

    deadline = time.monotonic() + 30
    while not (got := found()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(got) == 1
    event = got[0]
    assert event.event == "mloop.test.probe" and event.payload == {"x": 1}
    assert event.resource.id == "mloop.model.probe" and event.resource["mloop.label.k"] == "v"
    related = {r.id: r.role for r in event.related}
    assert related[f"prefect.flow-run.{run_id}"] == "flow-run"
    assert "flow" in related.values()


def test_emit_goes_to_the_configured_api_else_the_platform_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temporary server Prefect starts for a CLI command sets no PREFECT_API_URL: the platform's is used."""
    platform = Settings(home=tmp_path / "home", project_dir=tmp_path, prefect_port=free_port())
    platform.state.ensure()
    platform.credentials()  # the platform secret, as `mloop up` creates it
    secret = platform.client_auth_env()["PREFECT_API_AUTH_STRING"]
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    assert outbox.process_target(platform) == OutboxTarget(platform.prefect_api_url, secret)
    assert outbox.platform_target(platform) == OutboxTarget(platform.prefect_api_url, secret)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api/")
    assert outbox.process_target(platform) == OutboxTarget("http://127.0.0.1:1/api", secret)
    assert (
        outbox.platform_target(platform).api == platform.prefect_api_url
    )  # `mloop up` and the watchdog

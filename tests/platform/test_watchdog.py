"""The watchdog (:mod:`mloop.platform.watchdog`): its pure decisions, then one real platform.

On the real `mloop up` platform (reconcile every 20 s instead of 60 so the test is short):
(a) SIGKILL of the serving process group: WITHOUT `mloop up`, the watchdog has a new service
    answering with the champion within 30 s, and nothing of the old tree is left;
(b) a promotion whose deploy event is lost (the alias moved directly in MLflow): within 90 s the
    champion is served, through a `deploy/local` run the watchdog triggered (per model: the reconcile
    compares each champion with `GET /models`);
(c) SIGKILL of the watchdog: `mloop up` starts a new one;
(d) the platform runs two workers (MLOOP_WORKERS=2): both are ONLINE in the pool, a SIGKILLed one is
    restarted by the watchdog, `mloop up --workers 1` stops the second (and the watchdog leaves it
    stopped), `mloop up` brings it back;
(e) `mloop down` leaves no process of this MLOOP_HOME (both workers included).
"""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest

from mloop.core.generate import generate, write_frame
from mloop.core.processes import listening_pids, pid_alive, process_tree, read_pid
from mloop.core.settings import Settings
from mloop.platform.services import HEARTBEAT_FILE, heartbeat_fresh, stop_order
from mloop.platform.watchdog import (
    INSTANCE_LOCK,
    Decision,
    Observation,
    PeriodicJob,
    Served,
    Verdict,
    Watchdog,
    active_deploy_models,
    awaiting_event_deploy,
    confirmed,
    decide,
    judge,
    periodic_jobs,
    retry_delay,
    served_state,
    single_instance,
    waiting_for,
)
from tests.platform.helpers import Platform, wait_for

MODEL = "loans"
ROWS = 2000
PLATFORM_SETTINGS = {"workers": 2}  # see (d)
POOL = "mloop-local"


# ---------------------------------------------------------------- supervision: pure parts


def obs(**kw: Any) -> Observation:
    base: dict[str, Any] = {
        "name": "mlflow",
        "has_pid_file": True,
        "alive": True,
        "healthy": True,
        "age": 500.0,
    }
    return Observation(**{**base, **kw})


def test_judge_restarts_a_dead_pid_and_a_missing_required_service_at_once() -> None:
    assert judge(obs(alive=False, healthy=False), 0).restart
    assert judge(obs(has_pid_file=False, alive=False, healthy=False), 0) == judge(
        obs(has_pid_file=False), 0
    )
    assert judge(obs(has_pid_file=False, alive=False), 0).reason == "no pid file"
    # serve without a pid file is not meant to run (no champion yet, or stopped): left alone
    assert not judge(obs(name="serve", has_pid_file=False, alive=False, required=False), 0).restart
    assert judge(
        obs(name="serve", alive=False, required=False), 0
    ).restart  # a pid file naming a dead process


def test_judge_counts_failed_health_checks_in_a_row_past_the_startup_window() -> None:
    assert (
        judge(obs(), 3) == judge(obs(), 0) and judge(obs(), 3).misses == 0
    )  # healthy resets the count
    starting = judge(obs(healthy=False, age=10.0), 2, startup=180.0)
    assert not starting.restart and starting.misses == 2 and starting.reason == "starting"
    misses = 0
    for _ in range(5):
        verdict = judge(obs(healthy=False), misses, max_misses=6)
        assert not verdict.restart
        misses = verdict.misses
    verdict = judge(obs(healthy=False), misses, max_misses=6)
    assert verdict.restart and verdict.reason == "unhealthy for 6 checks in a row"


def test_retry_delay_grows_and_is_capped() -> None:
    assert [retry_delay(n, 5.0) for n in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 40.0]
    assert retry_delay(30, 5.0) == 300.0


def test_the_worker_waits_while_its_server_is_down() -> None:
    assert waiting_for("prefect-worker", {"prefect-server"})
    assert not waiting_for("prefect-worker", {"mlflow"})
    assert not waiting_for("prefect-server", {"prefect-worker"})


def test_a_cycle_restarts_the_server_before_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Server and worker both dead: the worker (which would wait 90 s for the server) comes a cycle later."""
    dog = Watchdog(Settings(home=tmp_path / "home"), jobs=[])
    dead = {"prefect-server", "prefect-worker"}
    monkeypatch.setattr(
        dog,
        "observe",
        lambda name: obs(
            name=name,
            has_pid_file=name not in dead,
            alive=name not in dead,
            healthy=name not in dead,
        ),
    )
    restarted: list[str] = []
    fail_server = [True]

    def restart(name: str, reason: str) -> bool:
        del reason
        restarted.append(name)
        if name == "prefect-server" and fail_server[0]:
            dog.failures[name] = 1  # what a failed restart leaves
            return False
        dog.failures.pop(name, None)
        dead.discard(name)
        return True

    monkeypatch.setattr(dog, "restart", restart)
    dog.cycle()
    assert restarted == ["prefect-server"]  # failed: the worker is not tried behind it
    fail_server[0] = False
    dog.cycle()
    assert restarted == [
        "prefect-server",
        "prefect-server",
        "prefect-worker",
    ]  # up again: the worker follows


def test_down_stops_the_watchdog_first_then_the_worker() -> None:
    order = stop_order(
        ["serve", "prefect-server", "watchdog", "mlflow", "prefect-worker", "webhook"]
    )
    assert order[:2] == ["watchdog", "prefect-worker"] and order[-1] == "prefect-server"


# ---------------------------------------------------------------- reconcile: pure parts


def served(**versions: str) -> frozenset[Served]:
    return frozenset(Served(name, version) for name, version in versions.items())


def one(decisions: list[Decision], model: str | None = None) -> Decision:
    """The decision about ``model`` (the only one when None)."""
    if model is None:
        assert len(decisions) == 1, decisions
        return decisions[0]
    return next(d for d in decisions if d.model == model)


def test_decide_in_sync_or_nothing_to_serve() -> None:
    assert decide({}, "down", set()) == [Decision("none", None, "no champion")]
    assert decide({"loans": "2"}, served(loans="2"), set()) == [
        Decision("none", "loans", "serving loans version 2 (the champion)")
    ]


def test_decide_deploys_a_champion_that_is_not_served() -> None:
    d = one(decide({"loans": "3"}, served(loans="2"), set()))
    assert d == Decision(
        "deploy", "loans", "serving loans version 2, champion of loans is version 3"
    )
    d = one(decide({"loans": "3"}, "down", set()))
    assert d.action == "deploy" and d.model == "loans" and "serving is down" in d.reason
    d = one(decide({"loans": "3"}, frozenset(), set()))  # a service serving nothing yet
    assert d == Decision("deploy", "loans", "loans is not served, champion of loans is version 3")


def test_decide_waits_for_an_active_deploy_a_starting_service_or_an_event_on_its_way() -> None:
    assert one(decide({"loans": "3"}, served(loans="2"), {"loans"})).action == "wait"
    assert one(decide({"loans": "3"}, "starting", set())).action == "wait"
    assert one(decide({"loans": "3"}, "down", set(), awaiting_event={"loans"})).action == "wait"
    assert (
        one(decide({"loans": "3"}, "down", {"other"}, awaiting_event={"other"})).action == "deploy"
    )


def test_decide_is_per_model_when_several_have_a_champion() -> None:
    champions = {"apples": "1", "loans": "4", "rates": "2"}
    # every model in sync: nothing to do, and no model is flipped to another
    assert [
        d.action for d in decide(champions, served(apples="1", loans="4", rates="2"), set())
    ] == ["none"] * 3
    # one model behind, one missing: each gets ITS deploy, the one in sync is left alone
    ds = decide(champions, served(apples="1", loans="3"), set())
    assert [(d.model, d.action) for d in ds] == [
        ("apples", "none"),
        ("loans", "deploy"),
        ("rates", "deploy"),
    ]
    assert one(ds, "loans").reason == "serving loans version 3, champion of loans is version 4"
    assert one(ds, "rates").reason == "rates is not served, champion of rates is version 2"
    # an active deploy or an event on its way holds back only that model
    ds = decide(champions, served(apples="0", loans="3"), {"loans"}, awaiting_event={"rates"})
    assert [(d.model, d.action) for d in ds] == [
        ("apples", "deploy"),
        ("loans", "wait"),
        ("rates", "wait"),
    ]
    # a served model without a champion is left alone (nothing to deploy for it)
    assert [d.model for d in decide({"loans": "4"}, served(gone="1", loans="4"), set())] == [
        "loans"
    ]
    assert one(decide({"loans": "4"}, served(gone="1", loans="4"), set())).action == "none"


def test_decide_starts_a_down_service_with_one_deploy() -> None:
    champions = {"apples": "1", "loans": "4"}
    ds = decide(champions, "down", set())
    assert [(d.model, d.action) for d in ds] == [
        ("apples", "deploy"),
        ("loans", "wait"),
    ]  # the first by name
    assert "the deploy of apples starts it" in one(ds, "loans").reason
    # the starter's deploy is on its way: nobody else starts one
    ds = decide(champions, "down", {"apples"})
    assert [d.action for d in ds] == ["wait", "wait"]
    ds = decide(champions, "down", set(), awaiting_event={"loans"})
    assert [d.action for d in ds] == ["wait", "wait"]
    assert [d.action for d in decide(champions, "starting", set())] == ["wait", "wait"]


def test_a_divergence_is_acted_on_only_when_seen_twice() -> None:
    d = one(decide({"loans": "3"}, served(loans="2"), set()))
    assert not confirmed(None, d)
    assert confirmed(d, d)
    assert not confirmed(
        d, one(decide({"loans": "4"}, served(loans="2"), set()))
    )  # another divergence
    waiting = one(decide({"loans": "3"}, served(loans="2"), {"loans"}))
    assert not confirmed(waiting, waiting)


def test_active_deploys_and_events_awaiting_their_deploy() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def at(seconds_ago: float) -> str:
        return (now - timedelta(seconds=seconds_ago)).isoformat()

    runs = [
        {"state_type": "SCHEDULED", "parameters": {"name": "a"}, "created": at(5)},
        {"state_type": "RUNNING", "parameters": {"name": "b"}, "created": at(5)},
        {"state_type": "COMPLETED", "parameters": {"name": "c"}, "created": at(10)},
        {"state_type": "FAILED", "parameters": {}, "created": at(10)},
    ]
    assert active_deploy_models(runs) == {"a", "b"}
    found = [
        {
            "resource": {"prefect.resource.id": "mloop.model.c"},
            "occurred": at(20),
        },  # run created after it
        {
            "resource": {"prefect.resource.id": "mloop.model.d"},
            "occurred": at(20),
        },  # no run yet: on its way
        {
            "resource": {"prefect.resource.id": "mloop.model.e"},
            "occurred": at(120),
        },  # too old: lost
        {"resource": {"prefect.resource.id": "mloop.dataset.f"}, "occurred": at(1)},  # not a model
        {"resource": {"prefect.resource.id": "mloop.model.g"}, "occurred": "garbage"},
    ]
    assert awaiting_event_deploy(found, runs, now, grace=60.0) == {"d"}


def test_served_state_from_the_answer_and_the_process() -> None:
    models = {
        "loans": {"model_name": "loans", "model_version": 2, "loaded": True},
        "rates": {"model_version": "7", "loaded": False},
    }
    assert served_state(models, True) == served(
        loans="2", rates="7"
    )  # loaded or not: both are served
    assert served_state({}, True) == frozenset()  # answers, serves nothing yet
    assert served_state(None, True) == "starting"
    assert served_state(None, False) == "down"
    assert served_state({"broken": {"error": "no version"}}, True) == frozenset()


# ---------------------------------------------------------------- the loop's jobs, without services


def test_periodic_jobs_hold_the_reconcile_and_run_when_due(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", reconcile_seconds=60.0, watchdog_seconds=5.0)
    assert [j.name for j in periodic_jobs(settings, lambda: None)] == [
        "reconcile",
        "outbox",
        "orphans",
    ]
    ran: list[str] = []
    dog = Watchdog(
        settings,
        jobs=[
            PeriodicJob("reconcile", 60.0, lambda: ran.append("r")),
            PeriodicJob("boom", 60.0, lambda: 1 / 0),
        ],
    )
    dog.run_due_jobs()
    dog.run_due_jobs()  # not due again for a minute
    assert ran == ["r"]
    dog.reconcile_soon()
    dog.run_due_jobs()  # a failing job is logged, the others still run
    assert ran == ["r", "r"]


def test_serve_seen_running_stays_wanted_after_its_pid_file_goes(tmp_path: Path) -> None:
    """A restart of serve killed while starting drops its pid file: serve must still be restarted."""
    import subprocess
    import sys

    settings = Settings(home=tmp_path / "home")
    run = settings.state.run
    run.mkdir(parents=True)
    dog = Watchdog(settings, jobs=[])
    assert not dog.observe("serve").required  # never seen: not started yet, nothing to restart
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / "serve.pid").write_text(str(proc.pid))
        dog.health.pop("serve", None)  # no HTTP check for this stand-in process
        assert dog.observe("serve").alive
    finally:
        proc.kill()
        proc.wait()
    (run / "serve.pid").unlink()
    assert judge(dog.observe("serve"), 0) == Verdict(True, "no pid file")


def test_one_watchdog_per_home_until_its_holder_dies(tmp_path: Path) -> None:
    """``run/watchdog.instance`` admits one watchdog; a killed holder's lock goes with it."""
    import subprocess
    import sys

    run = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from mloop.platform.watchdog import single_instance\n"
            "with single_instance(Path(sys.argv[1])) as held:\n    print(held, flush=True); time.sleep(60)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        with single_instance(run) as held:
            assert held is False  # another watchdog holds it
        holder.kill()
        holder.wait()
        with single_instance(run) as held, single_instance(run) as second:
            assert (held, second) == (True, False)  # the killed holder released it; one at a time
        with single_instance(run) as held:
            assert held  # released at the end of its block
        assert (run / INSTANCE_LOCK).is_file()  # the same lock file as before
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_reconcile_deploys_on_the_second_sighting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mloop.platform.watchdog as wd

    settings = Settings(home=tmp_path / "home")
    seen = [decide({"loans": "3"}, served(loans="2"), set())] * 2 + [
        decide({"loans": "3"}, served(loans="3"), set())
    ]
    triggered: list[Decision] = []
    monkeypatch.setattr(wd, "observe_and_decide", lambda s: seen.pop(0))
    monkeypatch.setattr(wd, "trigger_deploy", lambda s, d: triggered.append(d) or "run-id")
    dog = Watchdog(settings)
    dog.reconcile()
    assert triggered == []  # first sighting: look again one cycle later
    assert dog.jobs[0].due <= time.monotonic() + settings.watchdog_seconds
    dog.reconcile()
    assert [d.model for d in triggered] == ["loans"]
    assert [d.action for d in dog.reconcile()] == ["none"]


def test_reconcile_confirms_and_deploys_each_model_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Model b's divergence seen once does not ride on model a's second sighting; a failing trigger
    of one model does not keep the other's from happening."""
    import mloop.platform.watchdog as wd

    settings = Settings(home=tmp_path / "home")
    champions = {"a": "2", "b": "5", "c": "1"}
    seen = [
        decide(champions, served(a="1", b="5", c="1"), set()),  # a diverges
        decide(
            champions, served(a="1", b="4", c="1"), set()
        ),  # a again (deploy), b diverges for the first time
        decide(
            champions, served(a="1", b="4", c="0"), {"a"}
        ),  # b again (deploy, its trigger fails), c first
        decide(
            champions, served(a="2", b="4", c="0"), set()
        ),  # b: two sightings needed again; c again (deploy)
    ]
    triggered: list[str] = []

    def trigger(s: Settings, d: Decision) -> str:
        triggered.append(str(d.model))
        if d.model == "b":
            raise RuntimeError("prefect is restarting")
        return "run-id"

    monkeypatch.setattr(wd, "observe_and_decide", lambda s: seen.pop(0))
    monkeypatch.setattr(wd, "trigger_deploy", trigger)
    dog = Watchdog(settings)
    dog.reconcile()
    assert triggered == []
    dog.reconcile()
    assert triggered == ["a"]
    dog.reconcile()
    assert triggered == ["a", "b"]
    dog.reconcile()
    assert triggered == ["a", "b", "c"]
    assert (
        "b" in dog.last_decisions and dog.last_decisions["b"].action == "deploy"
    )  # b seen once more: next time


# ---------------------------------------------------------------- a real platform


def _champion(p: Platform) -> str | None:
    r = p.call(
        "GET",
        f"{p.urls['mlflow_ui']}/api/2.0/mlflow/registered-models/get",
        auth="mlflow",
        params={"name": MODEL},
    )
    if r.status_code != 200:
        return None
    aliases = {a["alias"]: a["version"] for a in r.json()["registered_model"].get("aliases", [])}
    return aliases.get("champion")


def _versions(p: Platform) -> list[str]:
    r = p.call(
        "GET",
        f"{p.urls['mlflow_ui']}/api/2.0/mlflow/model-versions/search",
        auth="mlflow",
        params={"filter": f"name='{MODEL}'"},
    )
    return (
        sorted((v["version"] for v in r.json().get("model_versions", [])), key=int)
        if r.status_code == 200
        else []
    )


def _serves(p: Platform, version: str | None) -> bool:
    m = p.serving.served_model()
    return bool(m) and version is not None and str(m["model_version"]) == version


def _quiet(p: Platform) -> bool:
    """No flow run of the platform is scheduled, pending or running."""
    return all(
        r["state_type"] not in ("SCHEDULED", "PENDING", "RUNNING")
        for r in p.prefect.flow_runs(limit=200)
    )


def _watchdog_log(p: Platform) -> str:
    path = p.settings.state.run / "watchdog.log"
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_a_sigkill_of_serving_is_healed_by_the_watchdog_without_up(
    platform: Platform, tmp_path: Path
) -> None:
    p = platform
    run = p.settings.state.run
    assert {s["name"]: s for s in p.first_up["services"]}["watchdog"]["started"]
    source = write_frame(generate("baseline", ROWS, 1), tmp_path / "loans-v1.parquet")
    p.cli_json(
        "ingest",
        str(source),
        "--dataset",
        MODEL,
        "--target",
        "target",
        "--time-column",
        "event_time",
    )
    wait_for(
        lambda: _serves(p, _champion(p)),
        420,
        "v1 to be trained, promoted and deployed by the triggers",
    )
    champion = _champion(p)
    old_pid = int((run / "serve.pid").read_text())
    old_tree = process_tree(old_pid)
    assert len(old_tree) > 1, "bentoml serve without workers?"
    old = {q.pid for q in old_tree}

    os.killpg(os.getpgid(old_pid), signal.SIGKILL)
    t0 = time.monotonic()

    def healed() -> bool:
        pid = read_pid(run, "serve")
        if pid is None or pid == old_pid or not _serves(p, champion):
            return False
        listeners = set(listening_pids(p.settings.serve_port))
        return bool(listeners) and listeners <= {q.pid for q in process_tree(pid)}

    wait_for(
        healed,
        30,
        "the watchdog to serve the champion again from a new service (no `mloop up`)",
        every=0.5,
    )
    print(f"\nserving healed {time.monotonic() - t0:.1f}s after the SIGKILL")
    left = [q.pid for q in old_tree if q.is_running() and q.status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"processes of the killed serve tree still alive: {left}"
    assert set(listening_pids(p.settings.serve_port)).isdisjoint(old)
    # The watchdog logs its restart once `up`'s readiness wait returns, which may be a poll after the
    # test already sees the new service answer.
    wait_for(
        lambda: "restarted serve" in _watchdog_log(p),
        30,
        "the watchdog to log its restart of serve",
    )
    assert "process gone" in _watchdog_log(p)


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_a_champion_moved_without_its_event_is_served_within_90s(
    platform: Platform, tmp_path: Path
) -> None:
    p = platform
    # A second registered version: ingest another dataset version (the trigger trains it; the gate may
    # promote it or not, either is fine), then wait until the platform is quiet and serves its champion.
    source = write_frame(generate("regime-change", ROWS, 2), tmp_path / "loans-v2.parquet")
    p.cli_json(
        "ingest",
        str(source),
        "--dataset",
        MODEL,
        "--target",
        "target",
        "--time-column",
        "event_time",
    )
    wait_for(lambda: len(_versions(p)) >= 2, 420, "a second registered version")
    wait_for(
        lambda: _quiet(p) and _serves(p, _champion(p)),
        300,
        "the platform to settle on its champion",
    )
    before = _champion(p)
    target = next(v for v in _versions(p) if v != before)
    deploys_before = len(p.prefect.flow_runs("deploy"))

    # The promotion whose event is lost: the alias moves in MLflow, no event is emitted.
    body = {"name": MODEL, "alias": "champion", "version": target}
    r = p.call(
        "POST",
        f"{p.urls['mlflow_ui']}/api/2.0/mlflow/registered-models/alias",
        auth="mlflow",
        json=body,
    )
    assert r.status_code == 200, r.text
    t0 = time.monotonic()
    wait_for(
        lambda: _serves(p, target), 90, f"the champion (version {target}) to be served", every=1
    )
    print(f"\nchampion {before} -> {target} (no event) served after {time.monotonic() - t0:.1f}s")
    assert len(p.prefect.flow_runs("deploy")) > deploys_before
    assert f"triggered deploy/local for {MODEL}" in _watchdog_log(p)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_killed_watchdog_is_restarted_by_up(platform: Platform) -> None:
    p = platform
    run = p.settings.state.run
    old_pid = int((run / "watchdog.pid").read_text())
    os.killpg(os.getpgid(old_pid), signal.SIGKILL)
    wait_for(lambda: not pid_alive(old_pid), 10, "the watchdog to die")
    st = {s["name"]: s for s in p.cli_json("status")["services"]}
    assert st["watchdog"]["running"] is False

    out = {s["name"]: s for s in p.cli_json("up")["services"]}
    assert (
        out["watchdog"]["started"]
        and out["watchdog"]["pid"] != old_pid
        and pid_alive(out["watchdog"]["pid"])
    )
    for name in ("prefect-server", "mlflow", "webhook", "prefect-worker", "serve"):
        assert out[name]["running"] and not out[name]["started"], f"{name} was started again"
    assert heartbeat_fresh(run, 30) and (run / HEARTBEAT_FILE).read_text() == str(
        out["watchdog"]["pid"]
    )
    st = {s["name"]: s for s in p.cli_json("status")["services"]}
    assert st["watchdog"]["running"] and st["watchdog"]["pid"] == out["watchdog"]["pid"]


def _worker(p: Platform, service: str) -> tuple[int | None, str]:
    """The pid (None: not running) and the Prefect name of the platform's worker ``service``."""
    name = p.settings.state.run / f"{service}.name"
    return read_pid(
        p.settings.state.run, service
    ), name.read_text().strip() if name.exists() else ""


def _cycles_after(p: Platform, t0: float, cycles: int) -> bool:
    """The watchdog has written its heartbeat ``cycles`` periods after ``t0`` (wall clock): it has cycled since."""
    beat = p.settings.state.run / HEARTBEAT_FILE
    return beat.exists() and beat.stat().st_mtime > t0 + cycles * p.settings.watchdog_seconds


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_two_workers_are_in_the_pool_and_a_killed_one_is_restarted_by_the_watchdog(
    platform: Platform,
) -> None:
    p = platform
    (pid1, name1), (pid2, name2) = _worker(p, "prefect-worker"), _worker(p, "prefect-worker-2")
    assert pid1 and pid2 and pid1 != pid2 and name1 != name2
    assert {name1, name2} <= p.prefect.online_workers(
        POOL
    )  # POST /work_pools/<pool>/workers/filter
    status = {s["name"]: s for s in p.cli_json("status")["services"]}
    assert (
        status["prefect-worker-2"]["running"]
        and status["prefect-worker-2"]["note"] == f"Prefect worker {name2}"
    )

    os.killpg(os.getpgid(pid2), signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid2), 10, "prefect-worker-2 to die")

    def restarted() -> bool:
        pid, name = _worker(p, "prefect-worker-2")
        return (
            pid not in (None, pid2)
            and name not in ("", name2)
            and name in p.prefect.online_workers(POOL)
        )

    t0 = time.monotonic()
    wait_for(
        restarted, 120, "the watchdog to start prefect-worker-2 again, ONLINE under a new name"
    )
    print(f"\nprefect-worker-2 back ONLINE {time.monotonic() - t0:.1f}s after its SIGKILL")
    assert _worker(p, "prefect-worker") == (pid1, name1)  # the other worker was left alone
    wait_for(
        lambda: "restarted prefect-worker-2" in _watchdog_log(p),
        30,
        "the watchdog to log its restart",
    )


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_smaller_up_stops_the_extra_worker_and_the_watchdog_leaves_it_stopped(
    platform: Platform,
) -> None:
    p = platform
    pid2, _ = _worker(p, "prefect-worker-2")
    pid1, _ = _worker(p, "prefect-worker")
    assert pid1 and pid2
    started = time.monotonic()
    out = p.cli_json("up", "--workers", "1")
    t0 = time.time()
    print(
        f"\nmloop up --workers 1 (stopping prefect-worker-2) took {time.monotonic() - started:.1f}s"
    )
    states = {s["name"]: s for s in out["services"]}
    assert (
        states["prefect-worker-2"]["pid"] == pid2 and states["prefect-worker-2"]["running"] is False
    )
    assert states["prefect-worker-2"]["note"] == "stopped: 1 worker(s) wanted"
    assert (
        not pid_alive(pid2)
        and states["prefect-worker"]["pid"] == pid1
        and not states["prefect-worker"]["started"]
    )
    assert out["deployed"] is False  # the worker count is no reason to redeploy

    wait_for(
        lambda: _cycles_after(p, t0, 2), 60, "two watchdog cycles after `mloop up --workers 1`"
    )
    assert _worker(p, "prefect-worker-2")[0] is None, "the watchdog started the worker `up` stopped"
    assert "prefect-worker-2" not in {s["name"] for s in p.cli_json("status")["services"]}

    again = {
        s["name"]: s for s in p.cli_json("up")["services"]
    }  # MLOOP_WORKERS=2 again (the watchdog may start it first)
    assert again["prefect-worker-2"]["running"] and again["prefect-worker"]["pid"] == pid1
    assert _worker(p, "prefect-worker-2")[0] not in (None, pid2)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_down_leaves_no_process_of_this_home(platform: Platform) -> None:
    p = platform
    home = p.settings.state.root.resolve()
    t0 = time.monotonic()
    result = p.cli_json("down")
    print(f"\nmloop down took {time.monotonic() - t0:.1f}s")
    assert {"watchdog", "prefect-worker", "prefect-worker-2"} <= set(result["stopped"]) and result[
        "still_alive"
    ] == []

    def ours(proc: psutil.Process) -> bool:
        try:
            found = proc.environ().get("MLOOP_HOME")
        except (psutil.Error, OSError):
            return False
        return (
            bool(found) and Path(found).resolve() == home and proc.status() != psutil.STATUS_ZOMBIE
        )

    left = [(q.pid, q.name()) for q in psutil.process_iter() if q.pid != os.getpid() and ours(q)]
    assert left == [], f"processes of {home} still alive after mloop down: {left}"
    assert list(p.settings.state.run.glob("*.pid")) == []

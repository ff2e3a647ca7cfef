"""The chaos monkey of the chaos test: SIGKILL random services of a running `mloop up` platform.

The targets are the services an operator meets (issue 11): the prediction service (its whole process
group), BentoML's serving worker alone (the process that answers /predict), the Prefect worker (its
process group: flow runs it started die with it), the Prefect server, MLflow and the webhook. A
target whose pid file is missing or dead (being restarted) is skipped: only real kills count.

:func:`kill_plan` is pure (seeded); :class:`Traffic` keeps sending predictions (and their labels)
through the kills and remembers every prediction id it was answered.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pandas as pd
import psutil

from mloop.core.processes import pid_alive, process_home, read_pid, same_home
from tests.platform.helpers import Platform, records

TARGETS = ("serve", "serve-worker", "prefect-worker", "prefect-server", "mlflow", "webhook")


@dataclass(frozen=True)
class Kill:
    at: float
    """Seconds after the start of the chaos."""
    target: str


def kill_plan(seed: int, kills: int, *, min_gap: float, max_gap: float) -> list[Kill]:
    """``kills`` kills at random gaps in [min_gap, max_gap] seconds, each of a random target. Pure."""
    rng = random.Random(seed)
    at, plan = 0.0, []
    for _ in range(kills):
        at += rng.uniform(min_gap, max_gap)
        plan.append(Kill(at=round(at, 2), target=rng.choice(TARGETS)))
    return plan


def serving_worker(run_dir: Path) -> int | None:
    """The pid of BentoML's worker of the running service (a live leaf below serve's pid), if any."""
    pid = read_pid(run_dir, "serve")
    if pid is None:
        return None
    found: list[tuple[bool, int]] = []
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return None
    for child in children:
        try:  # a worker killed a moment ago may be a zombie its arbiter has not reaped yet
            if child.status() == psutil.STATUS_ZOMBIE or child.children():
                continue
            found.append((any("worker" in part for part in child.cmdline()), child.pid))
        except psutil.Error:
            continue
    return max(found)[1] if found else None


def kill(target: str, run_dir: Path) -> int | None:
    """SIGKILL ``target``; returns the pid killed (None: not running now, nothing killed)."""
    if target == "serve-worker":
        pid = serving_worker(run_dir)
        if pid is None:
            return None
        os.kill(pid, signal.SIGKILL)
        return pid
    pid = read_pid(run_dir, target)
    if pid is None:
        return None
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except ProcessLookupError:
        return None
    return pid


@dataclass
class ChaosLog:
    kills: list[tuple[float, str, int]] = field(default_factory=list)
    skipped: list[tuple[float, str]] = field(default_factory=list)


def run_chaos(plan: list[Kill], run_dir: Path, stop: threading.Event, log: ChaosLog) -> None:
    """Carry out ``plan`` (until ``stop``); a target that is down is replaced by the next live one."""
    t0 = time.monotonic()
    for step in plan:
        if stop.wait(max(0.0, step.at - (time.monotonic() - t0))):
            return
        order = [step.target] + [t for t in TARGETS if t != step.target]
        # Every target down or restarting at once (a loaded machine) postpones the kill, it does not drop it.
        while not _kill_first_live(order, run_dir, t0, log):
            if stop.wait(2.0):
                return


def _kill_first_live(order: list[str], run_dir: Path, t0: float, log: ChaosLog) -> bool:
    """Kill the first live target of ``order``; False when none is live."""
    for target in order:
        try:
            pid = kill(target, run_dir)
        except (OSError, psutil.Error):  # it died between the lookup and the signal: next target
            pid = None
        if pid is not None:
            log.kills.append((round(time.monotonic() - t0, 1), target, pid))
            return True
        log.skipped.append((round(time.monotonic() - t0, 1), target))
    return False


@dataclass
class Traffic:
    """Predictions (and their true labels) sent in a loop through the kills; every answer is kept."""

    platform: Platform
    frame: pd.DataFrame
    batch: int = 20
    answered: set[str] = field(default_factory=set)
    errors: int = 0
    labelled: int = 0

    def run(self, stop: threading.Event) -> None:
        headers = self.platform.auth_headers("api")
        url = self.platform.serving.url
        i = 0
        with httpx.Client(timeout=10, headers=headers) as client:
            while not stop.is_set():
                chunk = self.frame.iloc[i : i + self.batch]
                i = (i + self.batch) % max(1, len(self.frame) - self.batch)
                try:
                    r = client.post(f"{url}/predict", json={"records": records(chunk)})
                except httpx.HTTPError:
                    self.errors += 1
                    time.sleep(0.2)
                    continue
                if r.status_code != 200:
                    self.errors += 1
                    time.sleep(0.2)
                    continue
                answers = r.json()
                self.answered |= {a["prediction_id"] for a in answers}
                labels = [
                    {"prediction_id": a["prediction_id"], "label": int(y)}
                    for a, y in zip(answers, chunk["target"], strict=True)
                ]
                try:
                    if client.post(f"{url}/feedback", json={"labels": labels}).status_code == 200:
                        self.labelled += len(labels)
                except httpx.HTTPError:
                    pass


def platform_processes(home: Path) -> list[int]:
    """Every process whose environment names this MLOOP_HOME (what `mloop down` must leave none of)."""
    return [
        p.pid
        for p in psutil.process_iter()
        if p.pid != os.getpid() and same_home(process_home(p.pid), str(home)) and pid_alive(p.pid)
    ]

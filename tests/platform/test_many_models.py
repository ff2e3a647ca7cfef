"""Many models on one platform (issue 12's must-show), on a real `mloop up`.

One platform for the module; the tests run in file order and build on each other:
1. Two datasets of different shapes (a 14-feature classification ``loans`` and a 6-feature
   regression ``rates``) are onboarded with the same command (``mloop ingest FILE --dataset NAME``);
   the triggers train, promote and deploy both, and both champions answer on ``/models/<name>/predict``
   with their own schema, while the single-model ``/predict`` refuses to guess (409).
2. A promotion of ``loans`` (a new version trained without promotion, then ``mloop promote``) under
   continuous load on both routes: ``loans`` switches, ``rates`` keeps its version and its exact
   answers, and neither route fails a single request.
3. Drifted traffic with labels to ``loans``, clean traffic with labels to ``rates``, one monitor run
   per model: only ``loans`` drifts, retrains and answers with a new version; ``rates`` keeps its
   registry versions, its retrain ledger (empty) and its served version.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
import pandas as pd
import pytest

from mloop.core.generate import generate, write_frame
from tests.platform.helpers import Platform, drifted_traffic, records, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

CLS, REG = "loans", "rates"
ROWS = 3000
TRAFFIC = 2000
SERVE_TIMEOUT = 420  # seconds for the deploy flows to put the champions into service


# ----------------------------------------------------------------------------- HTTP helpers


def served(platform: Platform) -> dict[str, dict[str, Any]]:
    """``GET /models`` (name -> what is served); {} while the service does not answer it."""
    return platform.serving.served_models() or {}


def served_version(platform: Platform, name: str) -> str | None:
    """The version of ``name`` the service answers with (``GET /models/<name>``), None if not served."""
    r = platform.call("GET", f"{platform.serving.url}/models/{name}", auth="api", timeout=10)
    return str(r.json()["model_version"]) if r.status_code == 200 else None


def predict(platform: Platform, name: str, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """``POST /models/<name>/predict`` with the frame's feature records; the answers (asserts 200)."""
    r = platform.call(
        "POST",
        f"{platform.serving.url}/models/{name}/predict",
        auth="api",
        json={"records": records(frame)},
        timeout=60,
    )
    assert r.status_code == 200, f"{name}: HTTP {r.status_code} {r.text[:500]}"
    return list(r.json())


def send_with_feedback(platform: Platform, name: str, frame: pd.DataFrame, batch: int = 500) -> int:
    """Traffic to ``/models/<name>/predict`` in batches, then the true labels to ``/models/<name>/feedback``."""
    answered = 0
    for start in range(0, len(frame), batch):
        chunk = frame.iloc[start : start + batch]
        answers = predict(platform, name, chunk)
        cast = int if pd.api.types.is_integer_dtype(chunk["target"]) else float
        labels = [
            {"prediction_id": a["prediction_id"], "label": cast(y)}
            for a, y in zip(answers, chunk["target"], strict=True)
        ]
        r = platform.call(
            "POST",
            f"{platform.serving.url}/models/{name}/feedback",
            auth="api",
            json={"labels": labels},
            timeout=60,
        )
        assert r.status_code == 200, f"{name} feedback: HTTP {r.status_code} {r.text[:500]}"
        assert int(r.json()["recorded"]) + int(r.json().get("duplicates", 0)) == len(labels), (
            r.json()
        )
        answered += len(answers)
    return answered


def outputs(answers: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """What a model answered, without the per-request prediction ids: (version, prediction) per record."""
    return [(str(a["model_version"]), a["prediction"]) for a in answers]


# ----------------------------------------------------------------------------- platform state


def champion(platform: Platform, name: str) -> str | None:
    from models.registry import champion_version

    return champion_version(platform.settings.tracking_uri, name)


def registry_versions(platform: Platform, name: str) -> list[str]:
    return sorted(v["version"] for v in platform.cli_json("models", name))


def ledger(platform: Platform, name: str) -> list[dict[str, Any]]:
    from monitoring.policy import RetrainLedger, ledger_path

    return [
        r.model_dump()
        for r in RetrainLedger(ledger_path(platform.settings.state.root)).read()
        if r.model_name == name
    ]


def retrain_runs(platform: Platform, name: str) -> list[dict[str, Any]]:
    return [
        r
        for r in platform.prefect.flow_runs("retrain")
        if str(r["parameters"].get("model_name", "")).endswith(name)
    ]


def dataset(name: str, seed: int, rows: int = ROWS, scenario: str = "baseline") -> pd.DataFrame:
    """The module's two shapes: ``loans`` a 14-feature classification, ``rates`` a 6-feature regression."""
    if name == REG:
        return generate(scenario, rows, seed, task="regression", features=6)
    return generate(scenario, rows, seed)


# ----------------------------------------------------------------------------- continuous load


@dataclass
class Load:
    """One thread POSTing the same small batch to ``/models/<name>/predict`` until stopped, ``pause``
    seconds apart (no retries: every non-200 answer or transport error counts as a failed request)."""

    platform: Platform
    name: str
    frame: pd.DataFrame
    pause: float = 0.02
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    seen: list[list[tuple[str, Any]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=self._run, name=f"load-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        url = f"{self.platform.serving.url}/models/{self.name}/predict"
        body = {"records": records(self.frame)}
        with httpx.Client(headers=self.platform.auth_headers("api"), timeout=60) as client:
            while not self._stop.wait(self.pause):
                try:
                    r = client.post(url, json=body)
                except httpx.HTTPError as exc:
                    self.failed.append(f"{type(exc).__name__}: {exc}")
                    continue
                if r.status_code != 200:
                    self.failed.append(f"HTTP {r.status_code}: {r.text[:200]}")
                    continue
                self.ok += 1
                out = outputs(r.json())
                if not self.seen or self.seen[-1] != out:  # keep the distinct answers, in order
                    self.seen.append(out)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)


# ----------------------------------------------------------------------------- the scenario


@pytest.fixture(scope="module")
def onboarded(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Both datasets ingested with the same command; returns name -> the champion version serving."""
    folder = tmp_path_factory.mktemp("many-models")
    for name, seed in ((CLS, 1), (REG, 2)):
        source = folder / f"{name}-v1.parquet"
        write_frame(dataset(name, seed), source)
        out = platform.cli("ingest", str(source), "--dataset", name, "--json")
        assert out.returncode == 0, f"mloop ingest {name} failed:\n{out.stdout}\n{out.stderr}"
    champions = wait_for(
        lambda: (c := {n: champion(platform, n) for n in (CLS, REG)}) and all(c.values()) and c,
        600,
        "both datasets to be trained and promoted by the triggers",
        every=2,
    )
    wait_for(
        lambda: (
            (s := served(platform))
            and all(str(s.get(n, {}).get("model_version")) == v for n, v in champions.items())
        ),
        SERVE_TIMEOUT,
        f"both champions {champions} to be served",
        every=2,
    )
    return {n: str(v) for n, v in champions.items()}


def test_two_shapes_onboard_with_one_command_and_answer_on_their_routes(
    platform: Platform, onboarded: dict[str, str]
) -> None:
    models = served(platform)
    assert set(models) >= {CLS, REG}
    for name in (CLS, REG):
        assert models[name]["model_name"] == name and models[name]["loaded"] is True

    cls_answers = predict(platform, CLS, dataset(CLS, 11, rows=5))
    reg_answers = predict(platform, REG, dataset(REG, 12, rows=5))
    assert {(a["model_name"], str(a["model_version"])) for a in cls_answers} == {
        (CLS, onboarded[CLS])
    }
    assert {(a["model_name"], str(a["model_version"])) for a in reg_answers} == {
        (REG, onboarded[REG])
    }
    assert all(0.0 <= a["probability"] <= 1.0 for a in cls_answers)  # a classifier's answer
    assert all(
        "score" in a and a["score"] == a["prediction"] for a in reg_answers
    )  # a regressor's answer

    # Each route validates against its own contract: a rates record (6 features) lacks most of the 14
    # a loans record needs.
    bad = platform.call(
        "POST",
        f"{platform.serving.url}/models/{CLS}/predict",
        auth="api",
        json={"records": records(dataset(REG, 13, rows=2))},
        timeout=30,
    )
    assert bad.status_code == 400, bad.text

    # The single-model routes never answer from a guessed model when two are served.
    legacy = platform.call(
        "POST",
        f"{platform.serving.url}/predict",
        auth="api",
        json={"records": records(dataset(CLS, 14, rows=2))},
        timeout=30,
    )
    assert legacy.status_code == 409 and set(legacy.json()["models"]) >= {CLS, REG}, legacy.text

    # /docs.json lists both routes, each with its own request schema.
    docs = platform.call("GET", f"{platform.serving.url}/docs.json", auth="api", timeout=30).json()
    assert {f"/models/{CLS}/predict", f"/models/{REG}/predict"} <= set(docs["paths"])


def test_promotion_of_one_under_load_leaves_the_other_unchanged(
    platform: Platform, onboarded: dict[str, str]
) -> None:
    # A second loans version, registered without promotion (a different seed: another challenger).
    trained = platform.cli_json("train", CLS, "--seed", "7", "--force", "--no-promote")
    v2 = str(trained["version"])
    assert v2 != onboarded[CLS] and champion(platform, CLS) == onboarded[CLS]
    rates_versions = registry_versions(platform, REG)
    reg_probe = dataset(REG, 21, rows=8)
    reference = outputs(predict(platform, REG, reg_probe))

    loads = {
        CLS: Load(platform, CLS, dataset(CLS, 22, rows=8)).start(),
        REG: Load(platform, REG, reg_probe).start(),
    }
    try:
        wait_for(
            lambda: all(load.ok >= 5 for load in loads.values()),
            60,
            "both loads to be answered",
            every=0.2,
        )
        platform.cli_json("promote", CLS, v2, "--reason", "test: promotion under load")
        wait_for(
            lambda: served_version(platform, CLS) == v2, 300, f"{CLS} v{v2} to be served", every=0.5
        )
        # The switch is seen by the load on loans; rates keeps being answered after it.
        wait_for(
            lambda: loads[CLS].seen and loads[CLS].seen[-1][0][0] == v2,
            60,
            f"the load to get v{v2}",
            every=0.2,
        )
        after = loads[REG].ok
        wait_for(
            lambda: loads[REG].ok >= after + 20, 60, f"{REG} answers after the switch", every=0.2
        )
    finally:
        for load in loads.values():
            load.stop()

    assert loads[CLS].failed == [] and loads[REG].failed == [], {
        n: lo.failed[:5] for n, lo in loads.items()
    }
    # loans: the old version until the switch, then the new one, never anything else.
    assert [answer[0][0] for answer in loads[CLS].seen] == [onboarded[CLS], v2], loads[CLS].seen
    # rates: one distinct answer throughout, the exact answers of before, from the same version.
    assert loads[REG].seen == [reference]
    assert (
        served_version(platform, REG) == onboarded[REG]
        and champion(platform, REG) == onboarded[REG]
    )
    assert registry_versions(platform, REG) == rates_versions
    onboarded[CLS] = v2  # the next test starts from this champion


def test_drift_on_one_retrains_only_that_one(platform: Platform, onboarded: dict[str, str]) -> None:
    rates_versions = registry_versions(platform, REG)
    reg_probe = dataset(REG, 31, rows=8)
    reference = outputs(predict(platform, REG, reg_probe))
    assert ledger(platform, REG) == []
    retrains_before = {n: len(retrain_runs(platform, n)) for n in (CLS, REG)}

    # loans: drifted applicants that default for other reasons; rates: more of the same population.
    assert send_with_feedback(platform, CLS, drifted_traffic(TRAFFIC, 7)) == TRAFFIC
    assert send_with_feedback(platform, REG, dataset(REG, 32, rows=TRAFFIC)) == TRAFFIC
    for name in (CLS, REG):
        run = platform.prefect.run_deployment(
            "monitor/local", {"model_name": name, "window_size": TRAFFIC}
        )
        assert platform.prefect.wait_run(run, 300)["state_type"] == "COMPLETED", (
            platform.logs_tail()
        )

    # The drift event of loans retrains loans: a new champion, served.
    run = wait_for(
        lambda: (
            len(retrain_runs(platform, CLS)) > retrains_before[CLS]
            and retrain_runs(platform, CLS)[-1]
        ),
        120,
        f"a retrain run of {CLS} triggered by its drift event",
    )
    assert platform.prefect.wait_run(run["id"], 420)["state_type"] == "COMPLETED", (
        platform.logs_tail()
    )
    entries = ledger(platform, CLS)
    assert len(entries) == 1 and entries[0]["trigger"] == "drift", entries
    new = champion(platform, CLS)
    assert new is not None and new != onboarded[CLS], f"no new {CLS} champion (still {new})"
    wait_for(
        lambda: served_version(platform, CLS) == new, 300, f"{CLS} v{new} to be served", every=0.5
    )

    # rates: no retrain run, no ledger entry, the same registry versions, version and answers.
    assert len(retrain_runs(platform, REG)) == retrains_before[REG]
    assert ledger(platform, REG) == []
    assert registry_versions(platform, REG) == rates_versions
    assert (
        served_version(platform, REG) == onboarded[REG]
        and champion(platform, REG) == onboarded[REG]
    )
    assert outputs(predict(platform, REG, reg_probe)) == reference


def test_status_shows_both_models(platform: Platform, onboarded: dict[str, str]) -> None:
    status = {m["name"]: m for m in platform.cli_json("status")["models"]}
    assert {CLS, REG} <= set(status)
    assert status[REG]["champion"] == onboarded[REG]
    assert status[CLS]["champion"] == champion(platform, CLS)

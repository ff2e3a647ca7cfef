"""Secure by default, on a real `mloop up` (issue 10): every door of the platform's own services asks
for credentials, refuses foreign Host headers, and its state is private.

One platform for the whole module (tests/platform/conftest.py). The prediction service's doors
(/feedback, /admin/rollout, its Host check) need a served champion: tests/platform/test_loop.py
and the serving tests cover them with :meth:`Platform.call`.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Literal

import psutil
import pytest
from pydantic import SecretStr

from mloop.core.entrypoints import CLI, python_m
from mloop.core.secrets import secrets_path
from mloop.core.settings import Settings
from mloop.platform.client import PrefectApi
from mloop.platform.prefect_server import allowed_hosts
from mloop.platform.services import (
    mlflow_allowed_hosts,
    mlflow_auth_ini,
    settings_env,
    unset_env,
    urls,
)
from tests.platform.helpers import Platform, wait_for

EVIL = "evil.example"
ALERT = {
    "alerts": [{"status": "firing", "labels": {"alertname": "HighErrorRate", "model": "loans"}}]
}
NOTIFICATION = {"subject": "s", "body": "b", "name": "n"}


def _own_host(url: str) -> str:
    """The Host header a client of ``url`` sends (``host:port``)."""
    return url.split("://", 1)[1].split("/", 1)[0]


def _a_deployment_id(platform: Platform) -> str:
    return str(platform.prefect.deployments()[0]["id"])


# ---------------------------------------------------------------- (a) no credentials: 401


def test_prefect_refuses_requests_without_the_auth_string(platform: Platform) -> None:
    api = platform.urls["prefect_api"]
    deployment = _a_deployment_id(platform)
    run = platform.call(
        "POST", f"{api}/deployments/{deployment}/create_flow_run", json={"parameters": {}}
    )
    assert run.status_code == 401
    assert platform.call("POST", f"{api}/deployments/filter", json={}).status_code == 401
    assert (
        platform.call("POST", f"{api}/deployments/filter", json={}, auth="prefect").status_code
        == 200
    )
    wrong = PrefectApi(api, auth_string="mloop:wrong", deadline=0)
    with pytest.raises(Exception, match="401"):
        wrong.deployments()
    assert platform.call("GET", f"{api}/health").status_code == 200  # probes stay open


def test_mlflow_refuses_alias_changes_without_credentials(platform: Platform) -> None:
    mlflow = platform.urls["mlflow_ui"]
    body = {"name": "loans", "alias": "champion", "version": "1"}
    assert (
        platform.call(
            "POST", f"{mlflow}/api/2.0/mlflow/registered-models/alias", json=body
        ).status_code
        == 401
    )
    search = f"{mlflow}/api/2.0/mlflow/registered-models/search"
    assert platform.call("GET", search).status_code == 401
    assert platform.call("GET", search, auth="mlflow").status_code == 200
    assert platform.call("GET", f"{mlflow}/health").status_code == 200


@pytest.mark.parametrize(("path", "body"), [("/alerts", ALERT), ("/notifications", NOTIFICATION)])
def test_webhook_refuses_posts_without_the_bearer_token(
    platform: Platform, path: str, body: dict
) -> None:
    url = f"{platform.webhook_url}{path}"
    assert platform.call("POST", url, json=body).status_code == 401
    assert (
        platform.call("POST", url, json=body, headers={"Authorization": "Bearer wrong"}).status_code
        == 401
    )


def _files_outside(root: Path, home: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` but outside ``home``: path -> (size, mtime ns)."""
    out: dict[str, tuple[int, int]] = {}
    for path in root.rglob("*"):
        if home in path.parents or path == home or not path.is_file():
            continue
        st = path.stat()
        out[str(path)] = (st.st_size, st.st_mtime_ns)
    return out


def test_an_alert_naming_a_path_is_refused_and_nothing_outside_home_changes(
    platform: Platform,
) -> None:
    home = platform.settings.state.root
    root = home.parent
    before = _files_outside(root, home)
    canary = "x/../../../canary"
    body = {
        "alerts": [{"status": "firing", "labels": {"alertname": "HighErrorRate", "model": canary}}]
    }
    r = platform.call("POST", f"{platform.webhook_url}/alerts", auth="api", json=body)
    assert r.status_code == 422 and "model" in r.text, r.text
    grouped = {
        **body,
        "commonLabels": {"model_name": canary},
        "alerts": [{"labels": {"alertname": "DataDrift"}}],
    }
    assert (
        platform.call(
            "POST", f"{platform.webhook_url}/alerts", auth="api", json=grouped
        ).status_code
        == 422
    )
    assert _files_outside(root, home) == before
    assert not any(p.name == "canary" for p in root.parent.rglob("canary*"))


def test_500_alerts_in_one_post_start_one_remediation(platform: Platform) -> None:
    """500 firing alerts of one (model, alertname) with 500 fingerprints: one event, one remediate run."""
    alertname = "DiskAlmostFull"  # not in the alert table: remediation notifies, changes nothing
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": alertname, "model": "loans", "instance": f"host-{i}"},
            "fingerprint": f"fp{i:04d}",
        }
        for i in range(500)
    ]
    r = platform.call("POST", f"{platform.webhook_url}/alerts", auth="api", json={"alerts": alerts})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["received"] == 500 and len(answer["emitted"]) == 1, answer

    def ours() -> list[dict]:
        return [
            fr
            for fr in platform.prefect.flow_runs("remediate")
            if alertname in json.dumps(fr.get("parameters", {}))
        ]

    first = wait_for(lambda: ours(), 120, "the remediate run of the alert group")[0]
    assert platform.prefect.wait_run(first["id"], 300)["state_type"] == "COMPLETED", (
        platform.logs_tail()
    )
    assert len(ours()) == 1


# ---------------------------------------------------------------- (b) Host allowlist


def _host_cases(
    platform: Platform,
) -> dict[str, tuple[str, str, Literal["prefect", "mlflow", "api"] | None]]:
    """Service -> (method, url, auth) of a request that succeeds with the platform's own Host."""
    u = platform.urls
    return {
        "prefect": ("POST", f"{u['prefect_api']}/deployments/filter", "prefect"),
        "mlflow": ("GET", f"{u['mlflow_ui']}/api/2.0/mlflow/registered-models/search", "mlflow"),
        "webhook": ("GET", f"{u['webhook']}/healthz", None),
    }


@pytest.mark.parametrize("service", ["prefect", "mlflow", "webhook"])
def test_a_foreign_host_header_is_refused_on_every_port(platform: Platform, service: str) -> None:
    method, url, auth = _host_cases(platform)[service]
    kwargs = {"json": {}} if method == "POST" else {}
    own = platform.call(method, url, auth=auth, host=_own_host(url), **kwargs)
    assert own.status_code == 200, own.text
    assert platform.call(method, url, auth=auth, host="localhost", **kwargs).status_code == 200
    evil = platform.call(method, url, auth=auth, host=EVIL, **kwargs)
    assert 400 <= evil.status_code < 500, f"{service} answered {evil.status_code} to Host: {EVIL}"


def test_the_prefect_ui_refuses_a_foreign_host(platform: Platform) -> None:
    ui = platform.urls["prefect_ui"]
    assert (
        platform.call("GET", f"{ui}/ui-settings").json()["auth"] == "BASIC"
    )  # the UI asks for the string
    assert 400 <= platform.call("GET", f"{ui}/", host=EVIL).status_code < 500


# ---------------------------------------------------------------- (c) files


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_is_private(platform: Platform) -> None:
    state = platform.settings.state
    assert _mode(state.root) == 0o700
    assert _mode(secrets_path(state.root)) == 0o600
    databases = [
        *state.prefect_home.glob("*.db*"),
        *state.mlflow_dir.glob("*.db*"),
        state.mlflow_dir / "basic_auth.ini",
    ]
    assert {p.name for p in databases} >= {"prefect.db", "mlflow.db", "auth.db", "basic_auth.ini"}
    readable = {str(p): oct(_mode(p)) for p in databases if _mode(p) & 0o077}
    assert not readable, f"readable by group/other: {readable}"


def test_no_secret_in_argv_or_logs(platform: Platform) -> None:
    """Secrets reach the services by environment only: never in a command line or a log."""
    values = [v for k, v in platform.secrets.revealed().items() if k != "mlflow_username"]
    for pid_file in platform.settings.state.run.glob("*.pid"):
        proc = psutil.Process(int(pid_file.read_text()))
        for member in [proc, *proc.children(recursive=True)]:
            try:
                cmdline = " ".join(member.cmdline())
            except psutil.Error:  # gone meanwhile
                continue
            assert not any(v in cmdline for v in values), (
                f"a secret is in the argv of {pid_file.stem}"
            )
    for log in platform.settings.state.run.glob("*.log"):
        text = log.read_text(errors="replace")
        assert not any(v in text for v in values), f"a secret is in {log.name}"
    assert not any(
        v in (platform.settings.state.mlflow_dir / "basic_auth.ini").read_text() for v in values
    )


# ---------------------------------------------------------------- (d) mloop token, (e) the CLI with auth


def test_mloop_token_prints_working_credentials(platform: Platform) -> None:
    doc = platform.cli_json("token")
    assert set(doc) == {"api_token", "prefect_auth_string", "mlflow_username", "mlflow_password"}
    assert doc["api_token"] == platform.token
    api = PrefectApi(platform.urls["prefect_api"], auth_string=doc["prefect_auth_string"])
    assert api.deployments()
    mlflow = platform.urls["mlflow_ui"]
    search = platform.call(
        "GET",
        f"{mlflow}/api/2.0/mlflow/registered-models/search",
        auth=None,
        headers={"Authorization": _basic(doc["mlflow_username"], doc["mlflow_password"])},
    )
    assert search.status_code == 200
    plain = platform.cli("token")
    assert plain.returncode == 0 and f"Bearer {doc['api_token']}" in plain.stdout


def _basic(user: str, password: str) -> str:
    from mloop.platform.client import basic_auth_header

    return basic_auth_header(f"{user}:{password}")["Authorization"]


def test_mloop_status_reads_the_authenticated_services(platform: Platform) -> None:
    platform.prefect.post_event("mloop.quality.probe", "mloop.model.loans", {"probe": True})

    def seen() -> dict | None:
        st = platform.cli_json("status")
        return st if (st.get("last_drift") or {}).get("event") == "mloop.quality.probe" else None

    st = wait_for(
        seen, 60, "mloop status to show the event from the authenticated Prefect API", every=2
    )
    running = {s["name"] for s in st["services"] if s["running"]}
    assert {"prefect-server", "mlflow", "webhook", "prefect-worker"} <= running
    assert not st["notes"], st["notes"]


def test_the_cli_environment_carries_no_credentials(platform: Platform) -> None:
    """`mloop` finds the credentials itself (the secret file): a person's shell needs none."""
    assert not {"PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_PASSWORD", "MLOOP_API_TOKEN"} & set(
        platform.env
    )


# ---------------------------------------------------------------- pure parts (no platform)


def test_mlflow_gets_every_allowed_name_with_and_without_its_port(tmp_path: Path) -> None:
    s = Settings(
        home=tmp_path, project_dir=tmp_path, mlflow_port=5123, allowed_hosts=["mlflow.example"]
    )
    entries = mlflow_allowed_hosts(s).split(",")
    assert {
        "127.0.0.1",
        "127.0.0.1:5123",
        "localhost:5123",
        "[::1]:5123",
        "mlflow.example:5123",
    } <= set(entries)
    assert EVIL not in ",".join(entries) and "*" not in ",".join(entries)


def test_the_mlflow_auth_config_holds_no_secret(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home", project_dir=tmp_path)
    text = mlflow_auth_ini(s, "admin")
    assert "admin_username = admin" in text and "default_permission = NO_PERMISSIONS" in text
    assert "password" not in text
    assert f"sqlite:///{s.state.mlflow_dir / 'auth.db'}" in text


def test_settings_env_passes_only_a_token_the_person_set(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home", project_dir=tmp_path)
    s.state.ensure()
    s.credentials()  # a generated token exists
    assert "MLOOP_API_TOKEN" not in settings_env(s)
    mine = Settings(home=tmp_path / "home", project_dir=tmp_path, api_token=SecretStr("mine"))
    assert settings_env(mine)["MLOOP_API_TOKEN"] == "mine"


def test_auth_drops_a_prefect_api_key_from_children(tmp_path: Path) -> None:
    assert unset_env(Settings(home=tmp_path, project_dir=tmp_path)) == ("PREFECT_API_KEY",)
    assert unset_env(Settings(home=tmp_path, project_dir=tmp_path, auth=False)) == ()


def test_platform_urls_reach_a_wildcard_serving_bind_on_loopback(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, project_dir=tmp_path, serve_host="0.0.0.0", serve_port=3999)
    assert urls(s)["serving"] == "http://127.0.0.1:3999"
    assert (
        urls(Settings(home=tmp_path, project_dir=tmp_path, serve_host="10.1.2.3", serve_port=3999))[
            "serving"
        ]
        == "http://10.1.2.3:3999"
    )


def test_the_prefect_server_accepts_loopback_its_bind_address_and_the_configured_names(
    tmp_path: Path,
) -> None:
    s = Settings(home=tmp_path, project_dir=tmp_path, allowed_hosts=["prefect.example"])
    names = allowed_hosts(s, "10.0.0.5")
    assert {"127.0.0.1", "localhost", "::1", "10.0.0.5", "prefect.example"} <= set(names)
    assert "0.0.0.0" not in allowed_hosts(s, "0.0.0.0")


def test_mloop_token_with_auth_off_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOOP_")}
    env.update(
        MLOOP_HOME=str(tmp_path / "home"), MLOOP_PROJECT_DIR=str(tmp_path), MLOOP_AUTH="false"
    )

    def run(*a):
        return subprocess.run(
            python_m(CLI, "token", *a), env=env, capture_output=True, text=True, timeout=120
        )

    plain = run()
    assert plain.returncode == 0 and "auth is off" in plain.stdout
    doc = json.loads(run("--json").stdout)
    assert doc == {
        "api_token": None,
        "prefect_auth_string": None,
        "mlflow_username": None,
        "mlflow_password": None,
    }
    assert not secrets_path(tmp_path / "home").exists()

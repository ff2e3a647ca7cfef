"""The webhook receiver's served OpenAPI document holds against Schemathesis' full check set.

A real ``python -m monitoring.webhook`` process (uvicorn, loopback, its own MLOOP_HOME, a token)
emitting into the session's Prefect server; every operation gets 60 generated examples with the
bearer token, so the fuzzer reaches the handlers and not only the 401 path, then 10 without it
(:func:`tests.helpers.assert_openapi_holds`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from mloop.core.entrypoints import WEBHOOK, python_m
from mloop.core.paths import CODE_ROOT, with_code_root
from mloop.core.processes import free_port, start_process, stop_pid
from mloop.core.settings import Settings
from tests.helpers import assert_openapi_holds

pytestmark = pytest.mark.integration
TOKEN = "webhook-fuzz-token"


def test_the_webhooks_openapi_document_holds(tmp_path: Path, prefect_server) -> None:
    settings = Settings(
        home=tmp_path / "home",
        project_dir=tmp_path,
        webhook_port=free_port(),
        api_token=SecretStr(TOKEN),
    )
    settings.state.ensure()
    env = with_code_root(
        {
            **settings.service_env(),
            "MLOOP_HOME": str(settings.state.root),
            "MLOOP_WEBHOOK_PORT": str(settings.webhook_port),
            "MLOOP_API_TOKEN": TOKEN,
        }
    )
    url = f"http://127.0.0.1:{settings.webhook_port}"
    proc = start_process(
        "webhook",
        python_m(WEBHOOK),
        run_dir=settings.state.run,
        env=env,
        cwd=CODE_ROOT,
        url=url,
        ready_url=f"{url}/healthz",
        timeout=60,
    )
    try:
        assert_openapi_holds(
            f"{url}/openapi.json", TOKEN, min_cases=250, cwd=tmp_path
        )  # 3 operations with inputs
    finally:
        stop_pid(proc.pid)
    log = (settings.state.run / "webhook.log").read_text()
    assert "Traceback" not in log, log[-3000:]

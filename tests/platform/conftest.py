"""Fixtures of the platform tests: one real `mloop up` platform per module (see tests/platform/helpers.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.platform.helpers import Platform, platform_env, platform_settings


@pytest.fixture(scope="module")
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """A whole `mloop up` platform for one test module; `mloop down` (and a pid sweep) at the end.

    A module may set ``PLATFORM_SETTINGS = {field: value}`` to change its platform's settings.
    """
    settings = platform_settings(tmp_path_factory.mktemp("platform"))
    settings = settings.model_copy(update=getattr(request.module, "PLATFORM_SETTINGS", {}))
    env = platform_env(settings)
    p = Platform(settings=settings, env=env, first_up={})
    try:
        out = p.cli("up", "--json")
        assert out.returncode == 0, f"mloop up failed:\n{out.stdout}\n{out.stderr}\n{p.logs_tail()}"
        p.first_up = json.loads(out.stdout)
        yield p
    finally:
        p.down()

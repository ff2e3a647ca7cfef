"""One real team-mode infra (PostgreSQL + SeaweedFS S3 on loopback) for tests: :func:`running_infra`.

Team-mode test modules share one infra per session, e.g. in a conftest::

    @pytest.fixture(scope="session")
    def infra(tmp_path_factory):
        with running_infra(tmp_path_factory.mktemp("infra")) as found:
            yield found

and hand ``found.env`` (the ``mloop infra env`` settings) to the processes under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from mloop.core.processes import free_port
from mloop.core.settings import Settings
from mloop.platform import infra
from mloop.platform.infra import InfraPorts


@dataclass(frozen=True)
class InfraEnv:
    """A running infra: its MLOOP_HOME, the ``mloop infra env`` settings, server pids and ports."""

    home: Path
    env: dict[str, str]
    """MLOOP_DATABASE_URL, MLOOP_S3_ENDPOINT_URL, MLOOP_ARTIFACTS_URI, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION."""
    pids: dict[str, int]
    """Server name (``postgres``, ``s3``) -> pid."""
    ports: InfraPorts

    def database_url(self, database: str = infra.DB_NAME) -> str:
        """The PostgreSQL URL of one of the infra's databases (``mloop``, ``mloop_prefect``, ...)."""
        return self.env["MLOOP_DATABASE_URL"].rsplit("/", 1)[0] + f"/{database}"


def in_team_mode(settings: Settings, env: dict[str, str]) -> Settings:
    """``settings`` pointed at the infra whose ``mloop infra env`` settings are ``env`` (team mode)."""
    return settings.model_copy(
        update={
            "database_url": SecretStr(env["MLOOP_DATABASE_URL"]),
            "s3_endpoint_url": env["MLOOP_S3_ENDPOINT_URL"],
            "artifacts_uri": env["MLOOP_ARTIFACTS_URI"],
        }
    )


@contextmanager
def running_infra(
    home: Path, *, pg_port: int | None = None, s3_port: int | None = None
) -> Iterator[InfraEnv]:
    """Start the infra under ``home`` (free loopback ports unless given); always stop it afterwards."""
    try:
        status = infra.up(
            home, pg_port=pg_port or free_port(), s3_port=s3_port or free_port(), timeout=120
        )
        ports = infra.load_ports(infra.InfraPaths(home))
        assert ports is not None
        pids = {s.name: s.pid for s in status.servers if s.pid is not None}
        yield InfraEnv(home=home, env=infra.env(home), pids=pids, ports=ports)
    finally:
        infra.down(home)

"""The platform secret: one file of generated credentials under MLOOP_HOME, mode 0600.

``mloop up`` (or the first service that needs it) creates ``<home>/secrets/platform.json`` once:
the bearer token of the write endpoints, Prefect's basic-auth string, MLflow's admin password and
its Flask session key. Nothing else stores them; they are never logged. ``MLOOP_API_TOKEN`` set by
a person overrides the generated bearer token (see :meth:`mloop.core.settings.Settings.credentials`).

Creation is atomic and race-free: the file is written to a private temporary name and hard-linked
into place, so two processes starting at once agree on one secret (the loser reads the winner's).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr

from mloop.core.errors import MloopError

SECRET_FILE_MODE = 0o600
PREFECT_USER = "mloop"
MLFLOW_ADMIN = "admin"


class PlatformSecrets(BaseModel):
    """Generated credentials of one platform (SecretStr: never shown in reprs or logs)."""

    api_token: SecretStr = Field(
        description="Bearer token of /feedback, /alerts, /notifications, /admin/rollout (and /predict)."
    )
    prefect_auth_string: SecretStr = Field(
        description="'user:password' of the Prefect server's basic auth."
    )
    mlflow_username: str = MLFLOW_ADMIN
    mlflow_password: SecretStr = Field(
        description="Password of the MLflow admin user (never MLflow's default)."
    )
    mlflow_flask_secret: SecretStr = Field(
        description="MLflow's Flask session key (MLFLOW_FLASK_SERVER_SECRET_KEY)."
    )

    @classmethod
    def generate(cls) -> PlatformSecrets:
        return cls(
            api_token=SecretStr(secrets.token_urlsafe(32)),
            prefect_auth_string=SecretStr(f"{PREFECT_USER}:{secrets.token_urlsafe(24)}"),
            mlflow_password=SecretStr(secrets.token_urlsafe(24)),
            mlflow_flask_secret=SecretStr(secrets.token_urlsafe(32)),
        )

    def revealed(self) -> dict[str, str]:
        """Every value in clear (for the file and for ``mloop token``; never for logs)."""
        return {
            "api_token": self.api_token.get_secret_value(),
            "prefect_auth_string": self.prefect_auth_string.get_secret_value(),
            "mlflow_username": self.mlflow_username,
            "mlflow_password": self.mlflow_password.get_secret_value(),
            "mlflow_flask_secret": self.mlflow_flask_secret.get_secret_value(),
        }


def secrets_path(root: Path) -> Path:
    """Where the platform secret of MLOOP_HOME ``root`` lives."""
    return root / "secrets" / "platform.json"


def load_secrets(root: Path) -> PlatformSecrets | None:
    """The platform secret of ``root``, or None when none was created yet."""
    path = secrets_path(root)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return PlatformSecrets.model_validate_json(text)
    except ValueError as exc:
        raise MloopError(
            "the platform secret file is unreadable (torn or edited by hand)",
            where=str(path),
            fix="delete it and run `mloop down && mloop up` (new credentials are generated; "
            "the MLflow admin password in mlflow/auth.db then needs `rm mlflow/auth.db` too)",
        ) from exc


def ensure_secrets(root: Path) -> PlatformSecrets:
    """The platform secret of ``root``, created (0600, atomically, once) when missing."""
    existing = load_secrets(root)
    if existing is not None:
        _tighten(secrets_path(root))
        return existing
    path = secrets_path(root)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    create_secret_file(path, PlatformSecrets.generate().revealed())
    created = load_secrets(root)
    assert created is not None
    return created


def create_secret_file(path: Path, content: dict[str, str]) -> None:
    """Write ``content`` as JSON to ``path`` (mode 0600) unless it exists: written to a private temporary
    name and hard-linked into place, so of two processes creating it at once one wins and the other
    leaves the winner's file as it is (both then read the same secret)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(content, fh)
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # another process won the race: use its secret
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _tighten(path: Path) -> None:
    """A secret someone made readable by others is put back to 0600."""
    if path.stat().st_mode & 0o077:
        os.chmod(path, SECRET_FILE_MODE)

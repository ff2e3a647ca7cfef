"""The one boto3 S3 client factory (team mode): endpoint, keys, region and timeouts in one place.

boto3 is imported only when a client is made (single-machine mode never imports it). Keys are passed in
(``mloop infra``'s checks hold the keys they generated) or, when None, boto3 reads the standard AWS
environment (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_DEFAULT_REGION``). Keys are never
logged or put in a message here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mloop.core.errors import MloopError

S3_WHERE = "MLOOP_S3_ENDPOINT_URL / MLOOP_ARTIFACTS_URI"
MISSING_CODES = frozenset({"404", "NoSuchKey", "NoSuchBucket"})
"""S3 error codes of an object or bucket that does not exist."""


@dataclass(frozen=True)
class S3Timeouts:
    """How long one S3 call may take: connect and read timeouts (s) and botocore's retry settings."""

    connect: float
    read: float
    max_attempts: int
    mode: str | None = None
    """botocore's retry mode (``standard``); None keeps botocore's default."""

    def retries(self) -> dict[str, Any]:
        """botocore's ``retries`` option. Pure."""
        return {"max_attempts": self.max_attempts, **({"mode": self.mode} if self.mode else {})}


CHECK = S3Timeouts(connect=2, read=5, max_attempts=1)
"""A health check: answer quickly or count as down."""

TRANSFER = S3Timeouts(connect=5, read=60, max_attempts=3, mode="standard")
"""Moving files (model exports): patient reads, a few standard retries."""


def s3_client(
    endpoint_url: str | None,
    access_key: str | None = None,
    secret_key: str | None = None,
    *,
    region: str | None = None,
    timeouts: S3Timeouts = TRANSFER,
) -> Any:
    """A boto3 S3 client on ``endpoint_url`` (None: AWS S3) with these keys, or the AWS environment's when None.

    Each client gets its own boto3 session: the default session resolves the environment's keys once and
    keeps them for the life of the process, so a process whose AWS variables changed (another team, a test
    with its own S3 server) would sign with stale keys and be refused (InvalidAccessKeyId)."""
    import boto3.session
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(
            connect_timeout=timeouts.connect, read_timeout=timeouts.read, retries=timeouts.retries()
        ),
    )


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore ``ClientError`` (``NoSuchKey``, ``InvalidAccessKeyId`` ...); '' for any
    other failure (no answer, a timeout). Pure."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def s3_error(exc: BaseException, doing: str, fix: str) -> MloopError:
    """A failed S3 call as an error that says what (``could not <doing>`` and the S3 code), where (the S3
    settings) and how to fix; never a key."""
    return MloopError(
        f"could not {doing}: {error_code(exc) or type(exc).__name__}", where=S3_WHERE, fix=fix
    )

"""BentoML models shared through S3 in team mode (issue 13): what one host packages, another serves.

In team mode (:func:`mloop.core.team.is_team`) every packaged model is exported, in BentoML's own
format (``bentoml.models.export_model``), to ``<MLOOP_ARTIFACTS_URI>/bentoml/<name>/v<version>.bentomodel``,
and a process that needs a tag its local store lacks imports it from there
(``bentoml.models.import_model``) before loading it. Team mode has no local fallback: an export that
fails fails the packaging, and a model that is neither local nor in S3 is an error that says where
it looked.

- :func:`export_model`: upload the tag's export unless the object exists (idempotent: HEAD first);
- :func:`ensure_local`: the tag in the local store, imported from S3 if needed, under the tag's
  packaging lock (:func:`serving.bundle.local_store.package_lock_path`); :func:`fetch_model` is the same for a
  caller that holds the lock already and wants False rather than an error when S3 has no such object.

BentoML reads BENTOML_HOME once per process, so the export and the import run in the store child
(:mod:`serving.bundle.store`, ``op`` ``export`` / ``import``) pointed at ``state.bentoml_home``; this module
moves the files with boto3 (credentials from the standard ``AWS_*`` variables, endpoint
``MLOOP_S3_ENDPOINT_URL``). On a single machine (:func:`remote_layout` is None) nothing here touches
S3 or imports boto3.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mloop.core.errors import MloopError
from mloop.core.names import check_name
from mloop.core.s3 import s3_client
from mloop.core.settings import Settings
from mloop.core.team import ArtifactLayout, team_config
from serving.bundle.local_store import model_in_store, package_lock_path, run_store_job

SUFFIX = ".bentomodel"
_VERSION = re.compile(r"v[0-9]{1,18}")
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


# ---------------------------------------------------------------- pure


def remote_layout(settings: Settings) -> ArtifactLayout | None:
    """Where models are shared: the team's S3 layout, or None on a single machine (then no S3 call is
    ever made). MloopError when a team setting is wrong or missing. Pure."""
    team = team_config(settings)
    return team.artifacts if team is not None else None


def split_tag(tag: str) -> tuple[str, str]:
    """``name:vN`` -> (name, ``vN``), both checked (a tag from a request or a file never becomes a path
    or a key unchecked). Pure."""
    name, sep, version = tag.partition(":")
    if not sep or not _VERSION.fullmatch(version):
        raise MloopError(
            f"invalid model tag {tag!r}", fix="use <model name>:v<version>, e.g. loans:v3"
        )
    return check_name(name, "model"), version


def _is_tag(tag: str) -> bool:
    try:
        split_tag(tag)
    except MloopError:
        return False
    return True


def object_key(layout: ArtifactLayout, tag: str) -> str:
    """The S3 key of ``tag``'s export: ``<prefix>/bentoml/<name>/v<version>.bentomodel``. Pure."""
    name, version = split_tag(tag)
    return f"{layout.key('bentoml')}/{name}/{version}{SUFFIX}"


def object_uri(layout: ArtifactLayout, tag: str) -> str:
    """``s3://bucket/<key>`` of ``tag``'s export (for messages). Pure."""
    return f"s3://{layout.bucket}/{object_key(layout, tag)}"


# ---------------------------------------------------------------- S3


def _client(layout: ArtifactLayout) -> Any:
    """The S3 client for ``layout`` (:func:`mloop.core.s3.s3_client`: keys and region from the ``AWS_*``
    environment); the one place this module makes one (a single machine never calls it)."""
    return s3_client(layout.endpoint_url)


def _s3_error(action: str, layout: ArtifactLayout, tag: str, exc: Exception) -> MloopError:
    """An S3 failure as what / where / fix (botocore's message carries no secret)."""
    return MloopError(
        f"could not {action} BentoML model {tag} ({type(exc).__name__}: {exc})",
        where=f"{object_uri(layout, tag)} (endpoint {layout.endpoint_url or 'AWS S3'})",
        fix="check that the S3 store is up (`mloop infra status`), that MLOOP_S3_ENDPOINT_URL and MLOOP_ARTIFACTS_URI "
        "point at it, and that AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are set for it",
    )


def _exists(client: Any, layout: ArtifactLayout, tag: str) -> bool:
    """True when ``tag``'s export is in S3 (HEAD); MloopError for anything but a 404."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.head_object(Bucket=layout.bucket, Key=object_key(layout, tag))
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
            return False
        raise _s3_error("look up", layout, tag, exc) from exc
    except BotoCoreError as exc:
        raise _s3_error("look up", layout, tag, exc) from exc
    return True


def remote_exists(settings: Settings, tag: str) -> bool:
    """True when ``tag``'s export is in the team's S3 (always False on a single machine, without S3)."""
    layout = remote_layout(settings)
    return layout is not None and _exists(_client(layout), layout, tag)


# ---------------------------------------------------------------- export / import


def export_model(settings: Settings, tag: str, exported: Path | None = None) -> bool:
    """Upload ``tag``'s BentoML export to S3; False when there is nothing to do (single machine, or the
    object exists already: exports are immutable like tags). ``exported``: a file the store child
    already wrote (packaging does), else one is exported from the local store now. MloopError on any
    failure: team mode has no local fallback."""
    layout = remote_layout(settings)
    if layout is None:
        return False
    client = _client(layout)
    if _exists(client, layout, tag):
        return False
    workdir: Path | None = None
    try:
        if exported is None:
            settings.state.ensure()
            workdir = Path(tempfile.mkdtemp(prefix="export-", dir=settings.state.tmp))
            exported = workdir / f"model{SUFFIX}"
            done = run_store_job(settings, {"op": "export", "tag": tag, "path": str(exported)})
            exported = Path(done.get("exported") or exported)
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            client.upload_file(str(exported), layout.bucket, object_key(layout, tag))
        except (Boto3Error, BotoCoreError, ClientError) as exc:
            raise _s3_error("upload", layout, tag, exc) from exc
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    return True


def fetch_model(settings: Settings, tag: str) -> bool:
    """``tag`` into the local store from S3, for a caller holding the tag's packaging lock. True: the
    tag is local (already, or imported now); False: single machine, or S3 has no such object.
    MloopError when S3 fails or the import does (the tag is checked by the store child)."""
    split_tag(tag)
    if model_in_store(settings.state.bentoml_home, tag):
        return True
    layout = remote_layout(settings)
    if layout is None:
        return False
    client = _client(layout)
    if not _exists(client, layout, tag):
        return False
    settings.state.ensure()
    workdir = Path(tempfile.mkdtemp(prefix="import-", dir=settings.state.tmp))
    try:
        path = workdir / f"model{SUFFIX}"
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            client.download_file(layout.bucket, object_key(layout, tag), str(path))
        except (Boto3Error, BotoCoreError, ClientError) as exc:
            raise _s3_error("download", layout, tag, exc) from exc
        run_store_job(settings, {"op": "import", "tag": tag, "path": str(path)})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return True


def ensure_local(settings: Settings, tag: str) -> bool:
    """True when ``tag`` is in the local BentoML store, importing it from S3 in team mode (under the
    tag's packaging lock). Single machine: just the store check (False when absent, no S3). Team mode:
    MloopError when the model is in neither place (what, where it looked, how to fix)."""
    from filelock import FileLock

    layout = remote_layout(settings)
    if (
        layout is None
    ):  # as before team mode: the caller's bentoml.models.get decides (no S3, no boto3)
        return _is_tag(tag) and model_in_store(settings.state.bentoml_home, tag)
    name, version = split_tag(tag)
    if model_in_store(settings.state.bentoml_home, tag):
        return True
    with FileLock(package_lock_path(settings.state.locks, name, version[1:]), timeout=600):
        if fetch_model(settings, tag):
            return True
    raise MloopError(
        f"BentoML model {tag} is neither in the local store nor in the team's S3",
        where=f"{settings.state.bentoml_home} and {object_uri(layout, tag)}",
        fix=f"package it on any host with the same team settings (`mloop package {name}`, or a deploy), "
        "which exports it to S3",
    )

"""One atomic file write: a reader sees the old file or the whole new one, never half of it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_atomic(
    path: Path, data: bytes, *, mode: int = 0o600, tmp: Path | None = None, sync_dir: bool = False
) -> Path:
    """Write ``data`` to ``path``: a temporary file beside it (``tmp``, default a dot-named unique one),
    fsync, rename over ``path``; with ``sync_dir`` the folder too (the rename survives a power cut).

    ``mode`` is set with fchmod, so the umask (077 in mloop's entry points) does not narrow it. The
    temporary file is removed when anything fails.
    """
    tmp = tmp or path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            os.fchmod(fd, mode)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


@contextmanager
def try_lock(path: Path) -> Iterator[bool]:
    """Hold the OS file lock ``path`` while the block runs; yields False at once (without waiting)
    when another process holds it. Released when the holder ends, even by a crash."""
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, blocking=False)
    try:
        lock.acquire()
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()

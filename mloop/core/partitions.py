"""Map a function over partitions, serially or on Dask, chosen by ``MLOOP_DASK_ADDRESS``.

The same setting that puts training on Dask (``flows/train.py``) puts partition reads on it: the
monitor reads a big prediction-log window from S3 one part per Dask task (team mode,
:mod:`serving.log.remote_parts`). Values:

- empty: a plain loop in the calling thread (no Dask imported);
- ``local``: Dask's threaded scheduler in this process (parquet reads release the GIL, so threads
  overlap the S3 round trips; no cluster to start or stop);
- anything else: the address of a Dask scheduler (``tcp://host:8786``); the tasks run on its
  workers, which need the project installed and the S3 credentials in their own environment
  (the functions sent carry no credentials).

Results come back in the order of the items, whatever ran where.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from mloop.core.errors import MloopError

T = TypeVar("T")
R = TypeVar("R")
Mapper = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]
DASK_ADDRESS_ENV = "MLOOP_DASK_ADDRESS"
CONNECT_TIMEOUT_S = 10


def serial_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(item) for item in items]``: the mapper without Dask."""
    return [fn(item) for item in items]


def dask_address(environ: dict[str, str] | None = None) -> str:
    """``MLOOP_DASK_ADDRESS`` stripped ('' when unset)."""
    return (os.environ if environ is None else environ).get(DASK_ADDRESS_ENV, "").strip()


@contextmanager
def partition_mapper(address: str | None = None) -> Iterator[Mapper]:
    """A mapper for ``address`` (default: ``MLOOP_DASK_ADDRESS``), see the module docstring. A scheduler
    that cannot be reached is an error that names the setting, not a silent fallback: a configured
    cluster is expected to do the work."""
    address = dask_address() if address is None else address.strip()
    if not address:
        yield serial_map
        return
    if address == "local":
        from dask.base import compute
        from dask.delayed import delayed

        def threaded(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
            return list(
                compute(*[delayed(fn, pure=False)(item) for item in items], scheduler="threads")
            )

        yield threaded
        return
    from distributed import Client

    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except OSError as exc:
        raise MloopError(
            f"the Dask scheduler at {address} did not answer: {exc}",
            where=DASK_ADDRESS_ENV,
            fix="start the scheduler, or set MLOOP_DASK_ADDRESS to 'local' (threads in this process) or empty",
        ) from exc
    try:
        # a synchronous client: gather returns the results (a coroutine only for an asynchronous one)
        yield lambda fn, items: list(
            cast(list[Any], client.gather(client.map(fn, list(items), pure=False)))
        )
    finally:
        client.close()

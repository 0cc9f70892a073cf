"""Runs large decode and encode work off the event loop, on a small thread pool of its own.

Called by the REST and gRPC adapters for bodies and responses of at least `threshold` bytes:
decompressing, parsing and framing tens of megabytes takes long enough to stall health checks and
small requests if it ran on the loop. Small payloads stay on the loop, where a thread hop would
cost more than the work. The codecs spend their time in C (zlib, orjson, numpy) or in short
Python loops, so the interpreter's switch interval lets the loop run while a thread decodes.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

#: Payloads from this size on are decoded and encoded on the codec threads.
DEFAULT_THRESHOLD = 256 * 1024


class Offload:
    """A named thread pool for codec work plus the size from which work goes there."""

    def __init__(self, threads: int = 2, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._pool is None:  # created on first use: most workers never see a large body
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="codec")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

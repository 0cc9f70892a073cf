"""Wait on a condition with a deadline: the one polling helper for tooling and tests.

Called by the dev tooling (cluster.py), the test tiers and the benchmarks, which must never
sleep a fixed time: they poll a predicate until it holds or the deadline passes, then fail with
what was last seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeoutError(AssertionError):
    """The condition did not hold before the deadline; the message says what and what was seen."""


def wait_for(
    predicate: Callable[[], T],
    timeout_s: float,
    what: str,
    interval_s: float = 0.25,
    *,
    ignore: tuple[type[Exception], ...] = (),
    abort: Callable[[], str | None] | None = None,
) -> T:
    """Return the first truthy value of `predicate()`, polling every `interval_s` seconds.

    `ignore`: exceptions that mean "not yet" (a port not listening, a half-written file); the
    last one is reported on timeout. `abort`: called before each attempt; a message from it
    fails the wait at once (a process that exited will never become ready).
    """
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    error: Exception | None = None
    while True:
        if abort is not None and (reason := abort()):
            raise WaitTimeoutError(f"gave up waiting for {what}: {reason}")
        try:
            last = predicate()
        except ignore as exc:
            error = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            seen = f"last error: {error!r}" if error is not None and not last else f"last: {last!r}"
            raise WaitTimeoutError(f"timed out after {timeout_s:g} s waiting for {what}; {seen}")
        time.sleep(interval_s)


async def wait_for_async(
    predicate: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.05
) -> T:
    """`wait_for` from a coroutine: the predicate (blocking I/O allowed) runs in a thread, so the
    event loop keeps serving the clients a test is driving meanwhile."""
    return await asyncio.to_thread(wait_for, predicate, timeout_s, what, interval_s)


def observe_for(seconds: float) -> None:
    """Let a measurement window pass (e.g. counting writes in steady state).

    Not a wait for a condition: the point is to watch what happens during the window.
    """
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 1.0))

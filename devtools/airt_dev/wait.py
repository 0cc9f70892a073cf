"""Wait on a condition with a deadline: the one polling helper for tooling and tests.

Called by dev/cluster.py and by the cluster and e2e test tiers, which must never sleep a fixed
time: they poll a predicate until it holds or the deadline passes, then fail with what was
last seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeoutError(AssertionError):
    """The condition did not hold before the deadline; the message says what and what was seen."""


def wait_for(
    predicate: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.25
) -> T:
    """Return the first truthy value of `predicate()`, polling every `interval_s` seconds."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(
                f"timed out after {timeout_s:g} s waiting for {what}; last: {last!r}"
            )
        time.sleep(interval_s)


def observe_for(seconds: float) -> None:
    """Let a measurement window pass (e.g. counting writes in steady state).

    Not a wait for a condition: the point is to watch what happens during the window.
    """
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 1.0))

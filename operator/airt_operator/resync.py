"""The slow safety net: every ModelDeployment is queued for a reconcile at a fixed interval.

Started by the controller (controller.py) at start-up. One cluster-level loop instead of a kopf
timer per object: per-object timers make kopf put a finalizer on every ModelDeployment (a write,
and a namespace that cannot be deleted while the operator is down). A reconcile that finds
nothing changed writes nothing, so a resync costs CPU, not API requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Protocol

Key = tuple[str, str]  # (namespace, name)


class Queue(Protocol):
    """Where keys go to be reconciled (workqueue.WorkQueue)."""

    def add(self, namespace: str, name: str) -> None: ...


class ResyncLoop:
    """Every `interval_s`, queue every key `keys` returns."""

    def __init__(self, keys: Callable[[], Iterable[Key]], queue: Queue, interval_s: float) -> None:
        self._keys = keys
        self._queue = queue
        self.interval_s = interval_s

    def resync(self) -> int:
        """Queue every key once now; returns how many."""
        count = 0
        for namespace, name in self._keys():
            self._queue.add(namespace, name)
            count += 1
        return count

    async def run(self) -> None:
        """Forever: sleep an interval, then queue everything."""
        while True:
            await asyncio.sleep(self.interval_s)
            self.resync()

"""A coalescing work queue for reconciles, drained by a fixed number of workers, that retries
a failed key with capped exponential backoff.

Owned by the controller (controller.py), which the kopf handlers call: a child's, a pod's or a
runtime's event only says "look at ModelDeployment X again". Awaiting that reconcile inside the
kopf handler would keep kopf's per-object worker — and the event body it holds — alive until
the reconcile finishes; with thousands of children changing at once that is thousands of bodies
and reconciles in flight (the operator reached 540 MB creating 1,000 ModelDeployments that way).
Here an event costs one key: a key already waiting is not queued twice, and a key that changes
while its reconcile runs is queued again, so the last event is never lost (controller-runtime's
workqueue semantics). asyncio.Queue has no de-duplication, hence this module.

A reconcile that fails (the API server is away, a child's place is taken, a kind is not served
yet) is queued again after a delay that doubles with each consecutive failure of that key, up to
a cap, so nothing waits for the next event or the slow resync and a key that keeps failing costs
a bounded number of attempts per minute. An event for a key that is waiting out its delay runs
it at once (the event may be the fix), unless the event only echoes the operator's own write (a
status it wrote, a child it applied), which cannot be. Such an echo is also dropped while the
key's reconcile runs (that reconcile made the write, and its outcome decides what comes next).
Without these exceptions a failing key would run itself again and again: each failed attempt
writes a status ("retrying after N failed attempts") whose event would cut the delay short, a
loop bounded only by the API server's round trips. A success forgets the key's failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger("airt.operator")

Key = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts of a failing key: base · 2^(failures-1), at most `cap` seconds."""

    base_s: float = 0.5
    cap_s: float = 60.0

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        # 2**64 would be a float overflow long after the cap is reached: stop doubling early.
        return min(self.cap_s, self.base_s * float(2 ** min(failures - 1, 62)))


class WorkQueue:
    """Keys to reconcile, each at most once in the queue; `workers` coroutines drain it.

    `run` returns True when the key is done and False when it should be tried again later; an
    exception counts as False (a bug in one reconcile must neither stop a worker nor drop the
    key).
    """

    def __init__(
        self,
        run: Callable[[str, str], Awaitable[bool]],
        workers: int,
        backoff: Backoff | None = None,
    ) -> None:
        self._run = run
        self._workers = workers
        self._backoff = backoff or Backoff()
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._pending: set[Key] = set()
        self._running: Counter[Key] = Counter()  # reconciles in flight per key
        self._failures: dict[Key, int] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}

    def add(self, namespace: str, name: str, *, wake: bool = True) -> None:
        """Queue the key. A key waiting out its backoff runs at once when `wake` (the event may
        be the fix); otherwise (the event echoes the operator's own write) its timer stands, and
        a key whose reconcile is running is not queued again."""
        key = (namespace, name)
        if not wake and self._running[key] > 0:
            return
        if key in self._timers:
            if not wake:
                return
            self._timers.pop(key).cancel()  # an event while waiting out a backoff: look now
        self._enqueue(key)

    def _enqueue(self, key: Key) -> None:
        if key in self._pending:
            return  # already waiting: its reconcile will read the newest state
        self._pending.add(key)
        self._queue.put_nowait(key)

    @contextlib.contextmanager
    def in_flight(self, namespace: str, name: str) -> Iterator[None]:
        """Mark a reconcile of the key as running (the queue's own, or one the controller runs
        directly for a spec change), so echoes of its writes do not queue it again."""
        key = (namespace, name)
        self._running[key] += 1
        try:
            yield
        finally:
            self._running[key] -= 1
            if self._running[key] <= 0:
                del self._running[key]

    def retry(self, namespace: str, name: str) -> float:
        """Queue the key again after its backoff delay (one more failure); returns the delay."""
        key = (namespace, name)
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = self._backoff.delay(failures)
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)
        return delay

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self._enqueue(key)

    def forget(self, namespace: str, name: str) -> None:
        """The key succeeded or its object is gone: drop its failures and any waiting retry."""
        key = (namespace, name)
        self._failures.pop(key, None)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def failures(self, namespace: str, name: str) -> int:
        return self._failures.get((namespace, name), 0)

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def waiting_retries(self) -> int:
        return len(self._timers)

    async def join(self) -> None:
        """Until every key queued so far has been reconciled (tests, shutdown); keys waiting
        out a backoff are not in the queue yet."""
        await self._queue.join()

    def start(self) -> list[asyncio.Task[None]]:
        return [
            asyncio.create_task(self._work(), name=f"reconcile worker {i}")
            for i in range(self._workers)
        ]

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            # Taken off `pending` before the reconcile starts: an event that arrives during it
            # queues the key again, so that event's change is looked at too.
            self._pending.discard(key)
            try:
                with self.in_flight(*key):
                    done = await self._run(*key)
            except Exception:
                log.exception("reconcile of %s/%s failed unexpectedly", *key)
                done = False
            try:
                if done:
                    self._failures.pop(key, None)
                else:
                    delay = self.retry(*key)
                    log.info("reconcile of %s/%s retried in %.1fs", *key, delay)
            finally:
                self._queue.task_done()

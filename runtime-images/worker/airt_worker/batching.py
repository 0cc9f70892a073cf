"""The dynamic batcher: Triton's scheduling semantics on one asyncio queue.

The data plane submits one validated request at a time (`DynamicBatcher.submit`); a scheduler task
waits for a free model instance, forms a batch by rows (`plan_batch`, a pure function that the unit
tests drive directly), and runs it on that instance's thread through the `execute` callable the
composition root wires in (the model runner). Results are split back per request by the runner,
so here a batch is just a list of `Pending` entries whose futures are resolved together.

Semantics (Triton's `dynamic_batching`): a batch never exceeds `max_batch_size` rows and a
request's rows are never split; requests whose non-batch shapes differ are never mixed; sizes in
`preferred_batch_sizes` are formed when possible; the oldest request waits at most
`max_queue_delay_microseconds` for a batch to fill; beyond `max_queue_size` waiting requests a new
one is rejected at once; a request still queued when its timeout passes is rejected; `instances`
batches may run at the same time. A batch still running after the execution timeout fails its
requests at once (503); its instance counts as stuck, gets no more batches and makes the worker
not live until it returns — a thread cannot be stopped, so the kubelet's restart is the remedy.
Because batches are formed only when an instance is free, requests that arrive while every
instance is busy naturally accumulate into the next batch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from airt_worker.errors import ExecutionTimeoutError, InferenceError, UnavailableError


@dataclass(slots=True, eq=False)
class Pending:
    """One validated request waiting for, or taking part in, a batch."""

    inputs: list[Any]
    rows: int
    key: Hashable
    enqueued_ns: int
    deadline_ns: int = 0
    future: asyncio.Future[list[Any]] | None = None
    dispatched_ns: int = 0
    batch_size: int = 0
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    outputs: list[Any] = field(default_factory=list)
    error: InferenceError | None = None


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """The batching knobs, in the units the scheduler uses."""

    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_ns: int = 0
    max_queue_size: int = 0
    default_timeout_ns: int = 0


def plan_batch(
    rows: Sequence[int],
    keys: Sequence[Hashable],
    policy: BatchPolicy,
    delay_expired: bool,
) -> list[int] | None:
    """Which queued entries (indices, FIFO) form the next batch now, or None to keep waiting.

    `rows[i]`/`keys[i]` describe the i-th queued request (its batch rows and its non-batch shape
    key). Only entries with the head's key are considered, so shapes never mix.
    """
    if not rows:
        return None
    if policy.max_batch_size == 0:
        return [0]
    preferred = policy.preferred_batch_sizes
    head_key = keys[0]
    chosen: list[int] = []
    total = 0
    best_preferred = 0  # length of the longest prefix of `chosen` whose rows are a preferred size
    full = False
    for i, (r, k) in enumerate(zip(rows, keys, strict=True)):
        if k != head_key:
            continue
        if total + r > policy.max_batch_size:
            full = True
            break
        chosen.append(i)
        total += r
        if total in preferred:
            best_preferred = len(chosen)
        if total == policy.max_batch_size:
            full = True
            break
    if full:
        if best_preferred and total not in preferred:
            return chosen[:best_preferred]
        return chosen
    if delay_expired:
        return chosen
    if preferred and total == max(preferred):
        return chosen
    return None


class DynamicBatcher:
    """Queues requests and runs batches of them on `instances` model instances.

    `execute(instance, batch)` runs in the instance's thread and fills every entry's `outputs` or
    `error` and its compute timings; it must not raise.
    """

    def __init__(
        self,
        execute: Callable[[int, list[Pending]], None],
        policy: BatchPolicy,
        instances: int,
        on_batch: Callable[[list[Pending]], None] | None = None,
        execution_timeout_ns: int = 0,
    ) -> None:
        self._execute = execute
        self._execution_timeout_ns = execution_timeout_ns
        #: instance -> monotonic ns its batch started, for instances past the execution timeout
        self.stuck: dict[int, int] = {}
        self.execution_timeouts = 0
        self._running = 0
        self._reaper: asyncio.TimerHandle | None = None
        self._reaper_at = 0
        self._policy = policy
        self._on_batch = on_batch
        self._queue: collections.deque[Pending] = collections.deque()
        self._wake = asyncio.Event()
        self._free: asyncio.Queue[int] = asyncio.Queue()
        for i in range(instances):
            self._free.put_nowait(i)
        self._instances = instances
        self._executor = ThreadPoolExecutor(max_workers=instances, thread_name_prefix="instance")
        self._closing = False
        self._in_flight = 0
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def pending(self) -> int:
        """Requests accepted and not yet answered: queued plus executing."""
        return len(self._queue) + self._in_flight

    @property
    def running(self) -> int:
        """Model instances executing a batch now (stuck ones included)."""
        return self._running

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._schedule(), name="batcher")

    async def submit(self, item: Pending) -> list[Any]:
        """Queue `item` and wait for its outputs; raises the item's InferenceError."""
        if self._closing:
            raise UnavailableError(
                "the worker is shutting down and accepts no new requests", "SHUTTING_DOWN"
            )
        limit = self._policy.max_queue_size
        if limit and len(self._queue) >= limit:
            raise UnavailableError(
                f"exceeds maximum queue size: {len(self._queue)} requests already queued "
                f"(max_queue_size {limit})",
                "QUEUE_FULL",
            )
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Any]] = loop.create_future()
        item.future = fut
        if not item.deadline_ns and self._policy.default_timeout_ns:
            item.deadline_ns = item.enqueued_ns + self._policy.default_timeout_ns
        self._queue.append(item)
        self._idle.clear()
        self._wake.set()
        if item.deadline_ns:
            self._arm_reaper(item.deadline_ns)
        try:
            return await fut
        except asyncio.CancelledError:
            # the client went away: a request still queued leaves the queue now, not when the
            # scheduler next looks (which waits for a free instance)
            if not item.dispatched_ns:
                self._discard(item)
            raise

    def _arm_reaper(self, deadline_ns: int) -> None:
        """Make sure the queue is swept by `deadline_ns`. One timer serves every queued request
        (a timeout per request would cost a timer and a shielded future each); with one default
        timeout, deadlines only grow, so the timer already set is nearly always early enough."""
        if self._reaper is not None and self._reaper_at <= deadline_ns:
            return
        if self._reaper is not None:
            self._reaper.cancel()
        self._reaper_at = deadline_ns
        delay = max(deadline_ns - time.monotonic_ns(), 0) / 1e9
        self._reaper = asyncio.get_running_loop().call_later(delay, self._reap)

    def _reap(self) -> None:
        """Reject the queued requests whose timeout passed (running ones are not affected: the
        timeout bounds queueing only), then set the timer for the next deadline."""
        self._reaper = None
        self._drop_dead()
        self._maybe_idle()
        deadlines = [p.deadline_ns for p in self._queue if p.deadline_ns]
        if deadlines:
            self._arm_reaper(min(deadlines))

    def _timeout_error(self, item: Pending) -> UnavailableError:
        waited = (time.monotonic_ns() - item.enqueued_ns) // 1000
        return UnavailableError(
            f"request timeout expired: waited {waited} us in the queue", "QUEUE_TIMEOUT"
        )

    def _discard(self, item: Pending) -> None:
        with contextlib.suppress(ValueError):
            self._queue.remove(item)
        if item.future is not None and not item.future.done():
            item.future.cancel()
        self._maybe_idle()

    async def close(self) -> None:
        """Stop accepting; run every queued request (no more waiting for fuller batches); stop."""
        self._closing = True
        self._wake.set()
        await self._idle.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # a stuck instance's thread never returns: do not wait for it (the process exits anyway)
        self._executor.shutdown(wait=not self.stuck)

    def _maybe_idle(self) -> None:
        if not self._queue and not self._in_flight:
            self._idle.set()

    async def _schedule(self) -> None:
        while True:
            instance = await self._free.get()
            batch = await self._next_batch()
            self._in_flight += len(batch)
            now = time.monotonic_ns()
            for item in batch:
                item.dispatched_ns = now
                item.batch_size = len(batch)
            loop = asyncio.get_running_loop()
            self._running += 1
            done = loop.run_in_executor(self._executor, self._execute, instance, batch)
            watchdog = None
            if self._execution_timeout_ns:
                watchdog = loop.call_later(
                    self._execution_timeout_ns / 1e9, self._expire, batch, instance, now
                )
            done.add_done_callback(functools.partial(self._finish, batch, instance, watchdog))

    def _expire(self, batch: list[Pending], instance: int, started_ns: int) -> None:
        """The batch outlived the execution timeout: fail it now, mark its instance stuck."""
        self.stuck[instance] = started_ns
        self.execution_timeouts += 1
        self._in_flight -= len(batch)
        seconds = self._execution_timeout_ns / 1e9
        error = ExecutionTimeoutError(
            f"the model did not finish a batch of {len(batch)} requests within {seconds:g}s "
            "(execution_timeout_seconds); the model instance is stuck"
        )
        for item in batch:
            if item.future is not None and not item.future.done():
                item.future.set_exception(error)
        self._maybe_idle()

    def _finish(
        self,
        batch: list[Pending],
        instance: int,
        watchdog: asyncio.TimerHandle | None,
        f: asyncio.Future[None],
    ) -> None:
        self._free.put_nowait(instance)
        self._running -= 1
        if watchdog is not None:
            watchdog.cancel()
        if self.stuck.pop(instance, None) is None:  # an expired batch was already accounted
            self._in_flight -= len(batch)
        exc = f.exception() if not f.cancelled() else None
        for item in batch:
            fut = item.future
            if fut is None or fut.done():
                continue
            if exc is not None:
                fut.set_exception(exc)
            elif item.error is not None:
                fut.set_exception(item.error)
            else:
                fut.set_result(item.outputs)
        if self._on_batch is not None:
            self._on_batch(batch)
        self._maybe_idle()

    async def _next_batch(self) -> list[Pending]:
        policy = self._policy
        while True:
            self._drop_dead()
            if not self._queue:
                self._maybe_idle()
                self._wake.clear()
                await self._wake.wait()
                continue
            now = time.monotonic_ns()
            oldest = self._queue[0].enqueued_ns
            expired = self._closing or now - oldest >= policy.max_queue_delay_ns
            queue = self._queue
            picks = plan_batch([p.rows for p in queue], [p.key for p in queue], policy, expired)
            if picks is not None:
                return self._take(picks)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), (oldest + policy.max_queue_delay_ns - now) / 1e9
                )

    def _take(self, picks: list[int]) -> list[Pending]:
        if picks == list(range(len(picks))):
            return [self._queue.popleft() for _ in picks]
        chosen = set(picks)
        batch = [p for i, p in enumerate(self._queue) if i in chosen]
        rest = [p for i, p in enumerate(self._queue) if i not in chosen]
        self._queue.clear()
        self._queue.extend(rest)
        return batch

    def _drop_dead(self) -> None:
        """Remove requests whose client went away or whose timeout passed while queued."""
        if not self._queue:
            return
        now = time.monotonic_ns()
        if all(
            (p.future is None or not p.future.done())
            and not (p.deadline_ns and p.deadline_ns <= now)
            for p in self._queue
        ):
            return
        keep: list[Pending] = []
        for p in self._queue:
            if p.future is not None and p.future.done():
                continue
            if p.deadline_ns and p.deadline_ns <= now:
                if p.future is not None:
                    p.future.set_exception(self._timeout_error(p))
                continue
            keep.append(p)
        self._queue.clear()
        self._queue.extend(keep)

"""The dynamic batcher: Triton's scheduling semantics on one asyncio queue.

The data plane submits one validated request at a time (`DynamicBatcher.submit`, which answers
with the request's outputs and timings as an `Answer`); a scheduler task waits for a free model
instance, forms a batch by rows (`plan_batch`, a pure function that the unit tests drive
directly), concatenates the batch's input arrays along the batch dimension, runs them on that
instance's thread through a `BatchRunner` (`execution`; the model runner, wired in by the
composition root, `server`), and splits the outputs back per request. The runner therefore only
sees arrays in and arrays out; what a request is, and how long it waited, stays here.

Semantics (Triton's `dynamic_batching`): a batch never exceeds `max_batch_size` rows and a
request's rows are never split; requests whose non-batch shapes differ are never mixed; sizes in
`preferred_batch_sizes` are formed when possible; the oldest request waits at most
`max_queue_delay_microseconds` for a batch to fill; beyond `max_queue_size` waiting requests a new
one is rejected at once; a request still queued when its timeout passes is rejected; `instances`
batches may run at the same time. A batch the runner fails (an `InferenceError`) fails each of its
requests once, with that error. A batch still running after the execution timeout fails its
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
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from airt_worker.datatypes import Array
from airt_worker.errors import (
    ExecutionTimeoutError,
    ModelError,
    UnavailableError,
)
from airt_worker.execution import BatchRunner

log = logging.getLogger(__name__)

__all__ = [
    "Answer",
    "BatchInfo",
    "BatchPolicy",
    "BatchReport",
    "BatchRunner",
    "DynamicBatcher",
    "concat_inputs",
    "plan_batch",
    "split_outputs",
]


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """What every request of one batch shares: its number (this batcher's count), its size, and
    when it left the queue and the model ran it (monotonic ns). One per batch; read by the traces
    (`tracing`), ignored otherwise."""

    number: int
    requests: int
    rows: int
    dispatched_ns: int
    model_start_ns: int
    model_end_ns: int


@dataclass(frozen=True, slots=True)
class Answer:
    """One request's outputs (spec order), its share of the batch's timings and its batch."""

    outputs: list[Array]
    queue_ns: int
    compute_input_ns: int
    compute_infer_ns: int
    compute_output_ns: int
    batch: BatchInfo


@dataclass(frozen=True, slots=True)
class BatchReport:
    """One finished model execution, for the statistics (`on_batch`)."""

    requests: int
    rows: int
    compute_input_ns: int
    compute_infer_ns: int
    compute_output_ns: int
    error: BaseException | None = None


@dataclass(slots=True, eq=False)
class _Pending:
    """One validated request waiting for, or taking part in, a batch (the batcher's own)."""

    inputs: list[Array]
    rows: int
    key: Hashable
    enqueued_ns: int
    deadline_ns: int
    future: asyncio.Future[Answer]
    dispatched_ns: int = 0


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


def concat_inputs(requests: Sequence[Sequence[Array]]) -> list[Array]:
    """One batch's inputs: each input of every request, concatenated along the batch dimension
    in request order. A lone request's arrays pass through untouched (no copy)."""
    if len(requests) == 1:
        return list(requests[0])
    return [np.concatenate([r[i] for r in requests]) for i in range(len(requests[0]))]


def split_outputs(
    outputs: Sequence[Array], rows: Sequence[int], names: Sequence[str] = ()
) -> list[list[Array]]:
    """The batch's outputs back per request, in request order: request j gets rows
    `sum(rows[:j])` up to `sum(rows[:j+1])` of every output (views, no copies).

    A lone request gets the outputs as they are (a model without batching has no batch
    dimension to check). Raises ModelError when an output of a batch of several requests does not
    have the batch's total rows first: the model broke the batching contract, and splitting
    anyway would hand a request someone else's rows.
    """
    if len(rows) == 1:
        return [list(outputs)]
    total = sum(rows)
    for i, o in enumerate(outputs):
        if o.ndim == 0 or o.shape[0] != total:
            name = names[i] if i < len(names) else f"#{i}"
            raise ModelError(f"output {name!r} has shape {list(o.shape)}, not {total} batch rows")
    per_request: list[list[Array]] = []
    start = 0
    for r in rows:
        end = start + r
        per_request.append([o[start:end] for o in outputs])
        start = end
    return per_request


@dataclass(frozen=True, slots=True)
class _Done:
    """A batch's outputs split per request, and its timings (concatenate/split included)."""

    outputs: list[list[Array]]
    compute_input_ns: int
    compute_infer_ns: int
    compute_output_ns: int
    model_start_ns: int
    model_end_ns: int


class DynamicBatcher:
    """Queues requests and runs batches of them on `instances` instances of `runner`.

    `on_batch` (optional) hears about every finished model execution, for the statistics;
    `output_names` only makes split errors name the output.
    """

    def __init__(
        self,
        runner: BatchRunner,
        policy: BatchPolicy,
        instances: int,
        on_batch: Callable[[BatchReport], None] | None = None,
        execution_timeout_ns: int = 0,
        output_names: Sequence[str] = (),
    ) -> None:
        self._runner = runner
        self._output_names = tuple(output_names)
        self._execution_timeout_ns = execution_timeout_ns
        #: instance -> monotonic ns its batch started, for instances past the execution timeout
        self.stuck: dict[int, int] = {}
        self.execution_timeouts = 0
        self._running = 0
        self._reaper: asyncio.TimerHandle | None = None
        self._reaper_at = 0
        self._policy = policy
        self._on_batch = on_batch
        self._queue: collections.deque[_Pending] = collections.deque()
        self._wake = asyncio.Event()
        self._free: asyncio.Queue[int] = asyncio.Queue()
        for i in range(instances):
            self._free.put_nowait(i)
        self._instances = instances
        self._executor = ThreadPoolExecutor(max_workers=instances, thread_name_prefix="instance")
        self._closing = False
        self._batches = 0
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

    async def submit(
        self,
        inputs: list[Array],
        rows: int,
        key: Hashable,
        enqueued_ns: int,
        deadline_ns: int = 0,
    ) -> Answer:
        """Queue one validated request and wait for its answer; raises its InferenceError.

        `inputs` are its arrays in spec order, `rows` its batch rows, `key` its non-batch shapes
        (requests with different keys never share a batch), `enqueued_ns` when it arrived
        (monotonic) and `deadline_ns` when it stops being worth running (0: the policy's default
        timeout, if any). Cancelling the caller removes a still-queued request at once.
        """
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
        if not deadline_ns and self._policy.default_timeout_ns:
            deadline_ns = enqueued_ns + self._policy.default_timeout_ns
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        item = _Pending(inputs, rows, key, enqueued_ns, deadline_ns, fut)
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

    def _timeout_error(self, item: _Pending) -> UnavailableError:
        waited = (time.monotonic_ns() - item.enqueued_ns) // 1000
        return UnavailableError(
            f"request timeout expired: waited {waited} us in the queue", "QUEUE_TIMEOUT"
        )

    def _discard(self, item: _Pending) -> None:
        with contextlib.suppress(ValueError):
            self._queue.remove(item)
        if not item.future.done():
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
            loop = asyncio.get_running_loop()
            self._running += 1
            inputs = [p.inputs for p in batch]
            rows = [p.rows for p in batch]
            done = loop.run_in_executor(self._executor, self._execute, instance, inputs, rows)
            watchdog = None
            if self._execution_timeout_ns:
                watchdog = loop.call_later(
                    self._execution_timeout_ns / 1e9, self._expire, batch, instance, now
                )
            done.add_done_callback(functools.partial(self._finish, batch, instance, watchdog))

    def _execute(self, instance: int, inputs: list[list[Array]], rows: list[int]) -> _Done:
        """One batch in the instance's thread: concatenate, run, split (all off the loop).
        Timed on the monotonic clock, the one the request timestamps use."""
        t0 = time.monotonic_ns()
        arrays = concat_inputs(inputs)
        t1 = time.monotonic_ns()
        result = self._runner.run(instance, arrays, sum(rows))
        t2 = time.monotonic_ns()
        outputs = split_outputs(result.outputs, rows, self._output_names)
        t3 = time.monotonic_ns()
        return _Done(
            outputs,
            result.compute_input_ns + (t1 - t0),
            result.compute_infer_ns,
            result.compute_output_ns + (t3 - t2),
            t1,
            t2,
        )

    def _expire(self, batch: list[_Pending], instance: int, started_ns: int) -> None:
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
            if not item.future.done():
                item.future.set_exception(error)
        self._maybe_idle()

    def _finish(
        self,
        batch: list[_Pending],
        instance: int,
        watchdog: asyncio.TimerHandle | None,
        f: asyncio.Future[_Done],
    ) -> None:
        self._free.put_nowait(instance)
        self._running -= 1
        if watchdog is not None:
            watchdog.cancel()
        if self.stuck.pop(instance, None) is None:  # an expired batch was already accounted
            self._in_flight -= len(batch)
        exc = (
            f.exception()
            if not f.cancelled()
            else UnavailableError("the batch was cancelled before it ran")
        )
        if exc is not None:
            # The whole batch fails, once. Running its requests again one by one would cost N
            # more model runs, and a model that hangs or crashes on bad input would do so N
            # times; what one request can be blamed for is refused before batching.
            if isinstance(exc, ModelError) and len(batch) > 1:
                log.warning("a batch of %d requests failed: %s", len(batch), exc.message)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            report = BatchReport(len(batch), sum(p.rows for p in batch), 0, 0, 0, exc)
        else:
            done = f.result()
            rows = sum(p.rows for p in batch)
            self._batches += 1
            info = BatchInfo(
                self._batches,
                len(batch),
                rows,
                batch[0].dispatched_ns,
                done.model_start_ns,
                done.model_end_ns,
            )
            for item, outputs in zip(batch, done.outputs, strict=True):
                if not item.future.done():
                    item.future.set_result(
                        Answer(
                            outputs,
                            item.dispatched_ns - item.enqueued_ns,
                            done.compute_input_ns,
                            done.compute_infer_ns,
                            done.compute_output_ns,
                            info,
                        )
                    )
            report = BatchReport(
                len(batch),
                rows,
                done.compute_input_ns,
                done.compute_infer_ns,
                done.compute_output_ns,
            )
        if self._on_batch is not None:
            self._on_batch(report)
        self._maybe_idle()

    async def _next_batch(self) -> list[_Pending]:
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

    def _take(self, picks: list[int]) -> list[_Pending]:
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
            not p.future.done() and not (p.deadline_ns and p.deadline_ns <= now)
            for p in self._queue
        ):
            return
        keep: list[_Pending] = []
        for p in self._queue:
            if p.future.done():
                continue
            if p.deadline_ns and p.deadline_ns <= now:
                p.future.set_exception(self._timeout_error(p))
                continue
            keep.append(p)
        self._queue.clear()
        self._queue.extend(keep)

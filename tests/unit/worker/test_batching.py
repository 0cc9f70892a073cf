"""The dynamic batcher: batch planning (pure) and the asyncio scheduler with a fake model."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from airt_worker.batching import BatchPolicy, DynamicBatcher, Pending, plan_batch
from airt_worker.errors import UnavailableError


def plan(rows: list[int], policy: BatchPolicy, expired: bool, keys: list[Any] | None = None) -> Any:
    return plan_batch(rows, keys or [()] * len(rows), policy, expired)


def test_no_batching_takes_one_request() -> None:
    assert plan([3, 1, 1], BatchPolicy(max_batch_size=0), expired=False) == [0]


def test_empty_queue_waits() -> None:
    assert plan([], BatchPolicy(max_batch_size=8), expired=True) is None


def test_takes_everything_when_delay_expired() -> None:
    assert plan([1, 2, 1], BatchPolicy(max_batch_size=8), expired=True) == [0, 1, 2]


def test_waits_for_more_before_delay() -> None:
    assert plan([1, 2], BatchPolicy(max_batch_size=8), expired=False) is None


def test_full_batch_goes_at_once_and_rows_are_never_split() -> None:
    policy = BatchPolicy(max_batch_size=4)
    assert plan([2, 2, 1], policy, expired=False) == [0, 1]
    assert plan([3, 2], policy, expired=False) == [0]  # 3 + 2 > 4: the second waits


def test_preferred_size_prefix_when_full() -> None:
    policy = BatchPolicy(max_batch_size=8, preferred_batch_sizes=(4,))
    # 1+1+2 = 4 is preferred; 4+3 = 7 is not, and the next (2) does not fit -> send the 4
    assert plan([1, 1, 2, 3, 2], policy, expired=False) == [0, 1, 2]


def test_largest_preferred_size_reached_goes_without_waiting() -> None:
    policy = BatchPolicy(max_batch_size=8, preferred_batch_sizes=(2, 4))
    assert plan([2, 2], policy, expired=False) == [0, 1]
    assert plan([2], policy, expired=False) is None  # 2 is preferred but 4 may still come


def test_shapes_never_mix() -> None:
    keys = [((3,),), ((5,),), ((3,),)]
    assert plan([1, 1, 1], BatchPolicy(max_batch_size=8), expired=True, keys=keys) == [0, 2]


class FakeModel:
    """Records the batches it runs; each batch waits for `gate` so tests control timing."""

    def __init__(self, gated: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.started = threading.Event()
        if not gated:
            self.gate.set()

    def execute(self, instance: int, batch: list[Pending]) -> None:
        self.started.set()
        self.gate.wait(30)
        self.batches.append([p.inputs[0] for p in batch])
        for p in batch:
            if p.inputs[0] == "bad":
                p.error = UnavailableError("bad one")
            else:
                p.outputs = [p.inputs[0] * 10]
            p.compute_infer_ns = 1


async def until_queued(batcher: DynamicBatcher, n: int) -> None:
    """Let submitted tasks run until `n` requests sit in the queue (no clock involved)."""
    for _ in range(10_000):
        if batcher.queued >= n:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{batcher.queued} queued, expected {n}")


def item(value: Any, rows: int = 1, key: Any = ()) -> Pending:
    import time

    return Pending([value], rows, key, time.monotonic_ns())


async def test_requests_queued_while_busy_form_one_batch() -> None:
    model = FakeModel(gated=True)
    batcher = DynamicBatcher(model.execute, BatchPolicy(max_batch_size=16), instances=1)
    batcher.start()
    first = asyncio.ensure_future(batcher.submit(item(1)))
    await asyncio.to_thread(model.started.wait, 30)  # instance busy with [1]
    rest = [asyncio.ensure_future(batcher.submit(item(i))) for i in range(2, 7)]
    await until_queued(batcher, 5)
    model.gate.set()
    assert await first == [10]
    assert await asyncio.gather(*rest) == [[i * 10] for i in range(2, 7)]
    assert model.batches == [[1], [2, 3, 4, 5, 6]]
    await batcher.close()


async def test_one_bad_request_does_not_fail_its_batch() -> None:
    model = FakeModel(gated=True)
    batcher = DynamicBatcher(model.execute, BatchPolicy(max_batch_size=16), instances=1)
    batcher.start()
    blocker = asyncio.ensure_future(batcher.submit(item(0)))
    await asyncio.to_thread(model.started.wait, 30)
    good = asyncio.ensure_future(batcher.submit(item(1)))
    bad = asyncio.ensure_future(batcher.submit(item("bad")))
    await until_queued(batcher, 2)
    model.gate.set()
    await blocker
    assert await good == [10]
    with pytest.raises(UnavailableError, match="bad one"):
        await bad
    await batcher.close()


async def test_full_queue_rejects_immediately() -> None:
    model = FakeModel(gated=True)
    batcher = DynamicBatcher(
        model.execute, BatchPolicy(max_batch_size=1, max_queue_size=2), instances=1
    )
    batcher.start()
    running = asyncio.ensure_future(batcher.submit(item(0)))
    await asyncio.to_thread(model.started.wait, 30)
    queued = [asyncio.ensure_future(batcher.submit(item(i))) for i in (1, 2)]
    await until_queued(batcher, 2)
    with pytest.raises(UnavailableError, match="exceeds maximum queue size"):
        await batcher.submit(item(3))
    assert batcher.pending == 3
    model.gate.set()
    assert await asyncio.gather(running, *queued) == [[0], [10], [20]]
    await batcher.close()


async def test_timeout_in_queue_rejects() -> None:
    model = FakeModel(gated=True)
    batcher = DynamicBatcher(model.execute, BatchPolicy(max_batch_size=1), instances=1)
    batcher.start()
    running = asyncio.ensure_future(batcher.submit(item(0)))
    await asyncio.to_thread(model.started.wait, 30)
    late = item(1)
    late.deadline_ns = late.enqueued_ns  # already due: rejected without waiting for the model
    with pytest.raises(UnavailableError, match="timeout expired"):
        await batcher.submit(late)
    model.gate.set()
    assert await running == [0]
    await batcher.close()
    assert model.batches == [[0]]


async def test_several_instances_run_batches_concurrently() -> None:
    barrier = threading.Barrier(2, timeout=30)
    seen: list[int] = []

    def execute(instance: int, batch: list[Pending]) -> None:
        barrier.wait()  # both instances must be inside at the same time
        seen.append(instance)
        for p in batch:
            p.outputs = [p.inputs[0]]

    batcher = DynamicBatcher(execute, BatchPolicy(max_batch_size=1), instances=2)
    batcher.start()
    assert await asyncio.gather(batcher.submit(item(1)), batcher.submit(item(2))) == [[1], [2]]
    assert sorted(seen) == [0, 1]
    await batcher.close()


async def test_close_flushes_queue_then_refuses() -> None:
    model = FakeModel()
    policy = BatchPolicy(max_batch_size=64, max_queue_delay_ns=3600 * 10**9)  # would wait 1h
    batcher = DynamicBatcher(model.execute, policy, instances=1)
    batcher.start()
    waiting = [asyncio.ensure_future(batcher.submit(item(i))) for i in range(3)]
    await until_queued(batcher, 3)
    await batcher.close()
    assert await asyncio.gather(*waiting) == [[0], [10], [20]]
    with pytest.raises(UnavailableError, match="shutting down"):
        await batcher.submit(item(9))

"""The dynamic batcher: batch planning, concatenate/split (pure) and the asyncio scheduler with a
fake runner."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from airt_worker.batching import (
    BatchPolicy,
    BatchReport,
    DynamicBatcher,
    concat_inputs,
    plan_batch,
    split_outputs,
)
from airt_worker.datatypes import Array
from airt_worker.errors import ModelError, UnavailableError
from airt_worker.execution import RunResult


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


def rows_of(first: int, rows: int, width: int = 2) -> Array:
    """`rows` rows of `width` columns whose values start at `first` and count up row-major."""
    return np.arange(first, first + rows * width, dtype=np.int64).reshape(rows, width)


def test_concat_uneven_requests_keeps_order_per_input() -> None:
    requests = [
        [rows_of(0, 1), rows_of(100, 1, 3)],
        [rows_of(10, 3), rows_of(200, 3, 3)],
        [rows_of(20, 2), rows_of(300, 2, 3)],
    ]
    x, y = concat_inputs(requests)
    assert x.shape == (6, 2) and y.shape == (6, 3)
    np.testing.assert_array_equal(x, np.concatenate([r[0] for r in requests]))
    np.testing.assert_array_equal(y[1:4], rows_of(200, 3, 3))


def test_concat_lone_request_is_not_copied() -> None:
    a = rows_of(0, 2)
    assert concat_inputs([[a]])[0] is a


def test_split_gives_each_request_its_rows_of_every_output_in_order() -> None:
    rows = [1, 3, 2]
    out_a = np.arange(6)[:, None] * np.ones((1, 4), np.int64)
    out_b = np.array([b"r0", b"r1", b"r2", b"r3", b"r4", b"r5"], dtype=np.object_)
    parts = split_outputs([out_a, out_b], rows)
    assert [len(p) for p in parts] == [2, 2, 2]
    starts = [0, 1, 4]
    for part, start, r in zip(parts, starts, rows, strict=True):
        assert part[0].shape == (r, 4)
        np.testing.assert_array_equal(part[0][:, 0], np.arange(start, start + r))
        assert list(part[1]) == [f"r{i}".encode() for i in range(start, start + r)]


def test_split_refuses_outputs_without_the_batch_rows() -> None:
    with pytest.raises(ModelError, match=r"output 'y' has shape \[4\], not 3 batch rows"):
        split_outputs([np.zeros(3), np.zeros(4)], [1, 2], names=["x", "y"])
    with pytest.raises(ModelError, match="not 3 batch rows"):
        split_outputs([np.float32(1.0).reshape(())], [1, 2])
    lone = np.zeros(())  # one request: passed through as the model returned it
    assert split_outputs([lone], [1])[0][0] is lone


class FakeModel:
    """A BatchRunner that records the batches it runs (first input's first column per row) and
    answers 10 x input; each batch waits for `gate` so tests control timing. A row holding -1
    makes the whole batch fail, as a raising model would."""

    def __init__(self, gated: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.calls: list[tuple[int, int]] = []  # (instance, rows)
        self.gate = threading.Event()
        self.started = threading.Event()
        if not gated:
            self.gate.set()

    def run(self, instance: int, inputs: Sequence[Array], rows: int) -> RunResult:
        self.started.set()
        self.gate.wait(30)
        x = inputs[0]
        assert x.shape[0] == rows
        self.calls.append((instance, rows))
        self.batches.append([int(v) for v in x[:, 0]])
        if (x == -1).any():
            raise ModelError("model execution failed: negative input")
        return RunResult([x * 10], compute_input_ns=1, compute_infer_ns=2, compute_output_ns=3)


async def until_queued(batcher: DynamicBatcher, n: int) -> None:
    """Let submitted tasks run until `n` requests sit in the queue (no clock involved)."""
    for _ in range(10_000):
        if batcher.queued >= n:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{batcher.queued} queued, expected {n}")


async def ask(
    batcher: DynamicBatcher, value: int, rows: int = 1, key: Any = (), deadline_ns: int = 0
) -> list[list[int]]:
    """Submit `rows` rows holding `value`; answer the first output's first column as a list."""
    x = np.full((rows, 1), value, np.int64)
    answer = await batcher.submit([x], rows, key, time.monotonic_ns(), deadline_ns)
    return [[int(v) for v in o[:, 0]] for o in answer.outputs]


async def test_requests_queued_while_busy_form_one_batch() -> None:
    model = FakeModel(gated=True)
    batcher = DynamicBatcher(model, BatchPolicy(max_batch_size=16), instances=1)
    batcher.start()
    first = asyncio.ensure_future(ask(batcher, 1))
    await asyncio.to_thread(model.started.wait, 30)  # instance busy with [1]
    rest = [asyncio.ensure_future(ask(batcher, i)) for i in range(2, 7)]
    await until_queued(batcher, 5)
    model.gate.set()
    assert await first == [[10]]
    assert await asyncio.gather(*rest) == [[[i * 10]] for i in range(2, 7)]
    assert model.batches == [[1], [2, 3, 4, 5, 6]]
    await batcher.close()


async def test_uneven_requests_are_concatenated_and_split_back_in_order() -> None:
    model = FakeModel(gated=True)
    reports: list[BatchReport] = []
    batcher = DynamicBatcher(
        model, BatchPolicy(max_batch_size=16), instances=1, on_batch=reports.append
    )
    batcher.start()
    blocker = asyncio.ensure_future(ask(batcher, 0))
    await asyncio.to_thread(model.started.wait, 30)
    sizes = {1: 3, 2: 1, 3: 4}  # value -> rows
    tasks = [asyncio.ensure_future(ask(batcher, v, rows)) for v, rows in sizes.items()]
    await until_queued(batcher, 3)
    model.gate.set()
    await blocker
    answers = await asyncio.gather(*tasks)
    assert answers == [[[v * 10] * rows] for v, rows in sizes.items()]
    assert model.calls[1] == (0, 8)
    assert model.batches[1] == [1, 1, 1, 2, 3, 3, 3, 3]
    assert (reports[1].requests, reports[1].rows, reports[1].error) == (3, 8, None)
    assert reports[1].compute_infer_ns == 2 and reports[1].compute_input_ns >= 1
    await batcher.close()


async def test_a_failing_batch_fails_each_of_its_requests_once() -> None:
    model = FakeModel(gated=True)
    reports: list[BatchReport] = []
    batcher = DynamicBatcher(
        model, BatchPolicy(max_batch_size=16), instances=1, on_batch=reports.append
    )
    batcher.start()
    blocker = asyncio.ensure_future(ask(batcher, 0))
    await asyncio.to_thread(model.started.wait, 30)
    batch = [asyncio.ensure_future(ask(batcher, v, 2)) for v in (1, -1, 3)]
    await until_queued(batcher, 3)
    model.gate.set()
    await blocker
    results = await asyncio.gather(*batch, return_exceptions=True)
    assert all(isinstance(r, ModelError) and "negative input" in r.message for r in results)
    assert len(model.batches) == 2  # one run for the failing batch, no retries one by one
    assert isinstance(reports[1].error, ModelError) and reports[1].requests == 3
    assert await ask(batcher, 4) == [[40]]  # the instance serves on
    await batcher.close()


async def test_full_queue_rejects_immediately() -> None:
    model = FakeModel(gated=True)
    batcher = DynamicBatcher(model, BatchPolicy(max_batch_size=1, max_queue_size=2), instances=1)
    batcher.start()
    running = asyncio.ensure_future(ask(batcher, 0))
    await asyncio.to_thread(model.started.wait, 30)
    queued = [asyncio.ensure_future(ask(batcher, i)) for i in (1, 2)]
    await until_queued(batcher, 2)
    with pytest.raises(UnavailableError, match="exceeds maximum queue size"):
        await ask(batcher, 3)
    assert batcher.pending == 3
    model.gate.set()
    assert await asyncio.gather(running, *queued) == [[[0]], [[10]], [[20]]]
    await batcher.close()


async def test_timeout_in_queue_rejects() -> None:
    model = FakeModel(gated=True)
    batcher = DynamicBatcher(model, BatchPolicy(max_batch_size=1), instances=1)
    batcher.start()
    running = asyncio.ensure_future(ask(batcher, 0))
    await asyncio.to_thread(model.started.wait, 30)
    # already due: rejected without waiting for the model
    with pytest.raises(UnavailableError, match="timeout expired"):
        await ask(batcher, 1, deadline_ns=time.monotonic_ns())
    model.gate.set()
    assert await running == [[0]]
    await batcher.close()
    assert model.batches == [[0]]


async def test_several_instances_run_batches_concurrently() -> None:
    barrier = threading.Barrier(2, timeout=30)
    seen: list[int] = []

    class Pair:
        def run(self, instance: int, inputs: Sequence[Array], rows: int) -> RunResult:
            barrier.wait()  # both instances must be inside at the same time
            seen.append(instance)
            return RunResult(list(inputs))

    batcher = DynamicBatcher(Pair(), BatchPolicy(max_batch_size=1), instances=2)
    batcher.start()
    assert await asyncio.gather(ask(batcher, 1), ask(batcher, 2)) == [[[1]], [[2]]]
    assert sorted(seen) == [0, 1]
    await batcher.close()


async def test_execution_timeout_fails_the_batch_and_marks_the_instance_stuck() -> None:
    model = FakeModel(gated=True)
    reports: list[BatchReport] = []
    batcher = DynamicBatcher(
        model,
        BatchPolicy(max_batch_size=4),
        instances=1,
        on_batch=reports.append,
        execution_timeout_ns=50_000_000,
    )
    batcher.start()
    with pytest.raises(UnavailableError, match="did not finish a batch of 1 requests"):
        await ask(batcher, 1)
    assert list(batcher.stuck) == [0] and batcher.execution_timeouts == 1
    model.gate.set()  # the thread returns at last: the instance is free and no longer stuck
    for _ in range(1000):
        if not batcher.stuck and reports:
            break
        await asyncio.sleep(0.01)
    assert not batcher.stuck and batcher.running == 0
    assert await ask(batcher, 2) == [[20]]
    await batcher.close()


async def test_close_flushes_queue_then_refuses() -> None:
    model = FakeModel()
    policy = BatchPolicy(max_batch_size=64, max_queue_delay_ns=3600 * 10**9)  # would wait 1h
    batcher = DynamicBatcher(model, policy, instances=1)
    batcher.start()
    waiting = [asyncio.ensure_future(ask(batcher, i)) for i in range(3)]
    await until_queued(batcher, 3)
    await batcher.close()
    assert await asyncio.gather(*waiting) == [[[0]], [[10]], [[20]]]
    with pytest.raises(UnavailableError, match="shutting down"):
        await ask(batcher, 9)

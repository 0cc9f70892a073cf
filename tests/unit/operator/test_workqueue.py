"""The coalescing work queue behind event-driven reconciles (airt_operator.workqueue)."""

from __future__ import annotations

import asyncio

from airt_operator.workqueue import WorkQueue


async def _drain(queue: WorkQueue) -> None:
    tasks = queue.start()
    try:
        await asyncio.wait_for(queue.join(), timeout=10)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_burst_of_events_for_one_object_is_one_reconcile() -> None:
    runs: list[tuple[str, str]] = []

    async def run(ns: str, name: str) -> None:
        runs.append((ns, name))

    queue = WorkQueue(run, workers=4)
    for _ in range(50):
        queue.add("ns", "a")
    queue.add("ns", "b")
    assert len(queue) == 2
    await _drain(queue)
    assert sorted(runs) == [("ns", "a"), ("ns", "b")]
    assert len(queue) == 0


async def test_an_event_during_a_reconcile_queues_the_object_again() -> None:
    runs: list[str] = []
    started = asyncio.Event()
    release = asyncio.Event()

    async def run(ns: str, name: str) -> None:
        runs.append(name)
        if len(runs) == 1:
            started.set()
            await release.wait()

    queue = WorkQueue(run, workers=2)
    queue.add("ns", "a")
    tasks = queue.start()
    try:
        await asyncio.wait_for(started.wait(), timeout=10)
        queue.add("ns", "a")  # the object changed while its first reconcile runs
        release.set()
        await asyncio.wait_for(queue.join(), timeout=10)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert runs == ["a", "a"]


async def test_workers_bound_concurrency_and_survive_a_failing_reconcile() -> None:
    active = 0
    peak = 0
    done: list[str] = []

    async def run(ns: str, name: str) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0)
        active -= 1
        if name == "bad":
            raise RuntimeError("a bug in one reconcile")
        done.append(name)

    queue = WorkQueue(run, workers=3)
    queue.add("ns", "bad")
    for i in range(20):
        queue.add("ns", f"m{i}")
    await _drain(queue)
    assert peak <= 3
    assert sorted(done) == sorted(f"m{i}" for i in range(20))

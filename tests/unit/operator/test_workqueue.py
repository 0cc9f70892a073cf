"""The coalescing work queue behind reconciles (airt_operator.workqueue): de-duplication, and
retries with capped exponential backoff that never lose a key."""

from __future__ import annotations

import asyncio

from airt_operator.workqueue import Backoff, WorkQueue


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

    async def run(ns: str, name: str) -> bool:
        runs.append((ns, name))
        return True

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

    async def run(ns: str, name: str) -> bool:
        runs.append(name)
        if len(runs) == 1:
            started.set()
            await release.wait()
        return True

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

    async def run(ns: str, name: str) -> bool:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0)
        active -= 1
        if name == "bad":
            raise RuntimeError("a bug in one reconcile")
        done.append(name)
        return True

    queue = WorkQueue(run, workers=3, backoff=Backoff(base_s=60))
    queue.add("ns", "bad")
    for i in range(20):
        queue.add("ns", f"m{i}")
    await _drain(queue)
    assert peak <= 3
    assert sorted(done) == sorted(f"m{i}" for i in range(20))
    assert queue.failures("ns", "bad") == 1 and queue.waiting_retries == 1  # not dropped
    queue.stop()


def test_backoff_doubles_up_to_its_cap() -> None:
    b = Backoff(base_s=0.5, cap_s=60)
    assert [b.delay(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 32, 60, 60]
    assert b.delay(10_000) == 60


async def test_a_failing_key_is_retried_with_backoff_until_it_succeeds() -> None:
    attempts: list[int] = []
    succeeded = asyncio.Event()

    async def run(ns: str, name: str) -> bool:
        attempts.append(queue.failures(ns, name))
        if len(attempts) < 4:
            if len(attempts) == 2:
                raise RuntimeError("an unexpected error is retried too")
            return False
        succeeded.set()
        return True

    queue = WorkQueue(run, workers=2, backoff=Backoff(base_s=0.01, cap_s=1))
    queue.add("ns", "a")
    tasks = queue.start()
    try:
        await asyncio.wait_for(succeeded.wait(), timeout=10)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert attempts == [0, 1, 2, 3]  # each attempt after one more recorded failure
    assert queue.failures("ns", "a") == 0 and queue.waiting_retries == 0


async def test_an_event_runs_a_key_waiting_out_its_backoff_at_once() -> None:
    runs: list[str] = []
    second = asyncio.Event()

    async def run(ns: str, name: str) -> bool:
        runs.append(name)
        if len(runs) == 2:
            second.set()
        return len(runs) > 1

    queue = WorkQueue(run, workers=1, backoff=Backoff(base_s=3600))
    queue.add("ns", "a")
    tasks = queue.start()
    try:
        await asyncio.wait_for(queue.join(), timeout=10)
        assert queue.waiting_retries == 1  # an hour away
        queue.add("ns", "a")  # the object changed: that may be the fix
        await asyncio.wait_for(second.wait(), timeout=10)
        await asyncio.wait_for(queue.join(), timeout=10)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert runs == ["a", "a"]
    assert queue.waiting_retries == 0 and queue.failures("ns", "a") == 0


async def test_an_echo_of_the_operators_own_write_leaves_the_backoff_standing() -> None:
    runs: list[str] = []

    async def run(ns: str, name: str) -> bool:
        runs.append(name)
        return len(runs) > 1

    queue = WorkQueue(run, workers=1, backoff=Backoff(base_s=3600))
    queue.add("ns", "a")
    tasks = queue.start()
    try:
        await asyncio.wait_for(queue.join(), timeout=10)
        assert queue.waiting_retries == 1
        queue.add("ns", "a", wake=False)  # its own status write, seen by the watch
        assert len(queue) == 0 and queue.waiting_retries == 1 and runs == ["a"]
        queue.add("ns", "b", wake=False)  # a key not waiting is queued as usual
        await asyncio.wait_for(queue.join(), timeout=10)
        assert runs == ["a", "b"]
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    queue.stop()


async def test_an_echo_during_the_keys_own_reconcile_does_not_queue_it_again() -> None:
    runs: list[str] = []
    queue: WorkQueue

    async def run(ns: str, name: str) -> bool:
        runs.append(name)
        if len(runs) == 1:
            queue.add(ns, name, wake=False)  # the watch shows the status this run just wrote
            assert len(queue) == 0
            queue.add(ns, name)  # someone else's change meanwhile: looked at again
            assert len(queue) == 1
        return True

    queue = WorkQueue(run, workers=1)
    queue.add("ns", "a")
    await _drain(queue)
    assert runs == ["a", "a"]
    with queue.in_flight("ns", "b"):  # a reconcile the controller runs itself
        queue.add("ns", "b", wake=False)
        assert len(queue) == 0
    queue.add("ns", "b", wake=False)  # nothing running, nothing waiting: queued as usual
    assert len(queue) == 1

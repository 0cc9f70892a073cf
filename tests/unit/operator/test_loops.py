"""The operator's background loops on their own: the runtime-status loop (what it writes, what
it skips, how it coalesces) and the resync loop (every key, every interval)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from opbuild import ROOT

from airt_operator.kube.client import KubeError
from airt_operator.resync import ResyncLoop
from airt_operator.runtime_status_loop import RuntimeStatusLoop


def runtime(name: str = "torch-cpu", models: int = 0) -> dict[str, Any]:
    """A runtime as the index holds it, with the status an earlier pass wrote for `models`."""
    body: dict[str, Any] = yaml.safe_load((ROOT / "examples/runtimes/torch-cpu.yaml").read_text())
    body["metadata"].update(name=name, generation=1)
    body["status"] = {
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Ready",
                "message": f"runtime accepted; {models} ModelDeployment(s) use it",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
        "modelDeployments": models,
    }
    return body


def model(runtime: str) -> dict[str, Any]:
    return {"status": {"runtimeName": runtime}}


class Writer:
    def __init__(self, fail: set[str] | None = None) -> None:
        self.writes: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail or set()

    async def __call__(self, name: str, status: dict[str, Any]) -> str:
        if name in self.fail:
            raise KubeError("the API server is away", 503, True)
        self.writes.append((name, status))
        return str(100 + len(self.writes))  # the resourceVersion the API server answered


async def test_a_pass_writes_only_runtimes_whose_status_changed() -> None:
    runtimes = [runtime("torch-cpu", models=0), runtime("other", models=0)]
    models = [model("torch-cpu")]
    writer = Writer()
    loop = RuntimeStatusLoop(lambda: runtimes, lambda: models, writer)
    assert await loop.write_pass() == 1
    ((name, status),) = writer.writes
    assert name == "torch-cpu" and status["modelDeployments"] == 1
    # The transition time is kept: Ready did not change, only its message and the count.
    assert status["conditions"][0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert loop.memory.unchanged("torch-cpu", status)


async def test_the_loop_knows_the_echo_of_its_own_write() -> None:
    writer = Writer()
    loop = RuntimeStatusLoop(lambda: [runtime(models=0)], lambda: [model("torch-cpu")], writer)
    assert await loop.write_pass() == 1
    assert loop.own_write("torch-cpu", None, "101")
    assert not loop.own_write("torch-cpu", None, "102")  # changed since, by someone else
    assert not loop.own_write("torch-cpu", "team", "101")  # a namespaced namesake
    assert not loop.own_write("other", None, "101")


async def test_a_stale_index_does_not_make_the_loop_write_again() -> None:
    runtimes = [runtime(models=0)]  # the index has not seen our write yet
    writer = Writer()
    loop = RuntimeStatusLoop(lambda: runtimes, lambda: [model("torch-cpu")], writer)
    assert await loop.write_pass() == 1
    assert await loop.write_pass() == 0
    assert len(writer.writes) == 1


async def test_a_failed_write_is_tried_again_next_pass() -> None:
    runtimes = [runtime(models=0)]
    writer = Writer(fail={"torch-cpu"})
    loop = RuntimeStatusLoop(lambda: runtimes, lambda: [model("torch-cpu")], writer)
    assert await loop.write_pass() == 0
    assert "torch-cpu" not in loop.memory
    writer.fail.clear()
    assert await loop.write_pass() == 1


async def test_without_every_namespace_the_count_is_left_out() -> None:
    body = runtime(models=0)
    writer = Writer()
    loop = RuntimeStatusLoop(lambda: [body], None, writer)
    assert await loop.write_pass() == 1
    ((_, status),) = writer.writes
    assert "modelDeployments" not in status
    assert status["conditions"][0]["message"] == "runtime accepted"


async def test_a_burst_of_changes_is_one_pass() -> None:
    passes = 0
    runtimes = [runtime(models=0)]

    def read() -> list[dict[str, Any]]:
        nonlocal passes
        passes += 1
        return runtimes

    loop = RuntimeStatusLoop(read, lambda: [], Writer(), settle_s=0.05)
    task = asyncio.create_task(loop.run())
    try:
        for _ in range(20):
            loop.mark_dirty()
        assert loop.dirty
        await asyncio.sleep(0.2)
        assert passes == 1 and not loop.dirty
        loop.mark_dirty()
        await asyncio.sleep(0.2)
        assert passes == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


class Queue:
    def __init__(self) -> None:
        self.added: list[tuple[str, str]] = []

    def add(self, namespace: str, name: str) -> None:
        self.added.append((namespace, name))


def test_a_resync_queues_every_key_once() -> None:
    queue = Queue()
    keys = [("a", "x"), ("b", "y")]
    loop = ResyncLoop(lambda: keys, queue, interval_s=300)
    assert loop.resync() == 2
    assert queue.added == keys


async def _until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_the_resync_loop_queues_everything_each_interval() -> None:
    queue = Queue()
    keys = [("a", "x")]
    loop = ResyncLoop(lambda: keys, queue, interval_s=0.05)
    task = asyncio.create_task(loop.run())
    try:
        assert queue.added == []  # the first resync waits an interval
        await _until(lambda: len(queue.added) >= 2)
        assert set(queue.added) == {("a", "x")}
        keys.append(("b", "z"))  # read at each pass, not once
        await _until(lambda: ("b", "z") in queue.added)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

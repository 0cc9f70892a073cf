"""Keeps every runtime's status (Ready, how many models use it) current: InferenceRuntimes and
NamespacedInferenceRuntimes alike.

Started by the controller (controller.py) at start-up and marked dirty by its handlers whenever
a ModelDeployment or an InferenceRuntime changes. Events come in bursts (a thousand models
created at once), so passes are coalesced: a pass waits for a change, lets the burst settle,
then writes each runtime whose status differs from both the index's copy and what this loop last
wrote (the index lags behind our own writes, so it alone would repeat them).

The status is computed by reconcile/runtime_status.py (pure); the write goes through the
reconciler (`Reconciler.write_runtime_status`), which owns the API client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from airt_operator.kube.client import KubeError
from airt_operator.reconcile.runtime_status import needs_write, runtime_status
from airt_operator.write_memory import WriteMemory

log = logging.getLogger("airt.operator")

# (name, status) for an InferenceRuntime; (name, status, namespace) for a namespaced one;
# answers the resourceVersion written (None when unknown).
StatusWriter = Callable[..., Awaitable[str | None]]
Objects = Callable[[], Iterable[Mapping[str, Any]]]

# How long a pass waits after the first change for the rest of its burst.
SETTLE_S = 0.5


class RuntimeStatusLoop:
    """One pass per burst of changes: `runtimes` and `models` read the current objects (the
    indices), `write` sends one runtime's status. `models` is None when this operator does not
    see every namespace (then the count of models using a runtime would be partial)."""

    def __init__(
        self,
        runtimes: Objects,
        models: Objects | None,
        write: StatusWriter,
        *,
        settle_s: float = SETTLE_S,
        memory: WriteMemory[str] | None = None,
    ) -> None:
        self._runtimes = runtimes
        self._models = models
        self._write = write
        self._settle_s = settle_s
        self.memory: WriteMemory[str] = memory if memory is not None else WriteMemory()
        self._dirty = asyncio.Event()

    def own_write(self, name: str, namespace: str | None, version: str | None) -> bool:
        """Whether the runtime at `version` is this loop's own last status write: its watch
        event tells the models nothing."""
        return self.memory.wrote(_key(name, namespace), version)

    def mark_dirty(self) -> None:
        """Something a runtime's status depends on changed: run a pass soon."""
        self._dirty.set()

    @property
    def dirty(self) -> bool:
        return self._dirty.is_set()

    async def write_pass(self) -> int:
        """Write every runtime status that changed; returns how many were written. A failed
        write is logged and tried again in the next pass."""
        models = list(self._models()) if self._models is not None else None
        wrote = 0
        for body in self._runtimes():
            name = body["metadata"]["name"]
            namespace = body["metadata"].get("namespace")
            key = _key(name, namespace)
            status = runtime_status(body, models)
            if self.memory.unchanged(key, status) or not needs_write(body, status):
                continue
            try:
                if namespace:
                    version = await self._write(name, status, namespace)
                else:
                    version = await self._write(name, status)
            except KubeError as exc:
                log.warning("status of runtime %s: %s", key, exc)
                continue
            self.memory.remember(key, status, version)
            wrote += 1
        return wrote

    async def run(self) -> None:
        """Forever: wait for a change, let its burst settle, write a pass."""
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self._settle_s)
            self._dirty.clear()
            await self.write_pass()


def _key(name: str, namespace: str | None) -> str:
    """The memory's key: a runtime's name, a namespaced runtime's namespace/name."""
    return f"{namespace}/{name}" if namespace else name

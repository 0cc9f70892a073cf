"""What each watch event means for the operator: which ModelDeployments to reconcile, and when.

Built by the kopf handlers (handlers.py) at start-up, once kopf has created its indices (the
World); every kopf handler translates its arguments and calls one method here. It owns the work
queue (workqueue.py) of event-driven reconciles, the runtime-status loop and the resync loop.

Only a spec change awaits its reconcile (kopf's diff-base records the spec handled); every other
trigger puts the ModelDeployment's key on the coalescing work queue and returns, so kopf's
per-object workers and the event bodies they hold are released at once.
"""

from __future__ import annotations

import asyncio
import logging

from airt_operator.health import Health
from airt_operator.kube.resources import MODEL_DEPLOYMENT
from airt_operator.reconciler import ReconcileOutcome, Reconciler, Result
from airt_operator.resync import ResyncLoop
from airt_operator.runtime_status_loop import RuntimeStatusLoop
from airt_operator.workqueue import Backoff, WorkQueue
from airt_operator.world import World

log = logging.getLogger("airt.operator")

# Outcomes that waiting may fix: queued again with backoff. INVALID is terminal: the status
# names the reason, and only a change of the spec or of a runtime queues it again.
RETRIED = (Result.WAITING, Result.FAILED, Result.CONFLICT)
SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"


class Controller:
    """Watch events in, reconciles out. An event `type` of None is kopf's initial listing (or a
    resumption), which changes nothing by itself."""

    def __init__(
        self,
        world: World,
        reconciler: Reconciler,
        *,
        clusterwide: bool = True,
        workers: int = 32,
        backoff: Backoff | None = None,
        health: Health | None = None,
    ) -> None:
        self.world = world
        self.reconciler = reconciler
        self.health = health
        self.queue = WorkQueue(self.reconcile_queued, workers, backoff)
        self.runtime_status = RuntimeStatusLoop(
            world.all_runtimes,
            world.all_models if clusterwide else None,
            reconciler.write_runtime_status,
        )
        self.resync = ResyncLoop(world.model_keys, self.queue, reconciler.resync_seconds)
        self._tasks: list[asyncio.Task[None]] = []

    # --- life cycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the loops and the queue's workers (from kopf's start-up handler)."""
        self._tasks = [
            asyncio.create_task(self.resync.run(), name="resync"),
            asyncio.create_task(self.runtime_status.run(), name="runtime status"),
            *self.queue.start(),
        ]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        self.queue.stop()

    # --- reconciles --------------------------------------------------------------------------
    async def reconcile(self, namespace: str, name: str) -> ReconcileOutcome | None:
        """One reconcile from the World's current view; None when the object is not indexed."""
        return await self.reconciler.reconcile(
            namespace, name, lambda: self.world.snapshot(namespace, name)
        )

    async def reconcile_queued(self, namespace: str, name: str) -> bool:
        """The work queue's reconcile: True when done, False to be retried with backoff (a
        spec that can never work is not retried; its status says why, and a spec or runtime
        change queues it again)."""
        outcome = await self.reconcile(namespace, name)
        if outcome is None:
            # No snapshot: the object is gone, or the index has not caught up with a
            # just-created one (and its index event queues it again).
            return True
        if outcome.result in RETRIED:
            log.warning("reconcile of %s/%s: %s", namespace, name, outcome.message)
            return False
        return True

    # --- triggers ----------------------------------------------------------------------------
    async def spec_changed(self, namespace: str, name: str) -> ReconcileOutcome | None:
        """A ModelDeployment was created, its spec changed, or the operator resumed it:
        reconcile at once. Anything waiting may fix is handed to the queue's backoff (not to
        kopf's retries, which record their progress in the object's annotations, a write per
        attempt); the caller turns an INVALID outcome into kopf's PermanentError."""
        with self.queue.in_flight(namespace, name):
            outcome = await self.reconcile(namespace, name)
        if outcome is None:
            self.queue.retry(namespace, name)  # not indexed yet: look again shortly
            return None
        if outcome.result in RETRIED:
            delay = self.queue.retry(namespace, name)
            log.warning(
                "reconcile of %s/%s: %s (retry in %.1fs)", namespace, name, outcome.message, delay
            )
            return outcome
        self.queue.forget(namespace, name)
        return outcome

    def model_event(
        self, namespace: str, name: str, type: str | None, version: str | None = None
    ) -> None:
        """A ModelDeployment changed (`version`: its resourceVersion): spec changes have their
        own handler; this is status and metadata, ours or others'."""
        self.runtime_status.mark_dirty()
        if type == "DELETED":
            self.reconciler.forget(namespace, name)
            self.queue.forget(namespace, name)
            return
        if type is not None:
            ours = self.reconciler.own_write(namespace, name, MODEL_DEPLOYMENT.kind, version)
            self.queue.add(namespace, name, wake=not ours)

    def runtime_event(
        self,
        type: str | None,
        name: str | None = None,
        namespace: str | None = None,
        version: str | None = None,
    ) -> None:
        """An InferenceRuntime changed: resolution of every ModelDeployment may change, unless
        the change is the status the runtime-status loop itself just wrote."""
        self.runtime_status.mark_dirty()
        if type is None:
            return
        if type != "DELETED" and name and self.runtime_status.own_write(name, namespace, version):
            return
        self.resync.resync()

    def owned_event(
        self,
        namespace: str,
        owner: str | None,
        type: str | None,
        kind: str | None = None,
        version: str | None = None,
    ) -> None:
        """A child or pod changed (drift, rollout progress, scheduling): look at its owner.
        `kind` and `version` tell the operator's own apply from a change by someone else."""
        if owner and type is not None:
            ours = type != "DELETED" and self.reconciler.own_write(namespace, owner, kind, version)
            self.queue.add(namespace, owner, wake=not ours)

    def namespace_event(self, name: str, type: str | None) -> None:
        """A namespace's labels decide which runtimes its models may use."""
        if type is None:
            return
        for ns, n in self.world.model_keys():
            if ns == name:
                self.queue.add(ns, n)

    def crd_event(self, name: str, type: str | None) -> None:
        if self.health is not None:
            # kopf runs no handler before every index has listed once (health.py).
            self.health.synced = True
        if name == SERVICE_MONITOR_CRD:
            present = type != "DELETED"
            if present != self.world.service_monitor_crd:
                self.world.service_monitor_crd = present
                self.resync.resync()

    def devices_event(self, type: str | None) -> None:
        """A DeviceClass or ResourceSlice changed: the default GPU placement (DRA where the
        NVIDIA DeviceClasses exist) and which devices exist may change for every model."""
        if type is not None:
            self.resync.resync()

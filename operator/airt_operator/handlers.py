"""kopf handlers: thin translations from kopf's calls to the controller's methods.

Registered by the composition root (main.py) on a kopf OperatorRegistry, from the table of
watched resources in watches.py: each index function there keeps a plain copy of what a
reconcile reads (world.py), and each watch's trigger maps to one handler here. kopf's indices
keep an in-memory copy of every object a reconcile needs, so reconciles read almost nothing
from the API server (a child the index lacks is read once before it is created: see
reconcile/ownership.py).

Triggers (what each one does is the controller's, controller.py):
- a ModelDeployment's spec changes (create/update/resume): reconcile at once; a spec that can
  never work is a PermanentError (its status says why);
- a ModelDeployment, a child or a pod changes: reconcile its owner (through the work queue);
- an InferenceRuntime or a namespace changes: reconcile the ModelDeployments it may affect;
- a CRD event: the ServiceMonitor CRD came or went; the first one marks the watches synced;
- a DeviceClass or ResourceSlice changes: reconcile every ModelDeployment (the DRA placement's
  default and which devices exist may change);
- a slow resync loop as a safety net (it writes nothing when nothing changed).

The World (kopf's indices, typed) and the controller are built in the start-up handler: kopf
creates every index before it runs any handler and hands them to each, start-up included.
"""

from __future__ import annotations

from typing import Any

import kopf

from airt_operator.controller import Controller
from airt_operator.health import Health
from airt_operator.reconciler import Reconciler, Result
from airt_operator.watches import WATCHES, Trigger, Watch
from airt_operator.workqueue import Backoff
from airt_operator.world import OWNER_LABEL, World


class Handlers:
    """The kopf-facing side: one method per kopf handler, each a translation of kopf's keyword
    arguments into a call of the controller."""

    def __init__(
        self,
        reconciler: Reconciler,
        *,
        clusterwide: bool = True,
        workers: int = 32,
        backoff: Backoff | None = None,
        health: Health | None = None,
    ) -> None:
        self.reconciler = reconciler
        self.clusterwide = clusterwide
        self.workers = workers
        self.backoff = backoff
        self.health = health
        self._controller: Controller | None = None

    @property
    def controller(self) -> Controller:
        if self._controller is None:
            raise RuntimeError("kopf ran a handler before the start-up handler")
        return self._controller

    async def startup(self, **kwargs: Any) -> None:
        # kwargs hold every index by its id (kopf creates them before the start-up handlers).
        self._controller = Controller(
            World.from_indices(kwargs),
            self.reconciler,
            clusterwide=self.clusterwide,
            workers=self.workers,
            backoff=self.backoff,
            health=self.health,
        )
        self._controller.start()

    async def cleanup(self, **_: Any) -> None:
        if self._controller is not None:
            self._controller.stop()

    async def spec_changed(self, **kwargs: Any) -> None:
        outcome = await self.controller.spec_changed(kwargs["namespace"], kwargs["name"])
        if outcome is not None and outcome.result == Result.INVALID:
            # The status already says why (a condition reason and an Event): do not hot-loop.
            raise kopf.PermanentError(outcome.message)

    async def model_event(self, **kwargs: Any) -> None:
        self.controller.model_event(
            kwargs["namespace"], kwargs["name"], kwargs.get("type"), _version_of(kwargs)
        )

    async def runtime_event(self, **kwargs: Any) -> None:
        self.controller.runtime_event(
            kwargs.get("type"), kwargs.get("name"), kwargs.get("namespace"), _version_of(kwargs)
        )

    async def owned_event(self, **kwargs: Any) -> None:
        owner = kwargs["labels"].get(OWNER_LABEL)
        body = kwargs.get("body") or {}
        kind = body.get("kind") or getattr(kwargs.get("resource"), "kind", None)
        self.controller.owned_event(
            kwargs["namespace"], owner, kwargs.get("type"), kind, _version_of(kwargs)
        )

    async def namespace_event(self, **kwargs: Any) -> None:
        self.controller.namespace_event(kwargs["name"], kwargs.get("type"))

    async def crd_event(self, **kwargs: Any) -> None:
        self.controller.crd_event(kwargs["name"], kwargs.get("type"))

    async def devices_event(self, **kwargs: Any) -> None:
        self.controller.devices_event(kwargs.get("type"))


def register(
    registry: kopf.OperatorRegistry,
    reconciler: Reconciler,
    *,
    clusterwide: bool = True,
    workers: int = 32,
    backoff: Backoff | None = None,
    health: Health | None = None,
) -> Handlers:
    """Register every handler on `registry` from the WATCHES table, bound to this reconciler;
    `workers` coroutines drain the queue of event-driven reconciles."""
    handlers = Handlers(
        reconciler, clusterwide=clusterwide, workers=workers, backoff=backoff, health=health
    )
    events = {
        Trigger.MODEL: handlers.model_event,
        Trigger.RUNTIME: handlers.runtime_event,
        Trigger.OWNED: handlers.owned_event,
        Trigger.NAMESPACE: handlers.namespace_event,
        Trigger.CRD: handlers.crd_event,
        Trigger.DEVICES: handlers.devices_event,
    }
    for watch in WATCHES:
        if watch.index is not None and watch.index_fn is not None:
            kopf.index(*watch.selector, id=watch.index, labels=watch.labels, registry=registry)(
                watch.index_fn
            )
        if watch.spec_changes:
            _register_spec_changes(registry, watch, handlers)
        if watch.trigger is not None:
            event_id = f"{watch.trigger}_event_{watch.name}"
            kopf.on.event(*watch.selector, id=event_id, labels=watch.labels, registry=registry)(
                events[watch.trigger]
            )
    kopf.on.startup(id="start_controller", registry=registry)(handlers.startup)
    kopf.on.cleanup(id="stop_controller", registry=registry)(handlers.cleanup)
    return handlers


def _register_spec_changes(
    registry: kopf.OperatorRegistry, watch: Watch, handlers: Handlers
) -> None:
    # One function handles the three causes, under one id (kopf keys its progress annotations
    # by handler id); an update counts only when the spec changed, not metadata or status.
    fn = handlers.spec_changed
    kopf.on.resume(*watch.selector, id="spec_changed", labels=watch.labels, registry=registry)(fn)
    kopf.on.create(*watch.selector, id="spec_changed", labels=watch.labels, registry=registry)(fn)
    kopf.on.update(
        *watch.selector, id="spec_changed", field="spec", labels=watch.labels, registry=registry
    )(fn)


def _version_of(kwargs: dict[str, Any]) -> str | None:
    """The resourceVersion of the object a kopf event handler was called for."""
    meta = (kwargs.get("body") or {}).get("metadata") or {}
    version = meta.get("resourceVersion")
    return str(version) if version is not None else None

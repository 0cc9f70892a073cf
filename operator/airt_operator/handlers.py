"""kopf handlers: thin translations from watch events to Reconciler.reconcile calls.

Registered by the composition root (main.py) on a kopf OperatorRegistry. kopf's indices keep
an in-memory copy of every object a reconcile needs (ModelDeployments, InferenceRuntimes,
labelled children, pods, GPU nodes), so reconciles read almost nothing from the API server
(a child the index lacks is read once before it is created: see reconcile/ownership.py).

Triggers:
- a ModelDeployment's spec changes (create/update/resume): reconcile at once; a spec that can
  never work is a PermanentError (its status says why), anything waiting may fix is handed to
  the work queue's backoff;
- a child or pod changes (drift, rollout progress, scheduling): reconcile its owner;
- an InferenceRuntime changes: reconcile every ModelDeployment (resolution may change);
- a slow timer as a safety net (it writes nothing when nothing changed).

Only the spec triggers await their reconcile (kopf's diff-base records the spec handled); every
other trigger puts the ModelDeployment's key on a coalescing work queue (workqueue.py) and
returns, so kopf's per-object workers and the event bodies they hold are released at once.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Mapping
from typing import Any

import kopf

from airt_operator.health import Health
from airt_operator.kube.client import KubeError
from airt_operator.kube.resources import (
    CHILD_KINDS,
    INFERENCE_RUNTIME,
    MODEL_DEPLOYMENT,
    POD,
    SERVICE_MONITOR,
)
from airt_operator.reconcile.runtime_status import needs_write, runtime_status
from airt_operator.reconciler import ReconcileOutcome, Reconciler, Result, Snapshot
from airt_operator.workqueue import Backoff, WorkQueue

log = logging.getLogger("airt.operator")

OWNER_LABEL = "airt.dev/modeldeployment"
# ServiceMonitors are not watched: their CRD may be absent (kopf would wait on that index for
# ever). The reconciler reads the one it needs when the CRD is present.
WATCHED_CHILD_KINDS = tuple(k for k in CHILD_KINDS if k is not SERVICE_MONITOR)
MANAGED = {"app.kubernetes.io/managed-by": "airt-operator"}
MD = (MODEL_DEPLOYMENT.group, MODEL_DEPLOYMENT.version, MODEL_DEPLOYMENT.plural)
IRT = (INFERENCE_RUNTIME.group, INFERENCE_RUNTIME.version, INFERENCE_RUNTIME.plural)
# Outcomes that waiting may fix: queued again with backoff. INVALID is terminal: the status
# names the reason, and only a change of the spec or of a runtime queues it again.
RETRIED = (Result.WAITING, Result.FAILED, Result.CONFLICT)


class World:
    """Reads kopf's indices into Snapshots. Indices arrive as handler kwargs; this keeps them."""

    def __init__(self) -> None:
        self.indices: dict[str, Any] = {}
        self.service_monitor_crd = False

    def update(self, kwargs: Mapping[str, Any]) -> None:
        for k, v in kwargs.items():
            if k.endswith("_idx"):
                self.indices[k] = v

    def _one(self, index: str, key: Any) -> Mapping[str, Any] | None:
        store = self.indices.get(index, {}).get(key)
        if not store:
            return None
        for item in store:
            return item  # type: ignore[no-any-return]
        return None

    def _all(self, index: str, key: Any) -> list[Mapping[str, Any]]:
        return list(self.indices.get(index, {}).get(key, []) or [])

    def runtimes(self) -> list[Mapping[str, Any]]:
        return self._all("irt_idx", None)

    def all_models(self) -> list[Mapping[str, Any]]:
        return [m for key in self.model_keys() if (m := self._one("md_idx", key)) is not None]

    def model_keys(self) -> list[tuple[str, str]]:
        return list(self.indices.get("md_idx", {}).keys())

    def snapshot(self, namespace: str, name: str) -> Snapshot | None:
        body = self._one("md_idx", (namespace, name))
        if body is None:
            return None
        children: dict[tuple[str, str], Mapping[str, Any]] = {}
        for kind in WATCHED_CHILD_KINDS:
            live = self._one(f"child_{kind.plural}_idx", (namespace, name))
            if live is not None:
                children[(kind.api_version, kind.kind)] = live
        ns_facts = self._one("ns_idx", namespace)
        return Snapshot(
            body=body,
            namespace_labels=dict((ns_facts or {}).get("labels") or {}) if ns_facts else None,
            runtimes=self._all("irt_idx", None),
            children=children,
            pods=self._all("pod_idx", (namespace, name)),
            nodes=self._all("node_idx", None),
            service_monitor_crd=self.service_monitor_crd,
        )


def _plain(value: Any) -> Any:
    """A plain deep copy whose keys and short strings are interned.

    The indices hold thousands of objects parsed from separate JSON documents, each with its own
    copies of the same keys ("metadata", "containers", ...) and values ("True", label values):
    sharing them saves about a third of an index entry's memory.
    """
    if isinstance(value, Mapping):
        return {sys.intern(k) if isinstance(k, str) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) <= _INTERN_MAX:
        return sys.intern(value)
    return value


_INTERN_MAX = 64


def _copy(body: kopf.Body) -> dict[str, Any]:
    """A deep plain copy of a kopf body (bodies are live views that change under us).

    Every top-level field is kept: ServiceAccounts, Roles and RoleBindings carry theirs outside
    `spec` (automountServiceAccountToken, rules, roleRef, subjects).
    """
    out: dict[str, Any] = _plain(body)
    out.get("metadata", {}).pop("managedFields", None)  # large, and never compared
    return out


def _terminated_facts(state: Mapping[str, Any] | None) -> dict[str, Any] | None:
    t = (state or {}).get("terminated")
    if not t:
        return None
    out = {"exitCode": t.get("exitCode"), "reason": t.get("reason")}
    if t.get("message"):
        out["message"] = t["message"]
    return out


def _container_facts(c: Mapping[str, Any]) -> dict[str, Any]:
    """Name, readiness, the image that really ran and why a container is not running: the
    termination messages are the contract from `airt-worker fetch` and `airt-worker serve` to
    observe()."""
    state = c.get("state") or {}
    now: dict[str, Any] = {}
    if "running" in state:
        now["running"] = {}  # startedAt is never read
    elif waiting := state.get("waiting"):
        now["waiting"] = {k: waiting[k] for k in ("reason", "message") if waiting.get(k)}
    terminated = _terminated_facts(state)
    if terminated:
        now["terminated"] = terminated
    facts: dict[str, Any] = {"name": c.get("name"), "ready": bool(c.get("ready")), "state": now}
    if c.get("imageID"):
        # the same few images run in every pod: one string shared by all their entries
        facts["imageID"] = sys.intern(str(c["imageID"]))
    last = _terminated_facts(c.get("lastState"))
    if last:
        facts["lastState"] = {"terminated": last}
    return facts


def _pod_facts(body: kopf.Body) -> dict[str, Any]:
    """The little of a pod that observe() reads: at 1,000 models the pods are most of the
    memory an index would otherwise hold."""
    status = body.get("status", {})
    meta = body["metadata"]
    facts: dict[str, Any] = _plain(
        {
            "metadata": {
                "name": meta["name"],
                "creationTimestamp": meta.get("creationTimestamp"),
            },
            "spec": {"nodeName": body.get("spec", {}).get("nodeName")},
            "status": {
                "phase": status.get("phase"),
                "conditions": status.get("conditions", []),
                "initContainerStatuses": [
                    _container_facts(c) for c in status.get("initContainerStatuses", []) or []
                ],
                "containerStatuses": [
                    _container_facts(c) for c in status.get("containerStatuses", []) or []
                ],
            },
        }
    )
    return facts


def register(
    registry: kopf.OperatorRegistry,
    reconciler: Reconciler,
    world: World,
    clusterwide: bool = True,
    workers: int = 32,
    backoff: Backoff | None = None,
    health: Health | None = None,
) -> WorkQueue:
    """Register every handler on `registry`, bound to this reconciler and world; `workers`
    coroutines drain the queue of event-driven reconciles."""
    runtimes_dirty = asyncio.Event()
    written: dict[str, dict[str, Any]] = {}  # runtime name -> the status we last wrote

    async def run(namespace: str, name: str) -> ReconcileOutcome | None:
        return await reconciler.reconcile(namespace, name, lambda: world.snapshot(namespace, name))

    async def run_queued(namespace: str, name: str) -> bool:
        # Done unless it must be tried again: the queue retries with backoff (a spec that can
        # never work is not retried; its status says why, and a spec or runtime change
        # queues it again).
        outcome = await run(namespace, name)
        if outcome is None:
            # No snapshot: the object is gone, or the index has not caught up with a
            # just-created one (and its index event queues it again).
            return True
        if outcome.result in RETRIED:
            log.warning("reconcile of %s/%s: %s", namespace, name, outcome.message)
            return False
        return True

    queue = WorkQueue(run_queued, workers, backoff)

    # --- indices: what a reconcile reads ---------------------------------------------------
    # Index functions are coroutines: kopf runs a plain function in its thread pool, a thread
    # hand-off per watch event for what is a dictionary copy. (py-spy showed the pool at ~10 %
    # of samples at 300 ModelDeployments; the operator's measured CPU did not change beyond
    # noise without it, so most of that was threads waiting for the GIL.)
    async def md_entry(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> Any:
        return {(namespace, name): _copy(body)}

    async def runtime_entry(body: kopf.Body, **_: Any) -> Any:
        return {None: _copy(body)}

    async def pod_entry(
        namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
    ) -> Any:
        return {(namespace, labels[OWNER_LABEL]): _pod_facts(body)}

    async def node_entry(body: kopf.Body, **_: Any) -> Any:
        # Only what GPU placement reads: labels and allocatable.
        facts = {
            "metadata": {
                "name": body["metadata"]["name"],
                "labels": body["metadata"].get("labels", {}),
            },
            "status": {"allocatable": body.get("status", {}).get("allocatable", {})},
        }
        return {None: _plain(facts)}

    kopf.index(*MD, id="md_idx", registry=registry)(md_entry)
    kopf.index(*IRT, id="irt_idx", registry=registry)(runtime_entry)
    kopf.index(*_sel(POD), id="pod_idx", labels={OWNER_LABEL: kopf.PRESENT}, registry=registry)(
        pod_entry
    )
    kopf.index("v1", "nodes", id="node_idx", registry=registry)(node_entry)

    async def namespace_entry(name: str, body: kopf.Body, **_: Any) -> Any:
        # Only the labels: runtimes select the namespaces that may use them.
        return {name: _plain({"labels": dict(body["metadata"].get("labels") or {})})}

    kopf.index("v1", "namespaces", id="ns_idx", registry=registry)(namespace_entry)
    for kind in WATCHED_CHILD_KINDS:
        kopf.index(*_sel(kind), id=_child_index(kind), labels=MANAGED, registry=registry)(
            _child_entry
        )

    # --- triggers --------------------------------------------------------------------------
    @kopf.on.resume(*MD, registry=registry)
    @kopf.on.create(*MD, registry=registry)
    @kopf.on.update(*MD, field="spec", registry=registry)
    async def model_spec_changed(**kwargs: Any) -> None:
        world.update(kwargs)
        namespace, name = kwargs["namespace"], kwargs["name"]
        outcome = await run(namespace, name)
        if outcome is None:
            queue.retry(namespace, name)  # not indexed yet: look again shortly
            return
        if outcome.result in RETRIED:
            # Retried by the work queue with backoff rather than by kopf: kopf's retries record
            # their progress in the object's annotations, a write per attempt.
            delay = queue.retry(namespace, name)
            log.warning(
                "reconcile of %s/%s: %s (retry in %.1fs)", namespace, name, outcome.message, delay
            )
            return
        queue.forget(namespace, name)
        if outcome.result == Result.INVALID:
            # The status already says why (a condition reason and an Event): do not hot-loop.
            raise kopf.PermanentError(outcome.message)

    @kopf.on.event(*MD, registry=registry)
    async def model_event(**kwargs: Any) -> None:
        world.update(kwargs)
        runtimes_dirty.set()
        namespace, name, type = kwargs["namespace"], kwargs["name"], kwargs.get("type")
        if type == "DELETED":
            reconciler.forget(namespace, name)
            queue.forget(namespace, name)
            return
        if type is not None:  # status changes by others (or HPA scaling via /scale)
            queue.add(namespace, name)

    @kopf.on.event(*IRT, registry=registry)
    async def runtime_event(**kwargs: Any) -> None:
        world.update(kwargs)
        runtimes_dirty.set()
        if kwargs.get("type") is None:
            return
        for ns, n in world.model_keys():
            queue.add(ns, n)

    async def owner_event(**kwargs: Any) -> None:
        world.update(kwargs)
        owner = kwargs["labels"].get(OWNER_LABEL)
        if owner and kwargs.get("type") is not None:
            queue.add(kwargs["namespace"], owner)

    for kind in (*WATCHED_CHILD_KINDS, POD):
        extra = {OWNER_LABEL: kopf.PRESENT} if kind is POD else MANAGED
        kopf.on.event(
            *_sel(kind), id=f"owner_event_{kind.plural}", labels=extra, registry=registry
        )(owner_event)

    @kopf.on.event("v1", "namespaces", registry=registry)
    async def namespace_event(**kwargs: Any) -> None:
        # A namespace's labels decide which runtimes its models may use.
        world.update(kwargs)
        if kwargs.get("type") is None:
            return
        for ns, n in world.model_keys():
            if ns == kwargs["name"]:
                queue.add(ns, n)

    @kopf.on.event("apiextensions.k8s.io", "v1", "customresourcedefinitions", registry=registry)
    async def crd_event(**kwargs: Any) -> None:
        world.update(kwargs)
        if health is not None:
            # kopf runs no handler before every index has listed once (health.py).
            health.synced = True
        if kwargs["name"] == "servicemonitors.monitoring.coreos.com":
            present = kwargs.get("type") != "DELETED"
            if present != world.service_monitor_crd:
                world.service_monitor_crd = present
                for ns, n in world.model_keys():
                    queue.add(ns, n)

    @kopf.on.startup(registry=registry)
    async def start_resync(memo: kopf.Memo, **_: Any) -> None:
        # One cluster-level loop instead of a kopf timer per object: per-object timers make
        # kopf put a finalizer on every ModelDeployment (a write, and a namespace that cannot
        # be deleted while the operator is down).
        memo["resync"] = asyncio.create_task(resync_loop())
        memo["runtimes"] = asyncio.create_task(runtime_status_loop())
        memo["workers"] = queue.start()

    @kopf.on.cleanup(registry=registry)
    async def stop_resync(memo: kopf.Memo, **_: Any) -> None:
        for key in ("resync", "runtimes"):
            task = memo.get(key)
            if task is not None:
                task.cancel()
        for task in memo.get("workers", []):
            task.cancel()
        queue.stop()

    async def runtime_status_loop() -> None:
        # Runtime status follows model changes; events come in bursts, so passes are coalesced.
        while True:
            await runtimes_dirty.wait()
            await asyncio.sleep(0.5)
            runtimes_dirty.clear()
            models = world.all_models() if clusterwide else None
            for body in world.runtimes():
                name = body["metadata"]["name"]
                status = runtime_status(body, models)
                if written.get(name) == status or not needs_write(body, status):
                    continue
                try:
                    await reconciler.kube.patch_runtime_status(name, status)
                    written[name] = status
                except KubeError as exc:
                    log.warning("status of InferenceRuntime %s: %s", name, exc)

    async def resync_loop() -> None:
        while True:
            await asyncio.sleep(reconciler.resync_seconds)
            for ns, n in world.model_keys():
                queue.add(ns, n)

    return queue


def _sel(kind: Any) -> tuple[str, ...]:
    return (kind.group, kind.version, kind.plural) if kind.group else (kind.version, kind.plural)


def _child_index(kind: Any) -> str:
    return f"child_{kind.plural}_idx"


async def _child_entry(**kwargs: Any) -> Any:
    owner = kwargs["labels"].get(OWNER_LABEL)
    if not owner:
        return None
    child = _copy(kwargs["body"])
    if child.get("kind") != "Deployment":
        child.pop("status", None)  # only the Deployment's status is observed
    return {(kwargs["namespace"], owner): child}

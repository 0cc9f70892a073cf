"""What kopf's indices hold, and how a reconcile reads them: the World and the index projections.

The index functions here (`model_entry`, `pod_entry`, ...) are registered by handlers.py through
the table in watches.py; each keeps a plain, interned copy of the little a reconcile reads of one
object. The World is built once by the start-up handler from the indices kopf hands it (kopf
creates them before any handler runs and keeps the same objects for the operator's life), and is
read by the controller (controller.py) into Snapshots for the reconciler and by the loops.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import kopf

from airt_operator.kube.resources import CHILD_KINDS, SERVICE_MONITOR, Kind
from airt_operator.reconcile.devices import claim_facts, slice_facts
from airt_operator.reconcile.placement import DEVICE_CLASSES
from airt_operator.reconciler import Snapshot

OWNER_LABEL = "airt.dev/modeldeployment"
# ServiceMonitors are not watched: their CRD may be absent (kopf would wait on that index for
# ever). The reconciler reads the one it needs when the CRD is present.
WATCHED_CHILD_KINDS: tuple[Kind, ...] = tuple(k for k in CHILD_KINDS if k is not SERVICE_MONITOR)

Obj = Mapping[str, Any]
Key = tuple[str, str]  # (namespace, ModelDeployment name)
_K = TypeVar("_K")
# A read-only index as kopf hands it to handlers: key -> the objects stored under it
# (kopf.Index is a Mapping to kopf.Store, a Collection). Plain dicts of lists serve in tests.
IndexView = Mapping[_K, Collection[Obj]]

# The index ids: kopf passes each index to handlers as a keyword argument of that name.
MODELS_INDEX = "md_idx"
RUNTIMES_INDEX = "irt_idx"
NAMESPACED_RUNTIMES_INDEX = "nirt_idx"
PODS_INDEX = "pod_idx"
NODES_INDEX = "node_idx"
NAMESPACES_INDEX = "ns_idx"
CLAIMS_INDEX = "claim_idx"
SLICES_INDEX = "slice_idx"
DEVICE_CLASSES_INDEX = "dclass_idx"


def child_index(kind: Kind) -> str:
    """The index id of one watched child kind."""
    return f"child_{kind.plural}_idx"


@dataclass
class World:
    """kopf's indices, typed, and the one cluster fact no index holds (the ServiceMonitor CRD)."""

    models: IndexView[Key]
    runtimes: IndexView[None]
    pods: IndexView[Key]
    nodes: IndexView[None]
    namespaces: IndexView[str]
    children: Mapping[Kind, IndexView[Key]]
    service_monitor_crd: bool = False
    # The NamespacedInferenceRuntimes of every watched namespace (resolve picks the model's own).
    namespaced_runtimes: IndexView[None] = field(default_factory=dict)
    # DRA placement: the serving pods' ResourceClaims (by owner), the ResourceSlices and the
    # names of the DeviceClasses.
    claims: IndexView[Key] = field(default_factory=dict)
    slices: IndexView[None] = field(default_factory=dict)
    device_classes: IndexView[None] = field(default_factory=dict)

    @classmethod
    def from_indices(cls, indices: Mapping[str, Any]) -> World:
        """The World over the indices kopf passes to a handler (by index id)."""
        return cls(
            models=indices[MODELS_INDEX],
            runtimes=indices[RUNTIMES_INDEX],
            namespaced_runtimes=indices[NAMESPACED_RUNTIMES_INDEX],
            pods=indices[PODS_INDEX],
            nodes=indices[NODES_INDEX],
            namespaces=indices[NAMESPACES_INDEX],
            children={kind: indices[child_index(kind)] for kind in WATCHED_CHILD_KINDS},
            claims=indices[CLAIMS_INDEX],
            slices=indices[SLICES_INDEX],
            device_classes=indices[DEVICE_CLASSES_INDEX],
        )

    @classmethod
    def empty(cls) -> World:
        """A World with nothing indexed (tests fill its dicts)."""
        return cls(
            models={},
            runtimes={},
            pods={},
            nodes={},
            namespaces={},
            children={kind: {} for kind in WATCHED_CHILD_KINDS},
        )

    def all_runtimes(self) -> list[Obj]:
        """Both runtime kinds: the namespaced ones first (resolution looks at them first)."""
        return [
            *(self.namespaced_runtimes.get(None, ()) or ()),
            *(self.runtimes.get(None, ()) or ()),
        ]

    def dra_available(self) -> bool:
        """Whether the cluster has the NVIDIA DRA driver's DeviceClasses (placement `auto`)."""
        names = {str(c.get("name")) for c in self.device_classes.get(None, ()) or ()}
        return any(name in names for name in DEVICE_CLASSES)

    def all_models(self) -> list[Obj]:
        return [m for key in self.model_keys() if (m := _one(self.models, key)) is not None]

    def model_keys(self) -> list[Key]:
        return list(self.models.keys())

    def snapshot(self, namespace: str, name: str) -> Snapshot | None:
        """What a reconcile of this ModelDeployment reads; None when it is not indexed."""
        body = _one(self.models, (namespace, name))
        if body is None:
            return None
        children: dict[tuple[str, str], Obj] = {}
        for kind, index in self.children.items():
            live = _one(index, (namespace, name))
            if live is not None:
                children[(kind.api_version, kind.kind)] = live
        ns_facts = _one(self.namespaces, namespace)
        return Snapshot(
            body=body,
            namespace_labels=dict(ns_facts.get("labels") or {}) if ns_facts else None,
            runtimes=self.all_runtimes(),
            children=children,
            pods=list(self.pods.get((namespace, name), ()) or ()),
            nodes=list(self.nodes.get(None, ()) or ()),
            service_monitor_crd=self.service_monitor_crd,
            claims=list(self.claims.get((namespace, name), ()) or ()),
            slices=list(self.slices.get(None, ()) or ()),
            dra_available=self.dra_available(),
        )


def _one(index: IndexView[_K], key: _K) -> Obj | None:
    store = index.get(key)
    if not store:
        return None
    for item in store:
        return item
    return None


# --- index projections: what each index keeps of one object ------------------------------------
# Index functions are coroutines: kopf runs a plain function in its thread pool, a thread
# hand-off per watch event for what is a dictionary copy. (py-spy showed the pool at ~10 %
# of samples at 300 ModelDeployments; the operator's measured CPU did not change beyond
# noise without it, so most of that was threads waiting for the GIL.)


async def model_entry(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> Any:
    return {(namespace, name): copy_body(body)}


async def runtime_entry(body: kopf.Body, **_: Any) -> Any:
    return {None: copy_body(body)}


async def pod_entry(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> Any:
    return {(namespace, labels[OWNER_LABEL]): pod_facts(body)}


async def node_entry(body: kopf.Body, **_: Any) -> Any:
    # Only what GPU placement reads: labels and allocatable.
    facts = {
        "metadata": {
            "name": body["metadata"]["name"],
            "labels": body["metadata"].get("labels", {}),
        },
        "status": {"allocatable": body.get("status", {}).get("allocatable", {})},
    }
    return {None: plain(facts)}


async def claim_entry(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> Any:
    # Only the pod it serves and what it was allocated (reconcile/devices.py).
    return {(namespace, labels[OWNER_LABEL]): plain(claim_facts(body))}


async def slice_entry(body: kopf.Body, **_: Any) -> Any:
    # The devices, their attributes and capacity; nothing else of the slice is read.
    return {None: plain(slice_facts(body))}


async def device_class_entry(name: str, **_: Any) -> Any:
    return {None: {"name": sys.intern(name)}}


async def namespace_entry(name: str, body: kopf.Body, **_: Any) -> Any:
    # Only the labels: runtimes select the namespaces that may use them.
    return {name: plain({"labels": dict(body["metadata"].get("labels") or {})})}


async def child_entry(**kwargs: Any) -> Any:
    owner = kwargs["labels"].get(OWNER_LABEL)
    if not owner:
        return None
    child = copy_body(kwargs["body"])
    if child.get("kind") != "Deployment":
        child.pop("status", None)  # only the Deployment's status is observed
    return {(kwargs["namespace"], owner): child}


def plain(value: Any) -> Any:
    """A plain deep copy whose keys and short strings are interned.

    The indices hold thousands of objects parsed from separate JSON documents, each with its own
    copies of the same keys ("metadata", "containers", ...) and values ("True", label values):
    sharing them saves about a third of an index entry's memory.
    """
    if isinstance(value, Mapping):
        return {sys.intern(k) if isinstance(k, str) else k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str) and len(value) <= _INTERN_MAX:
        return sys.intern(value)
    return value


_INTERN_MAX = 64


def copy_body(body: kopf.Body) -> dict[str, Any]:
    """A deep plain copy of a kopf body (bodies are live views that change under us).

    Every top-level field is kept: ServiceAccounts, Roles and RoleBindings carry theirs outside
    `spec` (automountServiceAccountToken, rules, roleRef, subjects).
    """
    out: dict[str, Any] = plain(body)
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


def pod_facts(body: kopf.Body) -> dict[str, Any]:
    """The little of a pod that observe() reads: at 1,000 models the pods are most of the
    memory an index would otherwise hold."""
    status = body.get("status", {})
    meta = body["metadata"]
    facts: dict[str, Any] = plain(
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

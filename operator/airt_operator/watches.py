"""Every resource the kopf handlers watch, what they do with it, and the verbs that needs.

The one declaration of the handlers' watches: handlers.py registers its indices and triggers
from this table (nothing is watched that is not listed here), and the RBAC test
(tests/unit/chart/test_chart_rbac.py) checks that the operator's roles grant every verb listed,
so a new watch without a rule fails there rather than as a 403 in a cluster.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from airt_operator.kube.resources import (
    DEVICE_CLASS,
    INFERENCE_RUNTIME,
    MODEL_DEPLOYMENT,
    NAMESPACED_INFERENCE_RUNTIME,
    POD,
    RESOURCE_CLAIM,
    RESOURCE_SLICE,
    Kind,
)
from airt_operator.world import (
    CLAIMS_INDEX,
    DEVICE_CLASSES_INDEX,
    MODELS_INDEX,
    NAMESPACED_RUNTIMES_INDEX,
    NAMESPACES_INDEX,
    NODES_INDEX,
    OWNER_LABEL,
    PODS_INDEX,
    RUNTIMES_INDEX,
    SLICES_INDEX,
    WATCHED_CHILD_KINDS,
    child_entry,
    child_index,
    claim_entry,
    device_class_entry,
    model_entry,
    namespace_entry,
    node_entry,
    pod_entry,
    runtime_entry,
    slice_entry,
)

IndexFn = Callable[..., Awaitable[Any]]

# The labels the operator puts on every child it renders (templates/): only those are watched.
MANAGED = {"app.kubernetes.io/managed-by": "airt-operator"}
READ = ("get", "list", "watch")


class Trigger:
    """What a watch event of a resource makes the handlers do (handlers.py maps each to one
    controller method)."""

    MODEL = "model"  # a ModelDeployment changed (its events, and its spec's changes)
    RUNTIME = "runtime"  # an InferenceRuntime or a NamespacedInferenceRuntime changed
    OWNED = "owned"  # a child or pod changed: look at its owner again
    NAMESPACE = "namespace"  # a namespace's labels changed
    CRD = "crd"  # a CRD came or went (ServiceMonitors; the first event marks the watches synced)
    DEVICES = "devices"  # a DeviceClass or ResourceSlice changed: GPU placement may change


@dataclass(frozen=True)
class Watch:
    """One watched resource: its selector, label filter, index and trigger."""

    group: str
    version: str
    plural: str
    name: str  # used in handler ids
    labels: Mapping[str, Any] | None = None
    index: str | None = None  # the index id (the kwarg name handlers receive), if indexed
    index_fn: IndexFn | None = None
    trigger: str | None = None  # a Trigger, if its events trigger anything
    # Spec changes are handled by kopf's change handlers (create/update/resume), which record
    # the spec they handled in an annotation on the object: a metadata patch.
    spec_changes: bool = False

    @property
    def selector(self) -> tuple[str, ...]:
        return (
            (self.group, self.version, self.plural) if self.group else (self.version, self.plural)
        )

    @property
    def verbs(self) -> tuple[str, ...]:
        """The verbs the handlers need on this resource (kopf lists and watches it)."""
        return (*READ, "patch") if self.spec_changes else READ


def _of(kind: Kind, **kwargs: Any) -> Watch:
    return Watch(kind.group, kind.version, kind.plural, name=kind.plural, **kwargs)


WATCHES: tuple[Watch, ...] = (
    _of(
        MODEL_DEPLOYMENT,
        index=MODELS_INDEX,
        index_fn=model_entry,
        trigger=Trigger.MODEL,
        spec_changes=True,
    ),
    _of(INFERENCE_RUNTIME, index=RUNTIMES_INDEX, index_fn=runtime_entry, trigger=Trigger.RUNTIME),
    _of(
        NAMESPACED_INFERENCE_RUNTIME,
        index=NAMESPACED_RUNTIMES_INDEX,
        index_fn=runtime_entry,
        trigger=Trigger.RUNTIME,
    ),
    _of(
        POD,
        labels={OWNER_LABEL: kopf.PRESENT},
        index=PODS_INDEX,
        index_fn=pod_entry,
        trigger=Trigger.OWNED,
    ),
    *(
        _of(
            kind,
            labels=MANAGED,
            index=child_index(kind),
            index_fn=child_entry,
            trigger=Trigger.OWNED,
        )
        for kind in WATCHED_CHILD_KINDS
    ),
    _of(
        RESOURCE_CLAIM,
        labels={OWNER_LABEL: kopf.PRESENT},
        index=CLAIMS_INDEX,
        index_fn=claim_entry,
        trigger=Trigger.OWNED,
    ),
    _of(RESOURCE_SLICE, index=SLICES_INDEX, index_fn=slice_entry, trigger=Trigger.DEVICES),
    _of(
        DEVICE_CLASS,
        index=DEVICE_CLASSES_INDEX,
        index_fn=device_class_entry,
        trigger=Trigger.DEVICES,
    ),
    Watch("", "v1", "nodes", name="nodes", index=NODES_INDEX, index_fn=node_entry),
    Watch(
        "",
        "v1",
        "namespaces",
        name="namespaces",
        index=NAMESPACES_INDEX,
        index_fn=namespace_entry,
        trigger=Trigger.NAMESPACE,
    ),
    Watch(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        name="customresourcedefinitions",
        trigger=Trigger.CRD,
    ),
)

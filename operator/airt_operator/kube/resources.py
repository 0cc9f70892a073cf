"""The Kubernetes kinds the operator reads and writes, with their REST paths.

Called by kube/client.py (to build URLs) and by the RBAC source of truth (rbac.py), so what the
operator touches is declared once. A small table instead of API discovery: the set is fixed by
what the renderer produces, and discovery would cost requests at every start.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One resource kind: where it lives and what the operator does with it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    verbs: tuple[str, ...] = ("get", "list", "watch", "create", "update", "patch", "delete")
    # The API server refuses any change of the spec: a changed child is deleted and created.
    immutable_spec: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if sub:
            base += f"/{sub}"
        return base


WATCH = ("get", "list", "watch")

MODEL_DEPLOYMENT = Kind("airt.dev", "v1alpha1", "ModelDeployment", "modeldeployments", verbs=WATCH)
INFERENCE_RUNTIME = Kind(
    "airt.dev", "v1alpha1", "InferenceRuntime", "inferenceruntimes", namespaced=False, verbs=WATCH
)
NAMESPACED_INFERENCE_RUNTIME = Kind(
    "airt.dev", "v1alpha1", "NamespacedInferenceRuntime", "namespacedinferenceruntimes", verbs=WATCH
)

SERVICE_ACCOUNT = Kind("", "v1", "ServiceAccount", "serviceaccounts")
DEPLOYMENT = Kind("apps", "v1", "Deployment", "deployments")
SERVICE = Kind("", "v1", "Service", "services")
NETWORK_POLICY = Kind("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies")
PDB = Kind("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets")
HPA = Kind("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
SERVICE_MONITOR = Kind("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors")
POD = Kind("", "v1", "Pod", "pods", verbs=WATCH)
# Dynamic Resource Allocation (GPU placement's dra mode): the operator applies one
# ResourceClaimTemplate per GPU model (a child) and only reads the rest: the pods' claims (what
# each replica was allocated), the ResourceSlices (the devices that exist) and the DeviceClasses
# (whether the cluster has the NVIDIA DRA driver).
RESOURCE_CLAIM_TEMPLATE = Kind(
    "resource.k8s.io",
    "v1",
    "ResourceClaimTemplate",
    "resourceclaimtemplates",
    immutable_spec=True,
)
RESOURCE_CLAIM = Kind("resource.k8s.io", "v1", "ResourceClaim", "resourceclaims", verbs=WATCH)
RESOURCE_SLICE = Kind(
    "resource.k8s.io", "v1", "ResourceSlice", "resourceslices", namespaced=False, verbs=WATCH
)
DEVICE_CLASS = Kind(
    "resource.k8s.io", "v1", "DeviceClass", "deviceclasses", namespaced=False, verbs=WATCH
)
EVENT = Kind("", "v1", "Event", "events", verbs=("create", "patch"))
# Read one at a time, metadata only (Kube.get_metadata): whether a model's credentials Secret is
# labelled for model credentials. Never list or watch: the operator must not see every Secret.
SECRET = Kind("", "v1", "Secret", "secrets", verbs=("get",))

# Children, in the order they are applied (the identity before the pods that use it). Earlier
# versions also rendered an empty Role and its RoleBinding; ModelDeployments made then keep them
# until they are deleted (the garbage collector removes them with their owner).
CHILD_KINDS: tuple[Kind, ...] = (
    SERVICE_ACCOUNT,
    SERVICE,
    NETWORK_POLICY,
    RESOURCE_CLAIM_TEMPLATE,  # before the Deployment whose pods are made from it
    DEPLOYMENT,
    PDB,
    HPA,
    SERVICE_MONITOR,
)

BY_KIND: dict[tuple[str, str], Kind] = {(k.api_version, k.kind): k for k in CHILD_KINDS}


def kind_of(manifest: dict[str, object]) -> Kind:
    """The table entry for a rendered manifest; a KeyError names a kind we never render."""
    return BY_KIND[(str(manifest["apiVersion"]), str(manifest["kind"]))]

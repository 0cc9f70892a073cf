"""One descriptor per airt kind: its models, names and printer columns, declared once.

Everything that differs between the kinds (ModelDeployment and the two runtime kinds) outside
their field models lives in the table here: parsing (`ApiKind.parse`, behind
`parse_model_deployment` and friends in parse.py), the CRD (`airt_operator.crdgen` builds one
per entry) and the API reference (generated from those CRDs). The root models share their
common fields through `ApiObject` (base.py), which takes each kind's name bounds from its class.
Pure: no kopf, no Kubernetes client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from .base import ApiModel, ApiObject
from .modeldeployment import ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus
from .parse import ApiValidationError, FieldError, parse_model
from .runtime import (
    InferenceRuntime,
    InferenceRuntimeSpec,
    InferenceRuntimeStatus,
    NamespacedInferenceRuntime,
)

ObjT = TypeVar("ObjT", bound=ApiObject)
SpecT = TypeVar("SpecT", bound=ApiModel)

READY = '.status.conditions[?(@.type=="Ready")]'


@dataclass(frozen=True)
class PrinterColumn:
    """One `kubectl get` column (an entry of the CRD's additionalPrinterColumns)."""

    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0  # 1: shown only with `-o wide`

    def to_crd(self) -> dict[str, Any]:
        col: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            col["priority"] = self.priority
        return col


@dataclass(frozen=True)
class ApiKind(Generic[ObjT, SpecT]):
    """One kind: its root model (which names it), spec and status models, REST names, scope,
    printer columns and whether it serves the scale subresource."""

    model: type[ObjT]
    spec: type[SpecT]
    status: type[ApiModel]
    plural: str
    short_name: str
    namespaced: bool
    columns: tuple[PrinterColumn, ...]
    scale: bool = False

    @property
    def kind(self) -> str:
        return self.model.__name__

    @property
    def scope(self) -> str:
        return "Namespaced" if self.namespaced else "Cluster"

    @property
    def name_pattern(self) -> str:
        return self.model.name_pattern

    @property
    def name_max_length(self) -> int:
        return self.model.name_max_length

    def parse(self, raw: Mapping[str, Any]) -> ObjT:
        """A whole object, or a bare spec (then metadata is empty)."""
        if not isinstance(raw, Mapping):
            raise ApiValidationError(self.kind, [FieldError("", "not an object")])
        if _is_object(raw):
            return parse_model(self.model, raw, self.kind)
        spec = self.parse_spec(raw)
        return self.model.model_validate({"spec": spec})

    def parse_spec(self, raw: Mapping[str, Any]) -> SpecT:
        """Just the spec (paths still start with `spec.`)."""
        return parse_model(self.spec, raw, self.kind, "spec")


def _is_object(raw: Mapping[str, Any]) -> bool:
    return "spec" in raw or "metadata" in raw or "apiVersion" in raw or "kind" in raw


MODEL_DEPLOYMENT: ApiKind[ModelDeployment, ModelDeploymentSpec] = ApiKind(
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    plural="modeldeployments",
    short_name="md",
    namespaced=True,
    columns=(
        PrinterColumn("Model", "string", ".spec.model.uri", "Where the model comes from."),
        PrinterColumn("Runtime", "string", ".status.runtimeName", "The InferenceRuntime chosen."),
        PrinterColumn("GPU", "string", ".status.gpu", "GPUs per replica."),
        PrinterColumn(
            "Allocated", "string", ".status.gpuProduct", "GPU products the replicas got (DRA)."
        ),
        PrinterColumn("Ready", "string", f"{READY}.status", "The Ready condition."),
        PrinterColumn("Replicas", "integer", ".spec.replicas", "Desired replicas."),
        PrinterColumn("URL", "string", ".status.url", "In-cluster HTTP URL."),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation."),
        PrinterColumn("Available", "integer", ".status.availableReplicas", "Available pods.", 1),
        PrinterColumn("Reason", "string", f"{READY}.reason", "Why Ready is what it is.", 1),
        PrinterColumn("Format", "string", ".spec.model.format", "The model's format.", 1),
    ),
    scale=True,
)

INFERENCE_RUNTIME: ApiKind[InferenceRuntime, InferenceRuntimeSpec] = ApiKind(
    InferenceRuntime,
    InferenceRuntimeSpec,
    InferenceRuntimeStatus,
    plural="inferenceruntimes",
    short_name="irt",
    namespaced=False,
    columns=(
        PrinterColumn("Accelerator", "string", ".spec.accelerator", "cpu or nvidia."),
        PrinterColumn("Formats", "string", ".spec.formats", "Model formats it loads."),
        PrinterColumn("Priority", "integer", ".spec.priority", "Auto-selection priority."),
        PrinterColumn("Ready", "string", f"{READY}.status", "The Ready condition."),
        PrinterColumn("Age", "date", ".metadata.creationTimestamp", "Time since creation."),
        PrinterColumn("Image", "string", ".spec.container.image", "The serving image.", 1),
        PrinterColumn("Worker", "string", ".spec.images.worker", "The airt worker image.", 1),
    ),
)

NAMESPACED_INFERENCE_RUNTIME: ApiKind[NamespacedInferenceRuntime, InferenceRuntimeSpec] = ApiKind(
    NamespacedInferenceRuntime,
    InferenceRuntimeSpec,
    InferenceRuntimeStatus,
    plural="namespacedinferenceruntimes",
    short_name="nirt",
    namespaced=True,
    columns=INFERENCE_RUNTIME.columns,
)

# Every kind, in the order the CRDs and the API reference list them.
KINDS: tuple[ApiKind[Any, Any], ...] = (
    MODEL_DEPLOYMENT,
    INFERENCE_RUNTIME,
    NAMESPACED_INFERENCE_RUNTIME,
)
BY_KIND: dict[str, ApiKind[Any, Any]] = {k.kind: k for k in KINDS}


# The public parsers, one per kind and one for any kind.
parse_model_deployment = MODEL_DEPLOYMENT.parse
parse_model_deployment_spec = MODEL_DEPLOYMENT.parse_spec
parse_inference_runtime = INFERENCE_RUNTIME.parse
parse_inference_runtime_spec = INFERENCE_RUNTIME.parse_spec
parse_namespaced_inference_runtime = NAMESPACED_INFERENCE_RUNTIME.parse


def parse_runtime(raw: Mapping[str, Any]) -> InferenceRuntime | NamespacedInferenceRuntime:
    """A runtime of either kind, by its `kind` (InferenceRuntime when it names none)."""
    if raw.get("kind") == NAMESPACED_INFERENCE_RUNTIME.kind:
        return NAMESPACED_INFERENCE_RUNTIME.parse(raw)
    return INFERENCE_RUNTIME.parse(raw)


def parse_object(
    raw: Mapping[str, Any],
) -> ModelDeployment | InferenceRuntime | NamespacedInferenceRuntime:
    """Any airt object, by its `kind`."""
    kind = raw.get("kind") if isinstance(raw, Mapping) else None
    found = BY_KIND.get(str(kind)) if kind is not None else None
    if found is None:
        raise ApiValidationError(str(kind), [FieldError("kind", f"not an airt kind: {kind!r}")])
    return cast(ModelDeployment | InferenceRuntime | NamespacedInferenceRuntime, found.parse(raw))

"""The runtime kinds: InferenceRuntime (cluster-scoped, short name `irt`), the catalog the platform
curates, and NamespacedInferenceRuntime (short name `nirt`), a team's own runtimes in its
namespace. Both share InferenceRuntimeSpec.

The operator's runtime resolution reads these models (named, or auto-selected by format,
accelerator and priority) and enforces `policy` on every ModelDeployment that uses the runtime;
`airt_operator.crdgen` generates the CRD from them.

Refinements of the design sketch, and why:
- The serving container is a template (`container`, runtime_container.py), so any inference
  server can be a runtime; `images.worker` stays as the airt worker's shorthand (the same
  template with that image), so runtimes written before the template keep working.
- The sidecar and fetcher images sit under `images` (the operator has defaults for both).
- The namespaced kind carries the qualifier because the cluster-scoped kind had the plain name
  first; it is resolved before the cluster catalog, like KServe's ServingRuntime.
- `autoSelect: false` keeps a runtime out of auto-selection (it is used only when named).
- `policy.allowedImagePrefixes` is how a runtime allows `spec.runtime.image` overrides: none
  listed means no override is accepted. The check needs both objects, so the operator does it
  (RuntimeResolved=False, reason ImageOverrideNotAllowed), not the API server.
- A CPU runtime cannot allow GPUs (`policy.maxGpusPerReplica` must be 0 or absent), nor choose
  a GPU placement (`gpuPlacement`).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from .base import (
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    ENV_NAME,
    IMAGE,
    ApiModel,
    ApiObject,
    Quantity,
    cel,
    cel_pattern,
)
from .conditions import Condition
from .modeldeployment import ModelFormat, UriScheme
from .resources import ComputeResources, GpuPlacementMode
from .runtime_container import RuntimeContainer

# Runtime names go into label values (at most 63 characters) on the pods that use them.
NAME_MAX_LENGTH = 63
NAME_PATTERN = DNS1123_LABEL

Accelerator = Literal["cpu", "nvidia"]
Image = Annotated[str, StringConstraints(max_length=512, pattern=IMAGE)]


class RuntimeImages(ApiModel):
    """The container images a runtime is made of."""

    worker: Image | None = Field(
        default=None,
        description="The airt worker image (pin it by digest in production: "
        "registry/repo@sha256:...): shorthand for a `container` running the airt worker; set "
        "this or `container`, not both.",
    )
    metrics: Image | None = Field(
        default=None, description="The metrics sidecar image; the operator's default when omitted."
    )
    model_fetch: Image | None = Field(
        default=None,
        description="The image of the init container that downloads remote models; the "
        "operator's default when omitted.",
    )


class EnvVar(ApiModel):
    """An environment variable for the worker container."""

    name: str = Field(
        min_length=1, max_length=128, pattern=ENV_NAME, description="The variable's name."
    )
    value: str = Field(default="", max_length=4096, description="The variable's value.")


class RuntimeDefaults(ApiModel):
    """What a ModelDeployment gets when it does not say."""

    resources: ComputeResources | None = Field(
        default=None, description="CPU, memory and /dev/shm for models that set none."
    )
    env: list[EnvVar] | None = Field(
        default=None,
        max_length=64,
        description="Environment variables for the worker container.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class SelectorRequirement(ApiModel):
    """One label requirement (a Kubernetes LabelSelectorRequirement)."""

    key: str = Field(max_length=317, description="The label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="In, NotIn, Exists or DoesNotExist."
    )
    values: list[Annotated[str, StringConstraints(max_length=63)]] | None = Field(
        default=None, max_length=64, description="Values for In and NotIn."
    )


class LabelSelector(ApiModel):
    """A Kubernetes label selector: every matchLabels pair and every expression must hold."""

    match_labels: dict[str, Annotated[str, StringConstraints(max_length=63)]] | None = Field(
        default=None, max_length=32, description="Labels that must be present with these values."
    )
    match_expressions: list[SelectorRequirement] | None = Field(
        default=None, max_length=16, description="Requirements that must all hold."
    )

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in (self.match_labels or {}).items()):
            return False
        for r in self.match_expressions or []:
            present = r.key in labels
            inside = present and labels[r.key] in (r.values or [])
            ok = {
                "In": inside,
                "NotIn": not inside,
                "Exists": present,
                "DoesNotExist": not present,
            }[r.operator]
            if not ok:
                return False
        return True


@cel_pattern(
    r"^[a-z0-9][-a-z0-9._:]*(/[a-z0-9][-a-z0-9._]*)*/$",
    "must be an image prefix ending in '/', e.g. ghcr.io/my-team/",
    field="allowed_image_prefixes",
    each=True,
)
class RuntimePolicy(ApiModel):
    """Rules every ModelDeployment using this runtime must meet; the operator enforces them."""

    allowed_uri_schemes: list[UriScheme] | None = Field(
        default=None,
        min_length=1,
        max_length=6,
        description="Model URI schemes this runtime accepts; all when omitted.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    max_gpus_per_replica: int | None = Field(
        default=None,
        ge=0,
        le=16,
        description="Most whole GPUs one replica may ask for; no limit when omitted.",
    )
    allowed_image_prefixes: list[Annotated[str, StringConstraints(max_length=256)]] | None = Field(
        default=None,
        max_length=16,
        description="Image prefixes (e.g. ghcr.io/my-team/) that spec.runtime.image may start "
        "with; no override is accepted when omitted.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    require_model_sha256: bool = Field(
        default=False,
        description="Refuse remote models that are not pinned: without model.sha256, an "
        "oci:// URI must be pinned by @sha256 and an hf:// revision must be a full commit id "
        "(a branch or tag can move). pvc:// models are not downloaded and are exempt.",
    )
    namespace_selector: LabelSelector | None = Field(
        default=None,
        description="Namespaces whose ModelDeployments may use this runtime, by their labels; "
        "every namespace when omitted.",
    )
    allowed_credential_secrets: (
        list[Annotated[str, StringConstraints(max_length=253, pattern=DNS1123_SUBDOMAIN)]] | None
    ) = Field(
        default=None,
        max_length=64,
        description="Names of the Secrets that model.credentials may name. When omitted, a "
        "Secret of the model's namespace labelled airt.dev/model-credentials=true.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    max_model_size: Quantity | None = Field(
        default=None,
        description="Largest model the fetcher downloads (a quantity, e.g. 20Gi); also the "
        "size limit of the volume it writes to. The operator's default (20Gi) when omitted.",
    )
    in_cluster_model_store: bool = Field(
        default=False,
        description="The model store runs inside the cluster: the fetcher may reach pod and "
        "service addresses (otherwise its egress excludes the cluster's own ranges).",
    )


@cel(
    "self.accelerator != 'cpu' || !has(self.policy) || !has(self.policy.maxGpusPerReplica) "
    "|| self.policy.maxGpusPerReplica == 0",
    "a cpu runtime cannot allow GPUs: maxGpusPerReplica must be 0 or omitted",
    lambda s: (
        s.accelerator != "cpu" or s.policy is None or s.policy.max_gpus_per_replica in (None, 0)
    ),
    field_path=".policy.maxGpusPerReplica",
    reason="FieldValueForbidden",
)
@cel(
    "self.accelerator != 'cpu' || !has(self.gpuPlacement)",
    "a cpu runtime has no GPU placement: gpuPlacement must be omitted",
    lambda s: s.accelerator != "cpu" or s.gpu_placement is None,
    field_path=".gpuPlacement",
    reason="FieldValueForbidden",
)
@cel(
    "has(self.container) != (has(self.images) && has(self.images.worker))",
    "set either container or images.worker (the airt worker's shorthand), not both",
    lambda s: (s.container is not None) != (s.images is not None and s.images.worker is not None),
    field_path=".container",
    reason="FieldValueRequired",
)
class InferenceRuntimeSpec(ApiModel):
    """A runtime: its container template, the model formats it accepts, its accelerator,
    defaults and policy."""

    container: RuntimeContainer | None = Field(
        default=None,
        description="The serving container as a template: image, command and arguments with "
        "placeholders, protocol, ports, health and metrics endpoints, where the model is "
        "mounted. The airt worker is one such runtime (airtWorkerConfig: true).",
    )
    images: RuntimeImages | None = Field(
        default=None,
        description="The metrics-sidecar and model-fetch images (the operator's defaults when "
        "omitted), and the legacy airt worker shorthand `worker`.",
    )
    formats: list[ModelFormat] = Field(
        min_length=1,
        max_length=16,
        description="Model formats it accepts, matched against spec.model.format "
        "(the airt worker: torchscript, torch-export).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    accelerator: Accelerator = Field(
        description="The device the worker runs models on: cpu or nvidia."
    )
    priority: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="Among runtimes that fit a model, auto-selection picks the highest priority "
        "(then the name, alphabetically).",
    )
    auto_select: bool = Field(
        default=True,
        description="Whether auto-selection may pick this runtime; when false it runs only "
        "models that name it.",
    )
    defaults: RuntimeDefaults | None = Field(
        default=None, description="Defaults for models that do not say."
    )
    policy: RuntimePolicy | None = Field(
        default=None, description="Rules every ModelDeployment using this runtime must meet."
    )
    gpu_placement: GpuPlacementMode | None = Field(
        default=None,
        description="How the pods of this runtime's models get their GPUs, unless a model "
        "says (spec.resources.gpu.placement): dra (Dynamic Resource Allocation, a "
        "ResourceClaimTemplate per model), devicePlugin (nvidia.com/gpu extended resources) or "
        "auto (omitted: DRA where the cluster has the NVIDIA DeviceClasses). nvidia runtimes only.",
    )

    @property
    def image(self) -> str:
        """The serving container's image."""
        if self.container is not None:
            return self.container.image
        assert self.images is not None and self.images.worker is not None  # the CEL rule
        return self.images.worker


class InferenceRuntimeStatus(ApiModel):
    """The observed state, written by the operator only."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this status describes."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        max_length=16,
        description="Ready: the runtime is valid and usable.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    model_deployments: int | None = Field(
        default=None, ge=0, description="ModelDeployments currently using this runtime."
    )


class InferenceRuntime(ApiObject):
    """A runtime the platform team offers to every namespace: its container template, formats,
    accelerator, defaults and policy."""

    name_pattern: ClassVar[str] = NAME_PATTERN
    name_max_length: ClassVar[int] = NAME_MAX_LENGTH

    kind: Literal["InferenceRuntime"] = Field(default="InferenceRuntime", description="The kind.")
    spec: InferenceRuntimeSpec = Field(description="The desired state.")
    status: InferenceRuntimeStatus | None = Field(default=None, description="The observed state.")


class NamespacedInferenceRuntime(ApiObject):
    """A runtime a team offers to the ModelDeployments of its own namespace, without
    cluster-admin: the same spec as InferenceRuntime, resolved before the cluster catalog.
    policy.namespaceSelector does not apply (only its namespace may use it)."""

    name_pattern: ClassVar[str] = NAME_PATTERN
    name_max_length: ClassVar[int] = NAME_MAX_LENGTH

    kind: Literal["NamespacedInferenceRuntime"] = Field(
        default="NamespacedInferenceRuntime", description="The kind."
    )
    spec: InferenceRuntimeSpec = Field(description="The desired state.")
    status: InferenceRuntimeStatus | None = Field(default=None, description="The observed state.")


#: Either runtime kind: the resolver and the renderer treat them alike.
AnyRuntime = InferenceRuntime | NamespacedInferenceRuntime

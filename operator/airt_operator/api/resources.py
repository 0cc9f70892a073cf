"""Compute resources and GPU intent: `spec.resources` of a ModelDeployment and runtime defaults.

Imported by `modeldeployment` and `runtime`; the operator's GPU placement reads `GpuRequest`.

GPU intent is portable rather than tied to one node type: `products` is an ordered preference of
the values the NVIDIA GPU feature discovery puts in the `nvidia.com/gpu.product` node label, and
`minMemoryGiB` matches `nvidia.com/gpu.memory`. A MIG slice is asked for by profile (`mig`),
which becomes the `nvidia.com/mig-<profile>` extended resource.

Refinement of the design sketch: the MIG form and the whole-GPU form are kept apart. With `mig`,
`count` must stay 1 (CUDA shows a process one MIG device, so one worker uses one slice) and
`minMemoryGiB` is refused (the profile fixes the slice's memory); `products` may still name the
parent GPU. A product label of a MIG slice (`...-MIG-1g.5gb`, as the "single" MIG strategy
labels nodes) is refused in `products`: ask for the slice with `mig` instead. `products` is an
atomic list (not a set): it is an ordered preference, so whoever applies it owns the whole order,
and a CEL rule (not the list type) refuses duplicates.

Placement: the same request is rendered two ways (docs/gpu-placement.md). With the device
plugin, as extended resources plus node affinity on the feature-discovery labels; with Dynamic
Resource Allocation (DRA), as a ResourceClaimTemplate whose `firstAvailable` subrequests follow
the preference order. `placement` overrides the runtime's and the cluster's choice for one model.
`alternatives` is the general form of the preference, whose entries may differ in count
(2x NVIDIA-L4, else 1x NVIDIA-H100-80GB-HBM3) or mix whole GPUs with MIG slices; only DRA
can express it, so it is refused with `placement: devicePlugin`, and it replaces the flat
fields (`products`, `minMemoryGiB`, `mig`, `count`) rather than combining with them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from .base import ApiModel, Quantity, cel, cel_pattern

GPU_PRODUCT = r"^[A-Za-z][A-Za-z0-9_.-]*[A-Za-z0-9]$"
MIG_PROFILE = r"^[1-7]g\.[1-9][0-9]*gb([+-][a-z]+(\.[a-z]+)?)?$"

GpuProduct = Annotated[str, StringConstraints(min_length=2, max_length=63)]
#: How the pods get their GPUs: auto (the runtime's choice, else the cluster's: DRA where the
#: NVIDIA DeviceClasses exist), dra (a ResourceClaimTemplate) or devicePlugin (extended resources).
GpuPlacementMode = Literal["auto", "dra", "devicePlugin"]


class ComputeResources(ApiModel):
    """CPU, memory and shared memory for the worker container."""

    cpu: Quantity | None = Field(
        default=None,
        description="CPU for the worker, requested and used as its limit (e.g. 2 or 500m). The "
        "worker sizes its thread pools from it, never from the node's core count.",
    )
    memory: Quantity | None = Field(
        default=None,
        description="Memory for the worker, requested and used as its limit (e.g. 4Gi).",
    )
    shm_size: Quantity | None = Field(
        default=None,
        description="Size limit of the memory-backed /dev/shm volume (e.g. 1Gi); counts against "
        "memory. Defaults to what the operator chooses for the runtime.",
    )


@cel(
    "!has(self.mig) || !has(self.minMemoryGiB)",
    "minMemoryGiB cannot be combined with mig: the MIG profile fixes the slice's memory",
    lambda a: a.mig is None or a.min_memory_gib is None,
    field_path=".minMemoryGiB",
    reason="FieldValueForbidden",
)
@cel(
    "!has(self.mig) || self.count == 1",
    "count must be 1 with mig: a worker uses exactly one MIG slice",
    lambda a: a.mig is None or a.count == 1,
    field_path=".count",
)
@cel_pattern(
    GPU_PRODUCT,
    "must be a GPU product as the nvidia.com/gpu.product node label spells it, "
    "e.g. NVIDIA-L4 (letters, digits, '-', '_', '.'; no spaces)",
    field="product",
)
@cel(
    "!self.contains('-MIG-')",
    "names a MIG slice; name the whole GPU product here and the slice with mig",
    lambda p: "-MIG-" not in p,
    field="product",
)
@cel_pattern(
    MIG_PROFILE,
    "must be a MIG profile such as 1g.5gb, 2g.10gb, 3g.20gb, 7g.80gb or 1g.10gb+me",
    field="mig",
)
class GpuAlternative(ApiModel):
    """One acceptable set of devices for a replica: count whole GPUs (of a product, with a
    memory floor) or one MIG slice. Tried in the order listed."""

    count: int = Field(default=1, ge=1, le=16, description="Devices of this alternative.")
    product: GpuProduct | None = Field(
        default=None,
        description="The GPU product (e.g. NVIDIA-L4), spelled as the nvidia.com/gpu.product "
        "node label spells it; with mig, the parent GPU's product. Omitted: any product.",
    )
    min_memory_gib: int | None = Field(
        default=None,
        alias="minMemoryGiB",
        ge=1,
        le=1024,
        description="Minimum memory of each GPU in GiB. Not allowed with mig.",
    )
    mig: str | None = Field(
        default=None,
        max_length=32,
        description="A MIG profile (e.g. 1g.5gb): one slice of that profile instead of whole GPUs.",
    )


@cel(
    "!has(self.alternatives) || !has(self.products)",
    "products cannot be combined with alternatives: name the product in each alternative",
    lambda g: g.alternatives is None or g.products is None,
    field_path=".products",
    reason="FieldValueForbidden",
)
@cel(
    "!has(self.alternatives) || !has(self.mig)",
    "mig cannot be combined with alternatives: put the MIG profile in an alternative",
    lambda g: g.alternatives is None or g.mig is None,
    field_path=".mig",
    reason="FieldValueForbidden",
)
@cel(
    "!has(self.alternatives) || !has(self.minMemoryGiB)",
    "minMemoryGiB cannot be combined with alternatives: set it in each alternative",
    lambda g: g.alternatives is None or g.min_memory_gib is None,
    field_path=".minMemoryGiB",
    reason="FieldValueForbidden",
)
@cel(
    "!has(self.alternatives) || self.count == 1",
    "count cannot be combined with alternatives: set the count of each alternative",
    lambda g: g.alternatives is None or g.count == 1,
    field_path=".count",
    reason="FieldValueForbidden",
)
@cel(
    "!has(self.alternatives) || !has(self.placement) || self.placement != 'devicePlugin'",
    "alternatives need placement dra (or auto on a cluster with DRA): the device plugin "
    "cannot express alternatives",
    lambda g: g.alternatives is None or g.placement != "devicePlugin",
    field_path=".alternatives",
    reason="FieldValueForbidden",
)
@cel(
    "!has(self.mig) || !has(self.minMemoryGiB)",
    "minMemoryGiB cannot be combined with mig: the MIG profile fixes the slice's memory",
    lambda g: g.mig is None or g.min_memory_gib is None,
    field_path=".minMemoryGiB",
    reason="FieldValueForbidden",
)
@cel(
    "!has(self.mig) || self.count == 1",
    "count must be 1 with mig: a worker uses exactly one MIG slice; scale with replicas",
    lambda g: g.mig is None or g.count == 1,
    field_path=".count",
)
@cel(
    "self.all(p, self.exists_one(q, q == p))",
    "GPU products must be unique",
    lambda products: len(set(products)) == len(products),
    field="products",
    reason="FieldValueDuplicate",
)
@cel_pattern(
    GPU_PRODUCT,
    "must be a GPU product as the nvidia.com/gpu.product node label spells it, "
    "e.g. NVIDIA-H100-80GB-HBM3 (letters, digits, '-', '_', '.'; no spaces)",
    field="products",
    each=True,
)
@cel(
    "!self.contains('-MIG-')",
    "names a MIG slice; list whole GPU products here and ask for a slice with mig",
    lambda p: "-MIG-" not in p,
    field="products",
    each=True,
)
@cel_pattern(
    MIG_PROFILE,
    "must be a MIG profile such as 1g.5gb, 2g.10gb, 3g.20gb, 7g.80gb or 1g.10gb+me",
    field="mig",
)
class GpuRequest(ApiModel):
    """GPUs for each replica: whole GPUs (count, products, minMemoryGiB) or one MIG slice (mig)."""

    count: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Whole GPUs per replica; must be 1 with mig.",
    )
    products: list[GpuProduct] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description="Acceptable GPU products in order of preference, as the nvidia.com/gpu.product "
        "node label spells them (e.g. NVIDIA-H100-80GB-HBM3, NVIDIA-A100-SXM4-40GB). Pods may land "
        "on any of them and prefer the earlier ones. Omitted: any GPU.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    min_memory_gib: int | None = Field(
        default=None,
        alias="minMemoryGiB",
        ge=1,
        le=1024,
        description="Minimum memory of each GPU in GiB (matched against nvidia.com/gpu.memory). "
        "Not allowed with mig.",
    )
    mig: str | None = Field(
        default=None,
        max_length=32,
        description="A MIG profile (e.g. 1g.5gb, 3g.20gb): the replica gets one slice of that "
        "profile (the nvidia.com/mig-<profile> resource) instead of whole GPUs.",
    )
    alternatives: list[GpuAlternative] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description="Acceptable device sets in order of preference, when they differ in count "
        "or kind (e.g. 2x NVIDIA-L4, else 1x NVIDIA-H100-80GB-HBM3); each replica gets the "
        "first that a node can give. Needs DRA placement; replaces count, products, "
        "minMemoryGiB and mig.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    placement: GpuPlacementMode | None = Field(
        default=None,
        description="How the pods get their GPUs: dra (a ResourceClaimTemplate, Dynamic "
        "Resource Allocation), devicePlugin (nvidia.com/gpu extended resources and node "
        "affinity) or auto. Omitted or auto: the runtime's gpuPlacement, else DRA where the "
        "cluster has the NVIDIA DeviceClasses and the device plugin elsewhere.",
    )


class Resources(ComputeResources):
    """What each replica needs: CPU, memory, shared memory and GPUs."""

    gpu: GpuRequest | None = Field(
        default=None,
        description="GPUs per replica. Omitted: a CPU-only model, placed on nodes without GPUs.",
    )

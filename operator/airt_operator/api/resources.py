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
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from .base import ApiModel, Quantity, cel, cel_pattern

GPU_PRODUCT = r"^[A-Za-z][A-Za-z0-9_.-]*[A-Za-z0-9]$"
MIG_PROFILE = r"^[1-7]g\.[1-9][0-9]*gb([+-][a-z]+(\.[a-z]+)?)?$"

GpuProduct = Annotated[str, StringConstraints(min_length=2, max_length=63)]


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


class Resources(ComputeResources):
    """What each replica needs: CPU, memory, shared memory and GPUs."""

    gpu: GpuRequest | None = Field(
        default=None,
        description="GPUs per replica. Omitted: a CPU-only model, placed on nodes without GPUs.",
    )

"""GPU placement: which mode a ModelDeployment's pods get their GPUs by, and what it renders.

Called by reconcile/build.py (the placement in the render context) and by the renderer (the
ResourceClaimTemplate's requests, the pod's claim). Pure.

Two modes (docs/gpu-placement.md):
- devicePlugin: `nvidia.com/gpu` or `nvidia.com/mig-<profile>` extended resources, and node
  affinity on the GPU feature-discovery labels (templates/deployment.yaml.j2);
- dra: one ResourceClaimTemplate per ModelDeployment (resource.k8s.io/v1) whose one request
  lists the alternatives, in the order of preference, as `firstAvailable` subrequests, each
  with CEL selectors over the NVIDIA DRA driver's attributes and capacity: `productName`,
  `capacity memory`, MIG `profile`. Every pod gets its own claim from the template.

The mode is the model's `placement`, else its runtime's `gpuPlacement`, else the operator's
setting, else what the cluster offers: DRA where the NVIDIA DeviceClasses exist.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from airt_operator.api import GpuRequest

DRIVER = "gpu.nvidia.com"
GPU_CLASS = "gpu.nvidia.com"
MIG_CLASS = "mig.nvidia.com"
#: The DeviceClasses whose presence makes `auto` mean DRA.
DEVICE_CLASSES = (GPU_CLASS, MIG_CLASS)
#: The name of the one request in every claim, and of the pod's claim and container reference.
CLAIM_REQUEST = "gpu"

Mode = Literal["dra", "devicePlugin"]


class PlacementError(Exception):
    """The GPU request cannot be expressed in the placement mode in effect."""


@dataclass(frozen=True)
class DeviceChoice:
    """One alternative of the preference: `count` devices of one kind."""

    count: int
    product: str | None = None  # as the nvidia.com/gpu.product label spells it
    min_memory_mib: int | None = None
    mig: str | None = None  # a MIG profile: one slice instead of whole GPUs

    @property
    def device_class(self) -> str:
        return MIG_CLASS if self.mig else GPU_CLASS

    def describe(self) -> str:
        """How messages name this alternative, e.g. `2x NVIDIA-L4` or `1x mig 1g.5gb`."""
        what = f"mig {self.mig}" + (f" of {self.product}" if self.product else "")
        if not self.mig:
            what = self.product or "any GPU"
            if self.min_memory_mib:
                what += f" with >= {self.min_memory_mib // 1024}Gi"
        return f"{self.count}x {what}"


@dataclass(frozen=True)
class GpuPlacement:
    """How the pods ask for accelerators and where they may run.

    Device plugin: `resource` and `count` (the extended resource), `products` and
    `min_memory_mib` (node affinity). DRA: `choices` in order of preference; `products` still
    gives the preferred node affinity (the order of `firstAvailable` holds within a node only)
    and `count` is the most devices any alternative gives.
    """

    resource: str  # "nvidia.com/gpu", "nvidia.com/mig-<profile>"; DRA: a DeviceClass name
    count: int
    products: tuple[str, ...] = ()  # ordered preference
    min_memory_mib: int | None = None
    mode: Mode = "devicePlugin"
    choices: tuple[DeviceChoice, ...] = ()

    @property
    def dra(self) -> bool:
        return self.mode == "dra"

    @property
    def fixed_count(self) -> bool:
        """Whether every alternative gives the same number of devices (the worker is then told
        how many it has; otherwise it uses every GPU it sees)."""
        return len({c.count for c in self.choices}) <= 1

    def summary(self) -> str:
        """The `status.gpu` text, e.g. `1x gpu (NVIDIA-H100-80GB-HBM3|NVIDIA-L4)`."""
        if self.dra:
            return " | ".join(c.describe() for c in self.choices)
        products = "|".join(self.products) if self.products else "any"
        return f"{self.count}x {self.resource.removeprefix('nvidia.com/')} ({products})"


def placement_mode(
    gpu: GpuRequest, runtime_mode: str | None, setting: str, dra_available: bool
) -> Mode:
    """The mode in effect: the model's, the runtime's, the operator's setting, the cluster's."""
    for choice in (gpu.placement, runtime_mode, setting):
        if choice == "dra":
            return "dra"
        if choice == "devicePlugin":
            return "devicePlugin"
    return "dra" if dra_available else "devicePlugin"


def choices_of(gpu: GpuRequest) -> tuple[DeviceChoice, ...]:
    """The alternatives, in order: `alternatives` as written, or the flat form's products (one
    alternative per product, same count and memory floor; one for any product without)."""
    if gpu.alternatives:
        return tuple(
            DeviceChoice(
                a.count,
                a.product,
                a.min_memory_gib * 1024 if a.min_memory_gib else None,
                a.mig,
            )
            for a in gpu.alternatives
        )
    min_mib = gpu.min_memory_gib * 1024 if gpu.min_memory_gib else None
    products: Sequence[str | None] = gpu.products or [None]
    return tuple(DeviceChoice(gpu.count, p, min_mib, gpu.mig) for p in products)


def gpu_placement(gpu: GpuRequest, mode: Mode) -> GpuPlacement:
    """The placement of one GPU request in the mode in effect; PlacementError when the device
    plugin cannot express it."""
    choices = choices_of(gpu)
    products = tuple(dict.fromkeys(c.product for c in choices if c.product))
    if mode == "dra":
        kinds = {c.device_class for c in choices}
        return GpuPlacement(
            resource=kinds.pop() if len(kinds) == 1 else f"{GPU_CLASS},{MIG_CLASS}",
            count=max(c.count for c in choices),
            products=products,
            mode="dra",
            choices=choices,
        )
    if gpu.alternatives:
        raise PlacementError(
            "spec.resources.gpu.alternatives needs DRA placement, and this model is placed by "
            "the device plugin (no NVIDIA DeviceClass in the cluster, or placement "
            "devicePlugin set by the runtime or the operator); use count and products, or DRA"
        )
    min_mib = gpu.min_memory_gib * 1024 if gpu.min_memory_gib else None
    if gpu.mig:
        return GpuPlacement(f"nvidia.com/mig-{gpu.mig}", gpu.count, products)
    return GpuPlacement("nvidia.com/gpu", gpu.count, products, min_mib)


def _cel_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


ATTRS = f"device.attributes[{_cel_str(DRIVER)}]"
CAPACITY = f"device.capacity[{_cel_str(DRIVER)}]"


def product_selector(product: str) -> str:
    """CEL on `productName`. The driver publishes the name NVML reports (`NVIDIA H100 80GB
    HBM3`), the node label replaces its spaces by dashes (`NVIDIA-H100-80GB-HBM3`): compared
    in the label's spelling, case-insensitively, so either form in a ResourceSlice matches."""
    want = product.lower().replace(" ", "-")
    return f"{ATTRS}.productName.lowerAscii().replace(' ', '-') == {_cel_str(want)}"


def memory_selector(min_mib: int) -> str:
    """CEL on the device's `memory` capacity: at least `min_mib` MiB."""
    quantity = f"{min_mib // 1024}Gi" if min_mib % 1024 == 0 else f"{min_mib}Mi"
    return f"{CAPACITY}.memory.compareTo(quantity({_cel_str(quantity)})) >= 0"


def profile_selector(profile: str) -> str:
    """CEL on a MIG device's `profile` attribute."""
    return f"{ATTRS}.profile == {_cel_str(profile)}"


def selectors(choice: DeviceChoice) -> list[str]:
    """The CEL expressions of one alternative, in a fixed order (product, memory, profile)."""
    out = []
    if choice.product:
        out.append(product_selector(choice.product))
    if choice.min_memory_mib:
        out.append(memory_selector(choice.min_memory_mib))
    if choice.mig:
        out.append(profile_selector(choice.mig))
    return out


def subrequest_name(index: int) -> str:
    """The name of alternative `index` in the claim (`gpu/alt-<index>` in allocation results)."""
    return f"alt-{index}"


def _exact(choice: DeviceChoice) -> dict[str, Any]:
    out: dict[str, Any] = {
        "deviceClassName": choice.device_class,
        "allocationMode": "ExactCount",
        "count": choice.count,
    }
    exprs = selectors(choice)
    if exprs:
        out["selectors"] = [{"cel": {"expression": e}} for e in exprs]
    return out


def claim_request(placement: GpuPlacement) -> dict[str, Any]:
    """The one DeviceRequest of the claim: `exactly` for a single alternative, `firstAvailable`
    subrequests in the order of preference otherwise. Every field the API server would default
    is written out, so the live object equals what was applied and a no-op reconcile sees no
    drift."""
    if len(placement.choices) == 1:
        return {"name": CLAIM_REQUEST, "exactly": _exact(placement.choices[0])}
    return {
        "name": CLAIM_REQUEST,
        "firstAvailable": [
            {"name": subrequest_name(i), **_exact(c)} for i, c in enumerate(placement.choices)
        ],
    }


def claim_digest(placement: GpuPlacement) -> str:
    """A short digest of the claim's request: the pod template carries it, so that a changed
    request (a new claim template under the same name) rolls the pods out onto new claims."""
    blob = json.dumps(claim_request(placement), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def alternative_of(request: str) -> int | None:
    """Which alternative an allocation result's `request` names: `gpu` (a single one) is 0,
    `gpu/alt-<i>` is i; None for a request that is not ours."""
    if request == CLAIM_REQUEST:
        return 0
    head, _, sub = request.partition("/")
    if head != CLAIM_REQUEST or not sub.startswith("alt-"):
        return None
    try:
        return int(sub.removeprefix("alt-"))
    except ValueError:
        return None

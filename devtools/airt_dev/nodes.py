"""Render the fake node pool (tools/cluster/nodepool.yaml) into v1 Node manifests for kwok, and
the GPUs of its GPU pools into DRA objects shaped like the NVIDIA DRA driver's.

Called by dev/cluster.py when the local cluster comes up. Pure: a typed pool description in,
plain Node dicts out, so the shape of the fake GPU fleet is unit-tested without a cluster.

The same fake GPUs are offered both ways, so both placement modes run on one cluster: as the
device plugin's extended resources (`nvidia.com/gpu`, `nvidia.com/mig-<profile>`) in each
Node's capacity, and as one ResourceSlice per node with the NVIDIA DRA driver's driver name
(`gpu.nvidia.com`), device names, attributes (`type`, `uuid`, `productName`, `architecture`,
`cudaComputeCapability`, `driverVersion`, `index`; MIG: `profile`, `parentUUID`,
`parentIndex`) and capacity (`memory`; MIG also `multiprocessors`), plus the driver's two
DeviceClasses. The real kube-scheduler allocates claims from them and kwok runs the pods; no
kubelet plugin prepares the devices (docs/gpu-placement.md). The two accountings are separate:
a GPU taken through one is still free in the other, so a test uses one mode at a time.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

GPU_TAINT: dict[str, str] = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


DRA_DRIVER = "gpu.nvidia.com"


class MigLayout(BaseModel):
    """How one GPU of a DRA pool is partitioned: MIG profiles and how many slices of each."""

    model_config = ConfigDict(extra="forbid")

    gpu: int = Field(ge=0, le=15)
    profiles: dict[str, int]


class MigProfile(BaseModel):
    """What a MIG profile's slice offers (capacity of the MIG device)."""

    model_config = ConfigDict(extra="forbid")

    memory: str
    multiprocessors: int


class DraGpus(BaseModel):
    """The GPUs of one node as the NVIDIA DRA driver publishes them."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    product_name: str = Field(alias="productName")  # as NVML spells it (spaces, not dashes)
    architecture: str
    cuda_compute_capability: str = Field(alias="cudaComputeCapability")
    driver_version: str = Field(default="570.124.6", alias="driverVersion")
    memory: str
    gpus: int = Field(ge=1, le=16)
    mig: list[MigLayout] = Field(default_factory=list)
    mig_profiles: dict[str, MigProfile] = Field(default_factory=dict, alias="migProfiles")


class NodePool(BaseModel):
    """A group of identical fake nodes."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=40)
    count: int = Field(ge=1, le=100)
    cpu: str
    memory: str
    pods: str = "110"
    labels: dict[str, str] = Field(default_factory=dict)
    extended_resources: dict[str, str] = Field(default_factory=dict, alias="extendedResources")
    gpu_taint: bool = Field(default=False, alias="gpuTaint")
    dra: DraGpus | None = None


def render_nodes(pools: list[NodePool]) -> list[dict[str, Any]]:
    """One Node per pool member, named `<pool>-<index>`, annotated so kwok manages it."""
    nodes: list[dict[str, Any]] = []
    for pool in pools:
        resources = {"cpu": pool.cpu, "memory": pool.memory, "pods": pool.pods}
        resources.update(pool.extended_resources)
        for i in range(pool.count):
            name = f"{pool.name}-{i}"
            labels = {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                "airt.dev/pool": pool.name,
                **pool.labels,
            }
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "labels": labels,
                        "annotations": {"kwok.x-k8s.io/node": "fake"},
                    },
                    "spec": {"taints": [dict(GPU_TAINT)]} if pool.gpu_taint else {},
                    "status": {
                        "capacity": dict(resources),
                        "allocatable": dict(resources),
                    },
                }
            )
    return nodes


def device_classes() -> list[dict[str, Any]]:
    """The NVIDIA DRA driver's DeviceClasses: whole GPUs and MIG slices, by the `type`
    attribute."""
    return [
        {
            "apiVersion": "resource.k8s.io/v1",
            "kind": "DeviceClass",
            "metadata": {"name": name, "labels": {"airt.dev/dev-fixture": "true"}},
            "spec": {
                "selectors": [
                    {
                        "cel": {
                            "expression": f"device.driver == '{DRA_DRIVER}' && "
                            f"device.attributes['{DRA_DRIVER}'].type == '{kind}'"
                        }
                    }
                ]
            },
        }
        for name, kind in (("gpu.nvidia.com", "gpu"), ("mig.nvidia.com", "mig"))
    ]


def _uuid(prefix: str, *parts: object) -> str:
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}-{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _version(text: str) -> str:
    """A semantic version as DRA's `version` attributes want it (8.0 → 8.0.0)."""
    parts = text.split(".")
    return ".".join([*parts, "0", "0"][:3])


def _slug(profile: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", profile.lower())


def _devices(node: str, dra: DraGpus) -> list[dict[str, Any]]:
    common = {
        "productName": {"string": dra.product_name},
        "architecture": {"string": dra.architecture},
        "cudaComputeCapability": {"version": _version(dra.cuda_compute_capability)},
        "driverVersion": {"version": dra.driver_version},
    }
    partitioned = {m.gpu: m for m in dra.mig}
    devices: list[dict[str, Any]] = []
    for i in range(dra.gpus):
        uuid = _uuid("GPU", node, i)
        layout = partitioned.get(i)
        if layout is None:
            devices.append(
                {
                    "name": f"gpu-{i}",
                    "attributes": {
                        "type": {"string": "gpu"},
                        "uuid": {"string": uuid},
                        "index": {"int": i},
                        **common,
                    },
                    "capacity": {"memory": {"value": dra.memory}},
                }
            )
            continue
        for profile, n in layout.profiles.items():
            shape = dra.mig_profiles[profile]
            for j in range(n):
                devices.append(
                    {
                        "name": f"gpu-{i}-mig-{_slug(profile)}-{j}",
                        "attributes": {
                            "type": {"string": "mig"},
                            "uuid": {"string": _uuid("MIG", node, i, profile, j)},
                            "parentUUID": {"string": uuid},
                            "parentIndex": {"int": i},
                            "profile": {"string": profile},
                            **common,
                        },
                        "capacity": {
                            "memory": {"value": shape.memory},
                            "multiprocessors": {"value": str(shape.multiprocessors)},
                        },
                    }
                )
    return devices


def render_resource_slices(pools: list[NodePool]) -> list[dict[str, Any]]:
    """One ResourceSlice per node of each pool with `dra`, as the driver's kubelet plugin
    publishes it (one pool per node, named after the node)."""
    slices: list[dict[str, Any]] = []
    for pool in pools:
        if pool.dra is None:
            continue
        for i in range(pool.count):
            node = f"{pool.name}-{i}"
            slices.append(
                {
                    "apiVersion": "resource.k8s.io/v1",
                    "kind": "ResourceSlice",
                    "metadata": {
                        "name": f"{node}-{DRA_DRIVER}",
                        "labels": {"airt.dev/dev-fixture": "true"},
                    },
                    "spec": {
                        "driver": DRA_DRIVER,
                        "nodeName": node,
                        "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
                        "devices": _devices(node, pool.dra),
                    },
                }
            )
    return slices

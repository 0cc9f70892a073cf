"""Render the fake node pool (tools/cluster/nodepool.yaml) into v1 Node manifests for kwok.

Called by dev/cluster.py when the local cluster comes up. Pure: a typed pool description in,
plain Node dicts out, so the shape of the fake GPU fleet is unit-tested without a cluster.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

GPU_TAINT: dict[str, str] = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


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

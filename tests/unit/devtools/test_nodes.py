"""The fake GPU fleet rendered from tools/cluster/nodepool.yaml looks like real GPU nodes."""

from __future__ import annotations

from pathlib import Path

import yaml

from airt_dev.nodes import (
    GPU_TAINT,
    NodePool,
    device_classes,
    render_nodes,
    render_resource_slices,
)

NODEPOOL = Path(__file__).resolve().parents[3] / "tools" / "cluster" / "nodepool.yaml"


def _nodes() -> list[dict]:  # type: ignore[type-arg]
    pools = [NodePool.model_validate(p) for p in yaml.safe_load(NODEPOOL.read_text())["pools"]]
    return render_nodes(pools)


def test_pool_has_the_fleet_the_issue_describes() -> None:
    nodes = _nodes()
    by_product: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for n in nodes:
        by_product.setdefault(
            n["metadata"]["labels"].get("nvidia.com/gpu.product", "cpu"), []
        ).append(n)
    assert len(by_product["NVIDIA-H100-80GB-HBM3"]) == 2
    assert len(by_product["NVIDIA-A100-SXM4-40GB"]) == 1
    assert len(by_product["NVIDIA-L4"]) == 1
    assert len(by_product["cpu"]) == 2
    for n in by_product["NVIDIA-H100-80GB-HBM3"]:
        assert n["status"]["capacity"]["nvidia.com/gpu"] == "8"
        assert n["status"]["allocatable"] == n["status"]["capacity"]
    mig = by_product["NVIDIA-A100-SXM4-40GB"][0]
    assert "nvidia.com/mig-1g.5gb" in mig["status"]["capacity"]
    assert "nvidia.com/mig-3g.20gb" in mig["status"]["capacity"]
    assert "nvidia.com/gpu" not in mig["status"]["capacity"]
    assert mig["metadata"]["labels"]["nvidia.com/mig.strategy"] == "mixed"


def test_gpu_nodes_are_tainted_and_labelled_like_gpu_feature_discovery() -> None:
    for n in _nodes():
        labels = n["metadata"]["labels"]
        is_gpu = "nvidia.com/gpu.product" in labels
        assert (n["spec"].get("taints") == [GPU_TAINT]) is is_gpu
        if is_gpu:
            for key in ("nvidia.com/gpu.memory", "nvidia.com/gpu.count", "nvidia.com/mig.strategy"):
                assert key in labels
        assert n["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


def test_node_names_are_unique() -> None:
    names = [n["metadata"]["name"] for n in _nodes()]
    assert len(names) == len(set(names)) == 6


def test_gpu_nodes_publish_resource_slices_shaped_like_the_nvidia_dra_driver() -> None:
    pools = [NodePool.model_validate(p) for p in yaml.safe_load(NODEPOOL.read_text())["pools"]]
    slices = {s["spec"]["nodeName"]: s for s in render_resource_slices(pools)}
    assert set(slices) == {"h100-0", "h100-1", "a100-mig-0", "l4-0"}
    h100 = slices["h100-0"]["spec"]
    assert h100["driver"] == "gpu.nvidia.com"
    assert h100["pool"] == {"name": "h100-0", "generation": 1, "resourceSliceCount": 1}
    assert [d["name"] for d in h100["devices"]] == [f"gpu-{i}" for i in range(8)]
    attrs = h100["devices"][0]["attributes"]
    assert attrs["productName"] == {"string": "NVIDIA H100 80GB HBM3"}
    assert attrs["type"] == {"string": "gpu"}
    assert attrs["cudaComputeCapability"] == {"version": "9.0.0"}
    assert attrs["uuid"]["string"].startswith("GPU-")
    assert h100["devices"][0]["capacity"]["memory"] == {"value": "81559Mi"}
    a100 = slices["a100-mig-0"]["spec"]["devices"]
    migs = [d for d in a100 if d["attributes"]["type"]["string"] == "mig"]
    whole = [d for d in a100 if d["attributes"]["type"]["string"] == "gpu"]
    assert [d["name"] for d in whole] == ["gpu-3"]
    profiles = [d["attributes"]["profile"]["string"] for d in migs]
    assert profiles.count("3g.20gb") == 2 and profiles.count("1g.5gb") == 15
    parents = {d["attributes"]["parentUUID"]["string"] for d in migs}
    assert len(parents) == 3
    names = [d["name"] for s in slices.values() for d in s["spec"]["devices"]]
    assert all(len(n) <= 63 and n.replace("-", "").isalnum() for n in names)
    classes = {c["metadata"]["name"]: c for c in device_classes()}
    assert set(classes) == {"gpu.nvidia.com", "mig.nvidia.com"}
    assert "type == 'mig'" in classes["mig.nvidia.com"]["spec"]["selectors"][0]["cel"]["expression"]

"""The fake GPU fleet rendered from tools/cluster/nodepool.yaml looks like real GPU nodes."""

from __future__ import annotations

from pathlib import Path

import yaml

from airt_dev.nodes import GPU_TAINT, NodePool, render_nodes

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

"""GPU placement: resources, ordered product affinity, memory floor, MIG, taints, CPU-only."""

from __future__ import annotations

from typing import Any

from opbuild import context, example, worker_config

from airt_operator.reconcile.build import threads_for
from airt_operator.reconcile.context import GpuPlacement
from airt_operator.reconcile.observe import gpu_fit
from airt_operator.reconcile.render import render


def pod_spec(name: str) -> dict[str, Any]:
    dep = next(c for c in render(context(example(name))) if c["kind"] == "Deployment")
    return dep["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def test_ordered_products_become_required_any_and_preferred_by_rank() -> None:
    pod = pod_spec("cnn-gpu")
    aff = pod["affinity"]["nodeAffinity"]
    required = aff["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert required["matchExpressions"][0] == {
        "key": "nvidia.com/gpu.product",
        "operator": "In",
        "values": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-40GB"],
    }
    preferred = aff["preferredDuringSchedulingIgnoredDuringExecution"]
    weights = [
        (p["preference"]["matchExpressions"][0]["values"][0], p["weight"]) for p in preferred
    ]
    assert weights[0] == ("NVIDIA-H100-80GB-HBM3", 100)
    assert weights[0][1] > weights[1][1] >= 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    config = worker_config(render(context(example("cnn-gpu"))))
    assert config.device == "cuda"
    assert config.device_count == 1  # the replica's GPUs reach the worker
    assert config.dtype == "float16"


def test_minimum_memory_is_a_gt_on_the_memory_label() -> None:
    pod = pod_spec("cnn-4xh100")
    exprs = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"]
    mem = next(e for e in exprs if e["key"] == "nvidia.com/gpu.memory")
    assert mem == {"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": [str(79 * 1024 - 1)]}
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"


def test_mig_slice_asks_for_the_mig_resource_not_whole_gpus() -> None:
    limits = pod_spec("mlp-mig")["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/mig-1g.5gb"] == "1"
    assert "nvidia.com/gpu" not in limits


def test_cpu_models_avoid_gpu_nodes_and_spread_across_nodes() -> None:
    pod = pod_spec("mlp-cpu")
    expr = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"][0]
    assert expr == {"key": "nvidia.com/gpu.product", "operator": "DoesNotExist"}
    assert "tolerations" not in pod
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"


def test_threads_come_from_the_cpu_limit() -> None:
    assert threads_for("500m") == 1
    assert threads_for("2") == 2
    assert threads_for("2500m") == 3


def node(product: str | None, resource: str, count: int, memory: int = 81559) -> dict[str, Any]:
    labels = (
        {"nvidia.com/gpu.product": product, "nvidia.com/gpu.memory": str(memory)} if product else {}
    )
    return {"metadata": {"labels": labels}, "status": {"allocatable": {resource: str(count)}}}


FLEET = [
    node("NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu", 8),
    node("NVIDIA-L4", "nvidia.com/gpu", 2, 23034),
    node("NVIDIA-A100-SXM4-40GB", "nvidia.com/mig-1g.5gb", 22, 40960),
    node(None, "cpu", 16),
]


def test_gpu_fit_tells_apart_why_no_node_fits() -> None:
    assert gpu_fit(GpuPlacement("nvidia.com/gpu", 8, ("NVIDIA-H100-80GB-HBM3",)), FLEET) is None
    too_many = gpu_fit(GpuPlacement("nvidia.com/gpu", 16, ("NVIDIA-H100-80GB-HBM3",)), FLEET)
    assert too_many is not None and "offers 8" in too_many and "16" in too_many
    absent = gpu_fit(GpuPlacement("nvidia.com/gpu", 1, ("NVIDIA-B200",)), FLEET)
    assert absent == "no node of product NVIDIA-B200 exists in the cluster"
    small = gpu_fit(GpuPlacement("nvidia.com/gpu", 1, ("NVIDIA-L4",), 40 * 1024), FLEET)
    assert small is not None and "at least 40960 MiB" in small
    assert gpu_fit(GpuPlacement("nvidia.com/mig-1g.5gb", 1), FLEET) is None
    mig = gpu_fit(GpuPlacement("nvidia.com/mig-7g.40gb", 1), FLEET)
    assert mig == "no node with GPUs offers nvidia.com/mig-7g.40gb"

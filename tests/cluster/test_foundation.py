"""The local control plane is the real thing: scheduler, admission, garbage collector.

Cluster tier: runs against the session cluster (tests/conftest.py). Every wait is on a
condition with a deadline.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airt_dev.cluster import Cluster
from airt_dev.wait import wait_for

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def deployment(name: str, resources: dict[str, str], **pod_spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "example.invalid/x:1",
                            "resources": {"limits": resources},
                        }
                    ],
                    **pod_spec,
                },
            },
        },
    }


def pods_of(cluster: Cluster, ns: str, app: str) -> list[dict[str, Any]]:
    return cluster.get_json("pods", "-n", ns, "-l", f"app={app}")["items"]  # type: ignore[no-any-return]


def ready_pod_node(cluster: Cluster, ns: str, app: str) -> str | None:
    for p in pods_of(cluster, ns, app):
        conds = {c["type"]: c["status"] for c in p.get("status", {}).get("conditions", [])}
        if conds.get("Ready") == "True":
            return p["spec"]["nodeName"]  # type: ignore[no-any-return]
    return None


def node_labels(cluster: Cluster, node: str) -> dict[str, str]:
    return cluster.get_json("node", node)["metadata"]["labels"]  # type: ignore[no-any-return]


def apply(cluster: Cluster, ns: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def test_gpu_pod_is_scheduled_to_a_gpu_node_and_becomes_ready(
    cluster: Cluster, namespace: str
) -> None:
    apply(
        cluster,
        namespace,
        deployment("gpu1", {"nvidia.com/gpu": "1"}, tolerations=[GPU_TOLERATION]),
    )
    node = wait_for(lambda: ready_pod_node(cluster, namespace, "gpu1"), 90, "gpu1 Ready")
    assert node_labels(cluster, node)["nvidia.com/gpu.product"] in {
        "NVIDIA-H100-80GB-HBM3",
        "NVIDIA-L4",
    }


def test_nine_gpus_stay_pending_as_unschedulable(cluster: Cluster, namespace: str) -> None:
    apply(
        cluster,
        namespace,
        deployment("gpu9", {"nvidia.com/gpu": "9"}, tolerations=[GPU_TOLERATION]),
    )

    def unschedulable() -> dict[str, Any] | None:
        for p in pods_of(cluster, namespace, "gpu9"):
            for c in p.get("status", {}).get("conditions", []):
                if (
                    c["type"] == "PodScheduled"
                    and c["status"] == "False"
                    and c.get("reason") == "Unschedulable"
                ):
                    return p
        return None

    pod = wait_for(unschedulable, 90, "gpu9 PodScheduled=False/Unschedulable")
    assert pod["status"]["phase"] == "Pending"
    assert "nvidia.com/gpu" in json.dumps(pod["status"]["conditions"])


def test_mig_slice_lands_on_the_mig_node(cluster: Cluster, namespace: str) -> None:
    apply(
        cluster,
        namespace,
        deployment("mig", {"nvidia.com/mig-1g.5gb": "1"}, tolerations=[GPU_TOLERATION]),
    )
    node = wait_for(lambda: ready_pod_node(cluster, namespace, "mig"), 90, "mig Ready")
    assert node_labels(cluster, node)["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-40GB"


def test_product_affinity_lands_on_the_l4_node(cluster: Cluster, namespace: str) -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "nvidia.com/gpu.product",
                                "operator": "In",
                                "values": ["NVIDIA-L4"],
                            }
                        ]
                    }
                ]
            }
        }
    }
    apply(
        cluster,
        namespace,
        deployment("l4", {"nvidia.com/gpu": "1"}, tolerations=[GPU_TOLERATION], affinity=affinity),
    )
    node = wait_for(lambda: ready_pod_node(cluster, namespace, "l4"), 90, "l4 Ready")
    assert node_labels(cluster, node)["nvidia.com/gpu.product"] == "NVIDIA-L4"


def test_cpu_pod_without_toleration_avoids_gpu_nodes(cluster: Cluster, namespace: str) -> None:
    apply(cluster, namespace, deployment("cpu", {"cpu": "1"}))
    node = wait_for(lambda: ready_pod_node(cluster, namespace, "cpu"), 90, "cpu Ready")
    assert "nvidia.com/gpu.product" not in node_labels(cluster, node)


def test_restricted_namespace_rejects_a_privileged_pod(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "priv"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "example.invalid/x:1",
                    "securityContext": {"privileged": True},
                }
            ]
        },
    }
    proc = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod), check=False)
    assert proc.returncode != 0
    assert "violates PodSecurity" in proc.stderr
    assert "restricted:latest" in proc.stderr


def test_deleting_an_owner_removes_what_it_owns(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = cluster.get_json("configmap", "owner", "-n", namespace)["metadata"]["uid"]
    owned = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "owned",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}
            ],
        },
    }
    apply(cluster, namespace, owned)
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)

    def gone() -> bool:
        proc = cluster.kubectl("get", "configmap", "owned", "-n", namespace, check=False)
        return proc.returncode != 0 and "NotFound" in proc.stderr

    wait_for(gone, 60, "the garbage collector to delete the owned ConfigMap")


def test_kwokctl_would_download_nothing(cluster: Cluster) -> None:
    from airt_dev.cluster import ClusterManager

    # A name with no cluster behind it, so kwokctl prints the full plan of a cold start.
    plan = ClusterManager(name="airt-dryrun").dry_run()
    for binary in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
        assert f"{cluster.bin_dir}/{binary} " in plan or f" {binary} " in plan
    for word in ("curl ", "wget ", "github.com", "dl.k8s.io", "registry.k8s.io", ".tar.gz"):
        assert word not in plan, f"kwokctl would fetch something: {word!r} in its plan"

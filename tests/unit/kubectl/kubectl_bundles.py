"""Hand-built objects in the wire form `kubectl get -o json` prints, for the plugin's unit tests:
a ModelDeployment with chosen conditions, pods with chosen container states, Events, nodes."""

from __future__ import annotations

from typing import Any

NS = "team"


def md(name: str = "m", *conds: tuple[str, str, str, str], **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "airt.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NS, "generation": 1},
        "spec": {"model": {"uri": "pvc://c/m.pt", "format": "torchscript"}, "replicas": 2},
        "status": {
            "observedGeneration": 1,
            "conditions": [
                {"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conds
            ],
            **status,
        },
    }


READY = ("Ready", "True", "Ready", "the model answers on every replica")
AVAILABLE = ("Available", "True", "MinimumReplicasAvailable", "2/2 replicas serve the model")
NOT_DEGRADED = ("Degraded", "False", "AsExpected", "no failures observed")


def pod(
    name: str,
    node: str | None = "cpu-0",
    *,
    init: list[dict[str, Any]] | None = None,
    containers: list[dict[str, Any]] | None = None,
    owner: str = "m",
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"app.kubernetes.io/instance": owner},
        },
        "spec": {"nodeName": node} if node else {},
        "status": {
            "phase": "Running" if node else "Pending",
            "initContainerStatuses": init or [],
            "containerStatuses": containers or [],
        },
    }


def waiting(container: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "name": container,
        "ready": False,
        "state": {"waiting": {"reason": reason, "message": message}},
    }


def terminated(container: str, code: int, message: str = "") -> dict[str, Any]:
    return {
        "name": container,
        "ready": False,
        "state": {"terminated": {"exitCode": code, "reason": "Error", "message": message}},
    }


def event(obj: str, reason: str, message: str, when: str, type_: str = "Warning") -> dict[str, Any]:
    return {
        "type": type_,
        "reason": reason,
        "message": message,
        "lastTimestamp": when,
        "involvedObject": {"kind": "Pod", "name": obj},
    }


def node(
    name: str,
    allocatable: dict[str, str],
    labels: dict[str, str] | None = None,
    gpu_taint: bool = False,
) -> dict[str, Any]:
    taints = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints} if gpu_taint else {},
        "status": {"allocatable": allocatable},
    }

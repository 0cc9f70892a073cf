"""Several operator replicas coordinate through kopf peering: one works, the others stand by.

Cluster tier. Two real `airt-operator run` processes (not standalone) share a KopfPeering in a
namespace they both watch, with the peering CRDs the chart ships. One pauses in favour of the
other; when the active one stops, the standby takes over and reconciles.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airt_dev.cluster import Cluster
from airt_dev.fixtures import apply_files, ensure_fixtures, install_api
from airt_dev.operator_proc import OperatorProcess
from airt_dev.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
PEERING = "airt-test-peering"


def model(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "airt.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": "pvc://airt-models/mlp/model.pt", "format": "torchscript"},
            "runtime": {"name": "torch-cpu"},
        },
    }


@pytest.fixture
def replicas(cluster: Cluster, tmp_path: Path) -> Iterator[tuple[str, list[OperatorProcess]]]:
    ns = f"peer-{uuid.uuid4().hex[:6]}"
    apply_files(cluster, ROOT / "charts" / "airt" / "crds")  # kopf's peering CRDs
    install_api(cluster)
    cluster.kubectl("create", "namespace", ns)
    ensure_fixtures(cluster, ns)
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": PEERING}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(peering))
    env = {"AIRT_OPERATOR_PEERING_NAME": PEERING}
    ops = [
        OperatorProcess.start(
            cluster.kubeconfig, tmp_path / f"op{i}.log", (ns,), standalone=False, extra_env=env
        )
        for i in range(2)
    ]
    try:
        yield ns, ops
    finally:
        for op in ops:
            op.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def reconciled(cluster: Cluster, ns: str, name: str) -> bool:
    return cluster.kubectl("get", "deployment", name, "-n", ns, check=False).returncode == 0


def test_one_replica_works_and_the_standby_takes_over(
    cluster: Cluster, replicas: tuple[str, list[OperatorProcess]]
) -> None:
    ns, ops = replicas

    def both_registered() -> bool:
        peers = cluster.get_json("kopfpeering", PEERING, "-n", ns).get("status") or {}
        return len(peers) == 2

    wait_for(both_registered, 60, "both replicas in the KopfPeering")

    # The highest priority in the peering is the one that works; each replica logs its own.
    peers = cluster.get_json("kopfpeering", PEERING, "-n", ns)["status"]
    top = max(int(p["priority"]) for p in peers.values())
    active = next(op for op in ops if f"with priority {top}" in op.log_path.read_text())
    standby = [op for op in ops if op is not active]

    def settled() -> bool:
        # kopf starts every peer paused; "Resuming" when no peer is above it, "Pausing" when
        # one appears. The last of the two says where a replica stands.
        def last(op: OperatorProcess) -> str:
            lines = [
                line
                for line in op.log_path.read_text().splitlines()
                if "Resuming operations" in line or "Pausing operations" in line
            ]
            return lines[-1] if lines else ""

        return "Resuming" in last(active) and "Resuming" not in last(standby[0])

    wait_for(settled, 60, "the top-priority replica to work and the other to stand by")

    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(model("first")))
    wait_for(lambda: reconciled(cluster, ns, "first"), 60, "the active replica to reconcile")
    assert "applying Deployment" in active.log_path.read_text()
    assert "applying Deployment" not in standby[0].log_path.read_text()

    active.stop()  # leaves the peering on the way out
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(model("second")))
    wait_for(lambda: reconciled(cluster, ns, "second"), 120, "the standby to take over")
    assert "applying Deployment" in standby[0].log_path.read_text()

"""ServiceMonitors: created against the real prometheus-operator CRD, and only when they should be.

Cluster tier. The ServiceMonitor CRD comes from the prometheus-operator Go module's own
`example/prometheus-operator-crd/` files (dev/thirdparty.py), so the API server validates what
the operator renders against the real schema. The module removes the CRD again when done.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from namespaces import fresh_namespace

from airt_dev.cluster import Cluster
from airt_dev.operator_proc import OperatorProcess
from airt_dev.thirdparty import prometheus_operator_crd
from airt_dev.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
SM_CRD = "servicemonitors.monitoring.coreos.com"


def model(name: str, monitoring: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"uri": "pvc://airt-models/mlp/model.pt", "format": "torchscript"},
        "runtime": {"name": "torch-cpu"},
    }
    if monitoring:
        spec["monitoring"] = {"serviceMonitor": monitoring}
    return {
        "apiVersion": "airt.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": spec,
    }


def crd_present(cluster: Cluster) -> bool:
    return cluster.kubectl("get", "crd", SM_CRD, check=False).returncode == 0


@pytest.fixture(scope="module")
def env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    assert not crd_present(cluster), "another test left the ServiceMonitor CRD installed"
    with fresh_namespace(cluster, "mon") as ns:
        log = tmp_path_factory.mktemp("operator") / "operator.log"
        op = OperatorProcess.start(cluster.kubeconfig, log, namespaces=(ns,))
        try:
            yield {"ns": ns, "op": op}
        finally:
            op.stop()
            cluster.kubectl("delete", "crd", SM_CRD, "--ignore-not-found", check=False)


def reconciled(cluster: Cluster, ns: str, name: str) -> bool:
    md = cluster.get_json("md", name, "-n", ns)
    st = md.get("status") or {}
    return bool(st.get("observedGeneration") == md["metadata"]["generation"] and st.get("url"))


def test_no_service_monitor_without_the_crd(cluster: Cluster, env: dict[str, Any]) -> None:
    ns = env["ns"]
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(model("before-crd")))
    wait_for(lambda: reconciled(cluster, ns, "before-crd"), 60, "before-crd reconciled")
    assert cluster.kubectl("get", "deployment", "before-crd", "-n", ns, check=False).returncode == 0
    assert not crd_present(cluster)
    # Nothing was attempted either: the operator counts every child it applies, by kind.
    assert 'kind="ServiceMonitor"' not in env["op"].metrics()


def test_service_monitor_appears_with_the_real_crd(cluster: Cluster, env: dict[str, Any]) -> None:
    ns = env["ns"]
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(prometheus_operator_crd("servicemonitors")),
    )
    cluster.wait_crds_established(SM_CRD)

    def service_monitor() -> dict[str, Any] | None:
        proc = cluster.kubectl(
            "get", "servicemonitor", "before-crd", "-n", ns, "-o", "json", check=False
        )
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    # The model that existed before the CRD gets its ServiceMonitor once the CRD appears.
    sm = wait_for(service_monitor, 60, "a ServiceMonitor for before-crd")
    assert sm["metadata"]["ownerReferences"][0]["kind"] == "ModelDeployment"
    endpoint = sm["spec"]["endpoints"][0]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert sm["spec"]["selector"]["matchLabels"]["airt.dev/modeldeployment"] == "before-crd"
    svc = cluster.get_json("service", "before-crd", "-n", ns)
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()


def test_monitoring_disabled_means_no_service_monitor(
    cluster: Cluster, env: dict[str, Any]
) -> None:
    ns = env["ns"]
    assert crd_present(cluster)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(model("quiet", "disabled")))
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(model("loud", "enabled")))
    wait_for(lambda: reconciled(cluster, ns, "quiet"), 60, "quiet reconciled")
    wait_for(
        lambda: (
            cluster.kubectl("get", "servicemonitor", "loud", "-n", ns, check=False).returncode == 0
        ),
        60,
        "a ServiceMonitor for loud",
    )
    assert cluster.kubectl("get", "servicemonitor", "quiet", "-n", ns, check=False).returncode != 0
    # Turning monitoring off later removes the ServiceMonitor it had.
    patch = json.dumps({"spec": {"monitoring": {"serviceMonitor": "disabled"}}})
    cluster.kubectl("patch", "md", "loud", "-n", ns, "--type=merge", "-p", patch)
    wait_for(
        lambda: (
            cluster.kubectl("get", "servicemonitor", "loud", "-n", ns, check=False).returncode != 0
        ),
        60,
        "loud's ServiceMonitor to be removed",
    )

"""The operator never takes over an object it does not own.

Cluster tier, against the real control plane, garbage collector included, and the real
`airt-operator run` process. An unlabelled Service and ServiceAccount that share a
ModelDeployment's name are invisible to the operator's watches; before they were read first,
server-side apply with force rewrote them and added an ownerReference, and deleting the
ModelDeployment garbage-collected them. Now the ModelDeployment reports Degraded/ChildConflict
naming them, they are untouched and outlive it, and once they are gone the model converges
without any event about them (the conflict is retried with backoff).
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
from airt_dev.wait import wait_for


@pytest.fixture(scope="module")
def env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with fresh_namespace(cluster, "own") as ns:
        log = tmp_path_factory.mktemp("operator") / "operator.log"
        op = OperatorProcess.start(cluster.kubeconfig, log, namespaces=(ns,))
        try:
            yield {"ns": ns, "op": op}
        finally:
            op.stop()


def _model(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "airt.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": "pvc://airt-models/mlp/model.pt", "format": "torchscript"},
            "runtime": {"name": "torch-cpu"},
            "resources": {"cpu": "10m", "memory": "64Mi"},
        },
    }


def _foreign(cluster: Cluster, ns: str, name: str) -> None:
    """A hand-made Service and ServiceAccount: no labels, no owner."""
    items = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": "web", "port": 80}], "selector": {"app": "theirs"}},
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}},
    ]
    for item in items:
        cluster.kubectl("create", "-f", "-", input=json.dumps(item))


def _condition(cluster: Cluster, ns: str, name: str, type_: str) -> dict[str, Any] | None:
    md = cluster.get_json("md", name, "-n", ns)
    for c in (md.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c  # type: ignore[no-any-return]
    return None


def _exists(cluster: Cluster, kind: str, ns: str, name: str) -> bool:
    return cluster.kubectl("get", kind, name, "-n", ns, check=False).returncode == 0


def _conflicted(cluster: Cluster, ns: str, name: str) -> dict[str, Any] | None:
    c = _condition(cluster, ns, name, "Degraded")
    return c if c and c["status"] == "True" and c["reason"] == "ChildConflict" else None


def test_a_foreign_namesake_is_reported_untouched_and_survives_the_model(
    cluster: Cluster, env: dict[str, Any], tmp_path: Path
) -> None:
    ns, name = env["ns"], "taken"
    _foreign(cluster, ns, name)
    before = cluster.get_json("service", name, "-n", ns)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(_model(name)))

    cond = wait_for(lambda: _conflicted(cluster, ns, name), 60, "Degraded=ChildConflict")
    assert f"Service {ns}/{name}" in cond["message"], cond
    assert f"ServiceAccount {ns}/{name}" in cond["message"], cond
    ready = _condition(cluster, ns, name, "Ready")
    assert ready is not None and ready["status"] == "False"
    events = cluster.get_json(
        "events", "-n", ns, "--field-selector", f"involvedObject.name={name},reason=ChildConflict"
    )["items"]
    assert events and events[0]["type"] == "Warning"
    # Untouched: same resourceVersion, no owner; and nothing else of the set was created.
    after = cluster.get_json("service", name, "-n", ns)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert "ownerReferences" not in cluster.get_json("serviceaccount", name, "-n", ns)["metadata"]
    assert not _exists(cluster, "deployment", ns, name)

    cluster.kubectl("delete", "md", name, "-n", ns, "--wait=true", "--timeout=60s")
    # The garbage collector has nothing to take: neither object ever named the model as owner.
    assert _exists(cluster, "service", ns, name) and _exists(cluster, "serviceaccount", ns, name)
    assert cluster.get_json("service", name, "-n", ns)["spec"]["selector"] == {"app": "theirs"}


def test_the_model_converges_once_the_foreign_objects_are_gone(
    cluster: Cluster, env: dict[str, Any]
) -> None:
    ns, name = env["ns"], "freed"
    _foreign(cluster, ns, name)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(_model(name)))
    wait_for(lambda: _conflicted(cluster, ns, name), 60, "Degraded=ChildConflict")
    # No event about these objects reaches the operator (they carry none of its labels):
    # only its retry with backoff can notice that they went away.
    cluster.kubectl("delete", "service,serviceaccount", name, "-n", ns)

    def ready() -> bool:
        c = _condition(cluster, ns, name, "Ready")
        return bool(c and c["status"] == "True")

    wait_for(ready, 90, f"{name} Ready after the conflict cleared")
    svc = cluster.get_json("service", name, "-n", ns)
    refs = svc["metadata"]["ownerReferences"]
    assert [r["kind"] for r in refs] == ["ModelDeployment"]

"""The operator converges through control-plane faults and loses nothing on the way.

Cluster tier, on the real control plane with the real `airt-operator run` process; small,
bounded versions of the runs in bench/faults.py (whose figures are in docs/reliability.md):

- injected API errors (500, 429, 409, reset connections) through a fault-injecting proxy in
  front of the API server: the model still becomes Ready, the status says that the operator is
  retrying while the errors persist, and no Event is lost; a child the API server always
  refuses, or always fails with a 500, gives a reason in status and a bounded number of
  attempts;
- kube-apiserver killed during drift repair and a status-changing spec edit: /healthz fails
  while it is away, and afterwards the drift is repaired and the status and its Event written;
- the operator SIGKILLed while it creates many models, then started again: every model Ready,
  no duplicate and no orphaned child.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from namespaces import fresh_namespace

from airt_dev.cluster import Cluster
from airt_dev.faults import ControlPlane, Fault, FaultProxy
from airt_dev.fixtures import example_copies
from airt_dev.operator_proc import OperatorProcess
from airt_dev.wait import observe_for, wait_for

# A short backoff cap keeps the bounded versions short; bench/faults.py runs the default (60 s).
FAST_RETRY = {"AIRT_OPERATOR_RETRY_MAX_SECONDS": "8"}


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    with fresh_namespace(cluster, "fault") as ns:
        yield ns


def _model(name: str, runtime: str = "torch-cpu") -> dict[str, Any]:
    return {
        "apiVersion": "airt.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": "pvc://airt-models/mlp/model.pt", "format": "torchscript"},
            "runtime": {"name": runtime},
            "resources": {"cpu": "10m", "memory": "64Mi"},
        },
    }


def _apply(cluster: Cluster, ns: str, *items: dict[str, Any]) -> None:
    cluster.apply_objects(list(items), ns)


def _condition(md: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (md.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c  # type: ignore[no-any-return]
    return {}


def _md(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return cluster.get_json("md", name, "-n", ns)  # type: ignore[no-any-return]


def _ready(cluster: Cluster, ns: str, name: str) -> bool:
    return _condition(_md(cluster, ns, name), "Ready").get("status") == "True"


def _events(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    items = cluster.get_json("events", "-n", ns, "--field-selector", f"involvedObject.name={name}")
    return items["items"]  # type: ignore[no-any-return]


def test_injected_api_errors_back_off_explain_and_lose_nothing(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    proxy = FaultProxy(cluster).start()
    deploy = rf"/namespaces/{ns}/deployments/%s\b"
    proxy.add(
        # flaky: its Deployment's apply fails four times in a row, in four different ways ...
        *(Fault("PATCH", deploy % "flaky", status, times=1) for status in (500, 429, 409, 0)),
        # ... and its first status write and the first Events are refused too.
        Fault("PATCH", rf"/namespaces/{ns}/modeldeployments/flaky/status", 500, times=1),
        Fault("POST", rf"/namespaces/{ns}/events", 503, times=2),
        # never: the API server always refuses its Deployment as invalid.
        Fault("PATCH", deploy % "never", 422),
        # stuck: its Deployment's apply always fails in a way worth retrying.
        Fault("PATCH", deploy % "stuck", 500),
    )
    op = OperatorProcess.start(
        proxy.kubeconfig(tmp_path / "proxy.kubeconfig"),
        tmp_path / "operator.log",
        namespaces=(ns,),
        extra_env=FAST_RETRY,
    )
    try:
        _apply(cluster, ns, _model("flaky"), _model("never"), _model("stuck"))
        try:
            wait_for(lambda: _ready(cluster, ns, "flaky"), 90, "flaky Ready despite the faults")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{op.log_tail(30)}") from None
        assert proxy.count("PATCH", deploy % "flaky") >= 5  # four refusals, then success
        # While the errors lasted, the status said so (Degraded=ApplyFailed, "retrying"), and
        # every Event reached the API server, the refused ones included.
        events = _events(cluster, ns, "flaky")
        reasons = [(e["type"], e["reason"]) for e in events]
        retrying = [
            e for e in events if e["reason"] == "ApplyFailed" and "retrying" in e["message"]
        ]
        assert retrying and retrying[0]["type"] == "Warning", reasons
        assert ("Normal", "Ready") in reasons and ("Normal", "AsExpected") in reasons, reasons

        def refused() -> dict[str, Any]:
            c = _condition(_md(cluster, ns, "never"), "Degraded")
            return c if c.get("reason") == "ApplyFailed" and "422" in c["message"] else {}

        cond = wait_for(refused, 60, "never to report the refusal")
        assert cond["status"] == "True"
        assert _condition(_md(cluster, ns, "never"), "Ready")["status"] == "False"

        def retrying() -> dict[str, Any]:
            c = _condition(_md(cluster, ns, "stuck"), "Degraded")
            return c if c.get("reason") == "ApplyFailed" and "retrying" in c["message"] else {}

        wait_for(retrying, 60, "stuck to say that it is retrying")
        # A child the API server refuses, or keeps failing, is retried with doubling delays (at
        # most 8 s apart here), not in a hot loop: the status the operator writes after each
        # failure ("retrying after N failed attempts") must not run the model again at once.
        before = {m: proxy.count("PATCH", deploy % m) for m in ("never", "stuck")}
        observe_for(8)
        for m, n in before.items():
            attempts = proxy.count("PATCH", deploy % m) - n
            assert attempts <= 4, f"{attempts} applies of {m}'s failing child in 8 s"
    finally:
        op.stop()
        proxy.stop()


def test_api_server_killed_during_drift_repair_and_status_writes(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    op = OperatorProcess.start(
        cluster.kubeconfig, tmp_path / "operator.log", namespaces=(ns,), extra_env=FAST_RETRY
    )
    plane = ControlPlane(cluster)
    apiserver = plane["kube-apiserver"]
    try:
        _apply(cluster, ns, _model("drift"), _model("edit"))

        def repaired() -> bool:
            got = cluster.kubectl("get", "service", "drift", "-n", ns, "-o", "json", check=False)
            return got.returncode == 0 and bool(
                json.loads(got.stdout)["metadata"].get("ownerReferences")
            )

        def resolved() -> bool:
            c = _condition(_md(cluster, ns, "edit"), "RuntimeResolved")
            return c.get("status") == "True"

        # Reconciled once (no need to wait for Ready: the pods are not what this is about).
        wait_for(repaired, 60, "drift's Service")
        wait_for(resolved, 60, "edit reconciled")
        # Drift, and a spec edit whose status has to change (the runtime no longer exists),
        # then the API server goes away before, during or after the operator's writes.
        cluster.kubectl("delete", "service", "drift", "-n", ns)
        _apply(cluster, ns, _model("edit", runtime="gone-runtime"))
        apiserver.kill()
        try:
            wait_for(lambda: not op.healthy(), 45, "the operator's /healthz to fail")
        finally:
            apiserver.start()
            apiserver.wait_ready()
            plane.revive()  # the controller manager and scheduler may have lost their leases
        wait_for(op.healthy, 60, "the operator's /healthz to recover")
        wait_for(repaired, 60, "the deleted Service to be put back")

        def edited() -> dict[str, Any]:
            md = _md(cluster, ns, "edit")
            c = _condition(md, "RuntimeResolved")
            done = md["status"].get("observedGeneration") == md["metadata"]["generation"]
            return c if done and c.get("reason") == "RuntimeNotFound" else {}

        wait_for(edited, 60, "edit's status to name the missing runtime")
        wait_for(
            lambda: any(e["reason"] == "RuntimeNotFound" for e in _events(cluster, ns, "edit")),
            60,
            "the RuntimeNotFound Event",
        )
    finally:
        plane.revive()
        apiserver.wait_ready()
        op.stop()


def test_operator_killed_while_creating_many_models(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    ns, n = namespace, 6
    models = example_copies(n, "burst", cpu="10m", memory="64Mi")
    cluster.apply_objects(models, ns)
    first = OperatorProcess.start(cluster.kubeconfig, tmp_path / "first.log", namespaces=(ns,))

    def some_deployments() -> bool:
        return len(cluster.get_json("deployments", "-n", ns)["items"]) >= 3

    wait_for(some_deployments, 60, "the first operator to be part-way through")
    first.kill()
    second = OperatorProcess.start(cluster.kubeconfig, tmp_path / "second.log", namespaces=(ns,))
    try:
        names = [m["metadata"]["name"] for m in models]

        def all_ready() -> bool:
            items = cluster.get_json("md", "-n", ns)["items"]
            return sum(_condition(m, "Ready").get("status") == "True" for m in items) == n

        try:
            wait_for(all_ready, 180, f"all {n} Ready after the restart")
        except AssertionError as exc:
            items = cluster.get_json("md", "-n", ns)["items"]
            late = {m["metadata"]["name"]: _condition(m, "Ready") for m in items}
            late = {k: v for k, v in late.items() if v.get("status") != "True"}
            raise AssertionError(
                f"{exc}\n{json.dumps(late, indent=1)}\n{second.log_tail(20)}"
            ) from None
        uids = {
            m["metadata"]["name"]: m["metadata"]["uid"]
            for m in cluster.get_json("md", "-n", ns)["items"]
        }
        for kind in ("deployments", "services", "serviceaccounts", "networkpolicies"):
            items = cluster.get_json(
                kind, "-n", ns, "-l", "app.kubernetes.io/managed-by=airt-operator"
            )["items"]
            owners = sorted(
                (i["metadata"]["name"], [r["uid"] for r in i["metadata"]["ownerReferences"]])
                for i in items
            )
            # One of each per model, each owned by its model and nothing else: no duplicate,
            # no orphan.
            assert owners == sorted((name, [uids[name]]) for name in names), kind
        # One rollout per model: a restarted operator re-applying a changed template would
        # have made a second ReplicaSet.
        replicasets = cluster.get_json("replicasets", "-n", ns)["items"]
        assert len(replicasets) == n
    finally:
        second.stop()

"""DRA placement against the real control plane: the real kube-scheduler allocates the claims
the operator's ResourceClaimTemplates make, from the fake GPU pool's ResourceSlices (shaped like
the NVIDIA DRA driver's); kwok runs the pods.

Cluster tier. The operator is the real `airt-operator run` process scoped to this module's
namespace, in its default placement (`auto`, which is DRA here: the pool publishes the NVIDIA
DeviceClasses). Tests run in file order and share the pool, so each frees what it took.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from airt_dev.audit import read_writes, summarize
from airt_dev.cluster import Cluster
from airt_dev.fixtures import ensure_fixtures, install_api
from airt_dev.operator_proc import OperatorProcess
from airt_dev.wait import observe_for, wait_for

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-40GB"
L4 = "NVIDIA-L4"


def md(name: str, gpu: dict[str, Any], replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "airt.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": "pvc://airt-models/mlp/model.pt", "format": "torchscript"},
            "runtime": {"name": "torch-cuda"},
            "replicas": replicas,
            "resources": {"cpu": "1", "memory": "1Gi", "gpu": gpu},
        },
    }


def _foreign_allocated_claims(cluster: Cluster, ns: str) -> list[str]:
    items = cluster.get_json("resourceclaims", "-A")["items"]
    return [
        f"{c['metadata']['namespace']}/{c['metadata']['name']}"
        for c in items
        if c["metadata"]["namespace"] != ns and (c.get("status") or {}).get("allocation")
    ]


@pytest.fixture(scope="module")
def env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ns = f"dra-{uuid.uuid4().hex[:6]}"
    install_api(cluster)
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    ensure_fixtures(cluster, ns)
    # Devices another module's pods still hold would make the counts below wrong.
    wait_for(
        lambda: not _foreign_allocated_claims(cluster, ns),
        120,
        "no other namespace to hold allocated GPU claims",
    )
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    op = OperatorProcess.start(cluster.kubeconfig, log, namespaces=(ns,))
    try:
        yield {"ns": ns, "op": op}
    finally:
        op.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        cluster.kubectl(
            "delete", "pv", "-l", "airt.dev/dev-fixture=true", "--wait=false", check=False
        )


@pytest.fixture(autouse=True)
def free_devices(cluster: Cluster, env: dict[str, Any]) -> Iterator[None]:
    """Every test starts with the pool free: whatever a test leaves (a failed one included) is
    deleted, and its claims gone, before the next one."""
    yield
    ns = env["ns"]
    cluster.kubectl("delete", "md", "--all", "-n", ns, "--wait=false", check=False)
    wait_for(
        lambda: not cluster.get_json("resourceclaims", "-n", ns)["items"],
        90,
        "the module's claims to be released",
    )


def apply(cluster: Cluster, ns: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(obj))


def get_md(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return cluster.get_json("md", name, "-n", ns)  # type: ignore[no-any-return]


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c  # type: ignore[no-any-return]
    return None


def placed(cluster: Cluster, ns: str, name: str, replicas: int) -> list[dict[str, Any]] | None:
    """The status's per-replica devices once every replica has them (None until then)."""
    st = get_md(cluster, ns, name).get("status") or {}
    devices = st.get("replicaDevices") or []
    # A claim can be allocated a moment before its pod shows the node it was bound to.
    done = len(devices) == replicas and all(d.get("node") for d in devices)
    return devices if done else None


def wait_placed(cluster: Cluster, ns: str, name: str, replicas: int) -> list[dict[str, Any]]:
    return wait_for(  # type: ignore[no-any-return]
        lambda: placed(cluster, ns, name, replicas), 90, f"{replicas} replica(s) of {name} placed"
    )


def delete_and_wait_gone(cluster: Cluster, ns: str, name: str) -> None:
    cluster.kubectl("delete", "md", name, "-n", ns, "--wait=false")

    def gone() -> bool:
        claims = cluster.get_json(
            "resourceclaims", "-n", ns, "-l", f"airt.dev/modeldeployment={name}"
        )["items"]
        pods = cluster.get_json("pods", "-n", ns, "-l", f"airt.dev/modeldeployment={name}")
        templates = cluster.kubectl("get", "resourceclaimtemplate", name, "-n", ns, check=False)
        return not claims and not pods["items"] and templates.returncode != 0

    wait_for(gone, 90, f"{name}'s pods, claims and claim template to be garbage-collected")


def test_the_operator_renders_a_claim_template_and_the_scheduler_allocates_it(
    cluster: Cluster, env: dict[str, Any]
) -> None:
    ns = env["ns"]
    apply(cluster, ns, md("one-l4", {"products": [L4]}))
    (replica,) = wait_placed(cluster, ns, "one-l4", 1)
    assert replica["product"] == L4 and replica["node"] == "l4-0"
    assert replica["devices"][0] in {"gpu-0", "gpu-1"} and replica["alternative"] == 0
    tpl = cluster.get_json("resourceclaimtemplate", "one-l4", "-n", ns)
    owner = get_md(cluster, ns, "one-l4")["metadata"]["uid"]
    assert [r["uid"] for r in tpl["metadata"]["ownerReferences"]] == [owner]
    st = get_md(cluster, ns, "one-l4")["status"]
    assert st["gpuPlacement"] == "dra" and st["gpuProduct"] == L4
    pod = cluster.get_json("pods", "-n", ns, "-l", "airt.dev/modeldeployment=one-l4")["items"][0]
    assert pod["spec"]["resourceClaims"][0]["resourceClaimTemplateName"] == "one-l4"
    limits = pod["spec"]["containers"][0]["resources"].get("limits", {})
    assert not any(k.startswith("nvidia.com/") for k in limits)
    printed = cluster.kubectl("get", "md", "one-l4", "-n", ns).stdout.splitlines()
    assert "ALLOCATED" in printed[0] and L4 in printed[1]
    delete_and_wait_gone(cluster, ns, "one-l4")


def test_replicas_fall_back_in_order_and_stay_when_the_first_product_frees_up(
    cluster: Cluster, env: dict[str, Any]
) -> None:
    ns = env["ns"]
    # Every H100 of the pool (2 nodes x 8) taken.
    apply(cluster, ns, md("h100-hog", {"count": 8, "products": [H100]}, replicas=2))
    hog = wait_placed(cluster, ns, "h100-hog", 2)
    assert {r["node"] for r in hog} == {"h100-0", "h100-1"}
    # H100, else A100 (the A100 node has one whole GPU), else L4 (two).
    apply(cluster, ns, md("pref", {"products": [H100, A100, L4]}, replicas=3))
    got = wait_placed(cluster, ns, "pref", 3)
    assert sorted((r["product"], r["alternative"]) for r in got) == [
        (A100, 1),
        (L4, 2),
        (L4, 2),
    ], got
    a100 = next(r for r in got if r["product"] == A100)
    assert a100["node"] == "a100-mig-0" and a100["devices"] == ["gpu-3"]
    assert get_md(cluster, ns, "pref")["status"]["gpuProduct"] == f"{L4} (2), {A100} (1)"
    uids = {
        p["metadata"]["uid"]
        for p in cluster.get_json("pods", "-n", ns, "-l", "airt.dev/modeldeployment=pref")["items"]
    }
    # Freeing the first product moves nothing that runs...
    delete_and_wait_gone(cluster, ns, "h100-hog")
    observe_for(5)
    assert placed(cluster, ns, "pref", 3) == got
    now = cluster.get_json("pods", "-n", ns, "-l", "airt.dev/modeldeployment=pref")["items"]
    assert {p["metadata"]["uid"] for p in now} == uids
    # ...and a new replica gets it.
    cluster.kubectl("scale", "md", "pref", "-n", ns, "--replicas=4")
    four = wait_placed(cluster, ns, "pref", 4)
    new = [r for r in four if r not in got]
    assert [(r["product"], r["alternative"]) for r in new] == [(H100, 0)], four
    delete_and_wait_gone(cluster, ns, "pref")


def test_memory_floor_excludes_smaller_devices(cluster: Cluster, env: dict[str, Any]) -> None:
    ns = env["ns"]
    # L4 first, but its 22.5 GiB are below the floor: every replica gets an H100.
    apply(cluster, ns, md("big", {"products": [L4, H100], "minMemoryGiB": 30}, replicas=2))
    got = wait_placed(cluster, ns, "big", 2)
    assert [(r["product"], r["alternative"]) for r in got] == [(H100, 1), (H100, 1)], got
    delete_and_wait_gone(cluster, ns, "big")


def test_mig_profiles_are_allocated_on_the_a100_node_and_busy_when_taken(
    cluster: Cluster, env: dict[str, Any]
) -> None:
    ns = env["ns"]
    apply(cluster, ns, md("slices", {"mig": "3g.20gb"}, replicas=2))
    got = wait_placed(cluster, ns, "slices", 2)
    assert {r["node"] for r in got} == {"a100-mig-0"}
    assert {(r["product"], r["mig"]) for r in got} == {(A100, "3g.20gb")}
    assert sorted(d for r in got for d in r["devices"]) == [
        "gpu-0-mig-3g20gb-0",
        "gpu-1-mig-3g20gb-0",
    ]
    # The pool has two 3g.20gb slices: a third replica waits for one.
    cluster.kubectl("scale", "md", "slices", "-n", ns, "--replicas=3")

    def busy() -> dict[str, Any] | None:
        c = condition(get_md(cluster, ns, "slices"), "Scheduled")
        return c if c and c["reason"] == "DevicesBusy" else None

    c = wait_for(busy, 60, "Scheduled=False with reason DevicesBusy")
    assert c["status"] == "False" and "none that fits is free" in c["message"]
    delete_and_wait_gone(cluster, ns, "slices")


def test_a_request_no_device_can_satisfy_says_which_selector_within_10s(
    cluster: Cluster, env: dict[str, Any]
) -> None:
    ns = env["ns"]
    apply(cluster, ns, md("b200", {"products": ["NVIDIA-B200"]}))

    def no_match() -> dict[str, Any] | None:
        c = condition(get_md(cluster, ns, "b200"), "Scheduled")
        return c if c and c["reason"] == "NoMatchingDevices" else None

    c = wait_for(no_match, 10, "Scheduled=False with reason NoMatchingDevices")
    assert c["status"] == "False"
    assert "productName" in c["message"] and "'nvidia-b200'" in c["message"], c["message"]
    big = md("huge", {"alternatives": [{"count": 4, "product": L4}, {"minMemoryGiB": 200}]})
    apply(cluster, ns, big)
    c = wait_for(
        lambda: (
            (x := condition(get_md(cluster, ns, "huge"), "Scheduled"))
            and x["reason"] == "NoMatchingDevices"
            and x
        ),
        10,
        "NoMatchingDevices for huge",
    )
    assert "alternative 1 (4x NVIDIA-L4): at most 2 matching" in c["message"]
    assert "quantity('200Gi')" in c["message"]
    for name in ("b200", "huge"):
        delete_and_wait_gone(cluster, ns, name)


def test_placed_models_write_nothing_in_steady_state(cluster: Cluster, env: dict[str, Any]) -> None:
    ns = env["ns"]
    apply(
        cluster,
        ns,
        md("steady", {"alternatives": [{"count": 2, "product": L4}, {"product": H100}]}, 2),
    )
    apply(cluster, ns, md("steady-mig", {"mig": "1g.5gb", "products": [A100]}, 2))
    steady = wait_placed(cluster, ns, "steady", 2)
    assert sorted((r["product"], len(r["devices"])) for r in steady) == [(H100, 1), (L4, 2)]
    wait_placed(cluster, ns, "steady-mig", 2)

    def quiet_for_5s() -> bool:
        since = datetime.now(UTC).timestamp() - 5
        writes = read_writes(cluster.audit_log)
        return not any(w.when.timestamp() > since and w.namespace in (ns, "") for w in writes)

    wait_for(quiet_for_5s, 120, "the operator's writes to settle")
    start = datetime.now(UTC)
    observe_for(20)
    writes = [w for w in read_writes(cluster.audit_log, since=start) if w.namespace in (ns, "")]
    assert writes == [], f"writes in steady state: {summarize(writes)}"
    for name in ("steady", "steady-mig"):
        delete_and_wait_gone(cluster, ns, name)


def test_a_changed_request_replaces_the_immutable_claim_template(
    cluster: Cluster, env: dict[str, Any]
) -> None:
    ns = env["ns"]
    first = md("change", {"products": [L4]})
    apply(cluster, ns, first)
    wait_placed(cluster, ns, "change", 1)
    second = copy.deepcopy(first)
    second["spec"]["resources"]["gpu"] = {"products": [H100]}
    apply(cluster, ns, second)

    def on_h100() -> bool:
        got = placed(cluster, ns, "change", 1)
        return bool(got and got[0]["product"] == H100)

    wait_for(on_h100, 90, "the replica to move to an H100 with the new template")
    tpl = cluster.get_json("resourceclaimtemplate", "change", "-n", ns)
    text = json.dumps(tpl["spec"])
    assert "nvidia-h100-80gb-hbm3" in text and "nvidia-l4" not in text
    delete_and_wait_gone(cluster, ns, "change")

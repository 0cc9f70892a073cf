"""The operator against the real control plane: examples to Ready, placement, drift, status.

Cluster tier. The operator is the real `airt-operator run` process (dev/operator_proc.py),
scoped to this module's namespaces so it never touches other tests' objects, and places GPUs
with the device plugin (DRA placement has its own module, test_dra.py). The examples go
into a namespace that enforces Pod Security `restricted`, so every pod the operator renders
must pass the real admission plugin. Writes are counted from the API server's audit log.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from airt_dev.audit import read_writes, summarize
from airt_dev.cluster import Cluster
from airt_dev.fixtures import apply_files, ensure_fixtures, install_api
from airt_dev.operator_proc import OperatorProcess
from airt_dev.wait import observe_for, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "deployments").glob("*.yaml"))
RUNTIMES = ROOT / "examples" / "runtimes"
CHILD_KINDS = ["serviceaccount", "service", "networkpolicy", "deployment"]


def _examples() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in EXAMPLES]


@pytest.fixture(scope="module")
def env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ns = f"op-{uuid.uuid4().hex[:6]}"
    extra = f"{ns}-x"
    install_api(cluster)
    for name in (ns, extra):
        cluster.kubectl("create", "namespace", name)
        cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
        ensure_fixtures(cluster, name)
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    # The device plugin's placement, pinned: the local pool also publishes the NVIDIA DRA
    # driver's DeviceClasses, which would make `auto` mean DRA (tests/cluster/test_dra.py).
    op = OperatorProcess.start(
        cluster.kubeconfig,
        log,
        namespaces=(ns, extra),
        extra_env={"AIRT_OPERATOR_GPU_PLACEMENT": "devicePlugin"},
    )
    apply_files(cluster, *EXAMPLES, namespace=ns)
    try:
        yield {"ns": ns, "extra": extra, "op": op}
    finally:
        op.stop()
        for name in (ns, extra):
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
        cluster.kubectl(
            "delete", "pv", "-l", "airt.dev/dev-fixture=true", "--wait=false", check=False
        )
        cluster.kubectl("delete", "inferenceruntime", f"{extra}-unlimited", check=False)


def condition(md: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (md.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return c  # type: ignore[no-any-return]
    return None


def all_ready(cluster: Cluster, ns: str) -> list[dict[str, Any]] | None:
    items: list[dict[str, Any]] = cluster.get_json("md", "-n", ns)["items"]
    if len(items) < len(EXAMPLES):
        return None
    ok = all((condition(m, "Ready") or {}).get("status") == "True" for m in items)
    return items if ok else None


def test_every_example_becomes_ready(cluster: Cluster, env: dict[str, Any]) -> None:
    ns = env["ns"]

    def report() -> str:
        items = cluster.get_json("md", "-n", ns)["items"]
        return json.dumps(
            {m["metadata"]["name"]: condition(m, "Ready") for m in items}, indent=1
        ) + env["op"].log_tail(10)

    try:
        items = wait_for(lambda: all_ready(cluster, ns), 180, "every example to be Ready")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{report()}") from None
    for md in items:
        st = md["status"]
        assert st["observedGeneration"] == md["metadata"]["generation"]
        assert st["url"] == f"http://{md['metadata']['name']}.{ns}.svc:8000"
        assert st["runtimeImage"].startswith("ghcr.io/airt-dev/worker-")
        for c in st["conditions"]:
            assert c["reason"], c


def test_runtimes_report_ready(cluster: Cluster, env: dict[str, Any]) -> None:
    def ready() -> bool:
        rt = cluster.get_json("inferenceruntime", "torch-cpu")
        c = condition(rt, "Ready")
        return bool(c and c["status"] == "True" and rt["status"]["observedGeneration"] >= 1)

    wait_for(ready, 60, "InferenceRuntime torch-cpu to report Ready")
    printed = cluster.kubectl("get", "irt", "torch-cpu").stdout
    assert "True" in printed.splitlines()[1]


def test_steady_state_writes_nothing(cluster: Cluster, env: dict[str, Any]) -> None:
    wait_for(lambda: all_ready(cluster, env["ns"]), 180, "every example to be Ready")

    ours = {env["ns"], env["extra"], ""}  # "" = cluster-scoped objects

    def quiet_for_5s() -> bool:
        since = datetime.now(UTC).timestamp() - 5
        writes = read_writes(cluster.audit_log)
        return not any(w.when.timestamp() > since and w.namespace in ours for w in writes)

    wait_for(quiet_for_5s, 120, "the operator's writes to settle")
    start = datetime.now(UTC)
    observe_for(32)
    # Only this module's operator works on these namespaces (other tiers may run theirs).
    writes = [w for w in read_writes(cluster.audit_log, since=start) if w.namespace in ours]
    assert writes == [], f"operator wrote in steady state: {summarize(writes)}"


def test_children_are_owned_and_pods_pass_restricted(cluster: Cluster, env: dict[str, Any]) -> None:
    ns = env["ns"]
    for md in cluster.get_json("md", "-n", ns)["items"]:
        name, uid = md["metadata"]["name"], md["metadata"]["uid"]
        kinds = list(CHILD_KINDS)
        if md["spec"].get("replicas", 1) > 1 or md["spec"].get("autoscaling"):
            kinds.append("poddisruptionbudget")
        if md["spec"].get("autoscaling"):
            kinds.append("horizontalpodautoscaler")
        for kind in kinds:
            obj = cluster.get_json(kind, name, "-n", ns)
            refs = obj["metadata"].get("ownerReferences", [])
            assert [(r["kind"], r["uid"], r.get("controller")) for r in refs] == [
                ("ModelDeployment", uid, True)
            ], f"{kind}/{name}"
        sa = cluster.get_json("serviceaccount", name, "-n", ns)
        assert sa.get("automountServiceAccountToken") is False
        pods = cluster.get_json("pods", "-n", ns, "-l", f"airt.dev/modeldeployment={name}")["items"]
        assert pods, f"no pods admitted for {name} in a restricted namespace"
        for pod in pods:
            for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False
                assert sc["readOnlyRootFilesystem"] is True
                assert sc["capabilities"]["drop"] == ["ALL"]


def _node_labels(cluster: Cluster, node: str) -> dict[str, str]:
    return cluster.get_json("node", node)["metadata"]["labels"]  # type: ignore[no-any-return]


def test_pods_land_on_the_right_nodes(cluster: Cluster, env: dict[str, Any]) -> None:
    ns = env["ns"]
    for md in cluster.get_json("md", "-n", ns)["items"]:
        name = md["metadata"]["name"]
        gpu = (md["spec"].get("resources") or {}).get("gpu")
        pods = cluster.get_json("pods", "-n", ns, "-l", f"airt.dev/modeldeployment={name}")["items"]
        for pod in pods:
            labels = _node_labels(cluster, pod["spec"]["nodeName"])
            product = labels.get("nvidia.com/gpu.product")
            if not gpu:
                assert product is None, f"CPU model {name} landed on a GPU node"
            elif gpu.get("mig"):
                assert labels["nvidia.com/mig.strategy"] == "mixed", name
            else:
                assert product in (gpu.get("products") or [product]), name


def test_sixteen_gpus_report_why_they_cannot_be_scheduled(
    cluster: Cluster, env: dict[str, Any]
) -> None:
    ns = env["extra"]
    # A runtime without a per-replica GPU limit, so the request reaches placement (the default
    # torch-cuda runtime's policy would refuse 16 GPUs earlier, as RuntimePolicyViolation).
    runtime = {
        "apiVersion": "airt.dev/v1alpha1",
        "kind": "InferenceRuntime",
        "metadata": {"name": f"{ns}-unlimited"},
        "spec": {
            "images": {"worker": "ghcr.io/airt-dev/worker-cuda:0.1.0"},
            "formats": ["torch-export"],
            "accelerator": "nvidia",
            "autoSelect": False,
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(runtime))
    md = {
        "apiVersion": "airt.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "too-big"},
        "spec": {
            "model": {"uri": "s3://bucket/big.pt2", "format": "torch-export"},
            "runtime": {"name": f"{ns}-unlimited"},
            "resources": {"gpu": {"count": 16, "products": ["NVIDIA-H100-80GB-HBM3"]}},
        },
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(md))

    def scheduled_false() -> dict[str, Any] | None:
        c = condition(cluster.get_json("md", "too-big", "-n", ns), "Scheduled")
        return c if c and c["status"] == "False" else None

    c = wait_for(scheduled_false, 60, "Scheduled=False on too-big")
    assert c["reason"] == "NoMatchingGPUNodes"
    assert "offers 8 nvidia.com/gpu" in c["message"] and "16" in c["message"]
    ready = condition(cluster.get_json("md", "too-big", "-n", ns), "Ready")
    assert ready is not None and ready["status"] == "False"

    def event() -> bool:
        events = cluster.get_json(
            "events", "-n", ns, "--field-selector", "involvedObject.name=too-big"
        )
        return any(e["reason"] == "NoMatchingGPUNodes" for e in events["items"])

    wait_for(event, 30, "an Event with reason NoMatchingGPUNodes")


def test_unknown_runtime_gets_a_reason_and_no_children(
    cluster: Cluster, env: dict[str, Any]
) -> None:
    ns = env["extra"]
    md = {
        "apiVersion": "airt.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "no-runtime"},
        "spec": {
            "model": {"uri": "pvc://airt-models/mlp/model.pt", "format": "torchscript"},
            "runtime": {"name": "does-not-exist"},
        },
    }
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(md))

    def resolved_false() -> dict[str, Any] | None:
        c = condition(cluster.get_json("md", "no-runtime", "-n", ns), "RuntimeResolved")
        return c if c and c["status"] == "False" else None

    c = wait_for(resolved_false, 60, "RuntimeResolved=False")
    assert c["reason"] == "RuntimeNotFound" and "does-not-exist" in c["message"]
    assert cluster.kubectl("get", "deployment", "no-runtime", "-n", ns, check=False).returncode != 0


def test_drift_is_corrected(cluster: Cluster, env: dict[str, Any]) -> None:
    ns = env["ns"]
    dep = cluster.get_json("deployment", "mlp-cpu", "-n", ns)
    want = dep["spec"]["replicas"]
    cluster.kubectl("scale", "deployment", "mlp-cpu", "-n", ns, "--replicas=5")
    wait_for(
        lambda: cluster.get_json("deployment", "mlp-cpu", "-n", ns)["spec"]["replicas"] == want,
        30,
        "the hand-edited replica count to be restored",
    )
    old_uid = dep["metadata"]["uid"]
    cluster.kubectl("delete", "deployment", "mlp-cpu", "-n", ns, "--wait=false")

    def recreated() -> bool:
        proc = cluster.kubectl("get", "deployment", "mlp-cpu", "-n", ns, "-o", "json", check=False)
        return proc.returncode == 0 and json.loads(proc.stdout)["metadata"]["uid"] != old_uid

    wait_for(recreated, 30, "the deleted Deployment to come back")
    cluster.kubectl("delete", "networkpolicy", "mlp-cpu", "-n", ns)
    wait_for(
        lambda: (
            cluster.kubectl("get", "networkpolicy", "mlp-cpu", "-n", ns, check=False).returncode
            == 0
        ),
        30,
        "the deleted NetworkPolicy to come back",
    )


def test_runtime_change_rereconciles_its_models(cluster: Cluster, env: dict[str, Any]) -> None:
    ns = env["ns"]
    rt = cluster.get_json("inferenceruntime", "torch-cpu")
    old = rt["spec"]["container"]["image"]
    new = old.rsplit(":", 1)[0] + ":0.1.1"
    patch = json.dumps({"spec": {"container": {"image": new}}})
    cluster.kubectl("patch", "inferenceruntime", "torch-cpu", "--type=merge", "-p", patch)
    try:

        def image() -> str:
            d = cluster.get_json("deployment", "mlp-cpu", "-n", ns)
            return str(d["spec"]["template"]["spec"]["containers"][0]["image"])

        wait_for(lambda: image() == new, 30, "mlp-cpu to run the runtime's new image")
    finally:
        patch = json.dumps({"spec": {"container": {"image": old}}})
        cluster.kubectl("patch", "inferenceruntime", "torch-cpu", "--type=merge", "-p", patch)


def test_operator_metrics_and_spec_untouched(cluster: Cluster, env: dict[str, Any]) -> None:
    text = env["op"].metrics()
    assert 'airt_operator_reconciles_total{result="applied"}' in text
    assert "airt_operator_reconcile_duration_seconds_bucket" in text
    assert 'airt_modeldeployment_condition{name="mlp-cpu"' in text
    writes = read_writes(cluster.audit_log)
    mine = [w for w in writes if w.resource == "modeldeployments" and w.namespace == env["ns"]]
    assert all(w.verb == "patch" for w in mine)
    # kopf's own bookkeeping is annotations; the spec is the user's.
    for md in cluster.get_json("md", "-n", env["ns"])["items"]:
        managers = {
            m["manager"]: m.get("fieldsV1", {}) for m in md["metadata"].get("managedFields", [])
        }
        for manager, fields in managers.items():
            if manager.startswith(("kopf", "airt")):
                assert "f:spec" not in fields, (
                    f"{manager} owns spec fields of {md['metadata']['name']}"
                )


def test_deleting_a_model_removes_every_child(cluster: Cluster, env: dict[str, Any]) -> None:
    ns = env["ns"]
    cluster.kubectl("delete", "md", "mlp-autoscaled", "-n", ns)

    def gone() -> bool:
        for kind in [*CHILD_KINDS, "horizontalpodautoscaler", "poddisruptionbudget"]:
            if (
                cluster.kubectl("get", kind, "mlp-autoscaled", "-n", ns, check=False).returncode
                == 0
            ):
                return False
        return True

    wait_for(gone, 60, "the garbage collector to remove every child")

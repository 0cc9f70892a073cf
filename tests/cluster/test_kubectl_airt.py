"""`kubectl airt` against the real control plane: the `kubectl-airt` command as a user runs it.

Cluster tier. The operator is the real `airt-operator run` process scoped to this module's
namespace. Three models: the CPU example (Ready on kwok nodes), one asking for more CPU than any
node has (the real scheduler's FailedScheduling), and one naming a runtime that does not exist.

What kwok allows: kwok nodes run no containers and serve neither logs nor port-forwards, so
`logs` and `infer` are checked up to the kubelet's answer — the right pods and container are
asked for, and the refusal comes back as one line and exit status 2, never a traceback. The
v2 request and answer handling of `infer` is covered by tests/unit/kubectl.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from airt_dev.cluster import Cluster
from airt_dev.fixtures import apply_files, ensure_fixtures, install_api
from airt_dev.operator_proc import OperatorProcess
from airt_dev.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
CPU_EXAMPLE = ROOT / "examples" / "deployments" / "cpu-mlp.yaml"
PLUGIN = Path(sys.executable).parent / "kubectl-airt"


def _variant(name: str, **spec: Any) -> dict[str, Any]:
    md: dict[str, Any] = yaml.safe_load(CPU_EXAMPLE.read_text())
    md = copy.deepcopy(md)
    md["metadata"] = {"name": name}
    md["spec"].update(spec)
    return md


@pytest.fixture(scope="module")
def env(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    ns = f"kairt-{uuid.uuid4().hex[:6]}"
    install_api(cluster)
    cluster.kubectl("create", "namespace", ns)
    ensure_fixtures(cluster, ns)
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    op = OperatorProcess.start(cluster.kubeconfig, log, namespaces=(ns,))
    apply_files(cluster, CPU_EXAMPLE, namespace=ns)
    cluster.apply_objects(
        [
            _variant("too-big", replicas=1, resources={"cpu": "64", "memory": "2Gi"}),
            _variant("bad-runtime", replicas=1, runtime={"name": "no-such-runtime"}),
        ],
        namespace=ns,
    )
    try:
        yield {"ns": ns, "op": op, "tmp": tmp_path_factory.mktemp("plans")}
    finally:
        op.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        cluster.kubectl(
            "delete", "pv", "-l", "airt.dev/dev-fixture=true", "--wait=false", check=False
        )


def airt(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    env["KUBECTL"] = str(cluster.bin_dir / "kubectl")
    return subprocess.run(
        [str(PLUGIN), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def _reason(cluster: Cluster, ns: str, name: str, type_: str) -> str | None:
    md = cluster.get_json("md", name, "-n", ns)
    for c in (md.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return str(c["reason"])
    return None


def _settled(cluster: Cluster, ns: str) -> bool:
    return (
        _reason(cluster, ns, "mlp-cpu", "Ready") == "Ready"
        and _reason(cluster, ns, "too-big", "Scheduled") == "Unschedulable"
        and _reason(cluster, ns, "bad-runtime", "RuntimeResolved") == "RuntimeNotFound"
    )


def test_status_shows_conditions_reasons_and_placement(cluster: Cluster, env: Any) -> None:
    ns = env["ns"]
    wait_for(lambda: _settled(cluster, ns), 180, "the three models to settle", interval_s=1)
    proc = airt(cluster, "status", "-n", ns)
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()}
    assert lines["NAME"].split()[:4] == ["NAME", "READY", "AVAILABLE", "DEGRADED"]
    good = lines["mlp-cpu"].split()
    assert good[1:4] == ["True", "True", "False"] and good[4] == "2/2" and good[5] == "torch-cpu"
    assert {n for n in good[-1].split(",")} <= {"cpu-0", "cpu-1"}
    assert lines["too-big"].split()[1] == "False(Unschedulable)"
    assert lines["too-big"].endswith("1 pending")
    assert lines["bad-runtime"].split()[1] == "False(RuntimeNotFound)"
    everywhere = airt(cluster, "status", "-A")
    assert any(line.split()[:2] == [ns, "mlp-cpu"] for line in everywhere.stdout.splitlines())


def test_why_a_ready_model(cluster: Cluster, env: Any) -> None:
    proc = airt(cluster, "why", "mlp-cpu", "-n", env["ns"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == (
        "OK: nothing to fix: the model answers on every replica"
    )


def test_why_a_model_that_cannot_be_scheduled(cluster: Cluster, env: Any) -> None:
    proc = airt(cluster, "why", "too-big", "-n", env["ns"])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fix = proc.stdout.strip().splitlines()[-1]
    # The scheduler's own tally, read from the pod's FailedScheduling Event.
    assert fix.startswith("FIX: Unschedulable: 0/"), proc.stdout
    assert "Insufficient cpu" in fix and "lower spec.resources" in fix
    assert "event" in proc.stdout and "FailedScheduling" in proc.stdout


def test_why_a_model_with_a_bad_runtime(cluster: Cluster, env: Any) -> None:
    proc = airt(cluster, "why", "bad-runtime", "-n", env["ns"], "--brief")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # One line: the operator's reason and message (the operator's wording), then the fix.
    (line,) = proc.stdout.strip().splitlines()
    reason_and_message, _, fix = line.partition(" -> ")
    assert reason_and_message.startswith(
        "FIX: RuntimeNotFound: InferenceRuntime no-such-runtime (spec.runtime.name) not found"
    ), line
    assert fix == (
        "create that InferenceRuntime, or set spec.runtime.name to one that exists"
        " (kubectl get inferenceruntimes)"
    ), line


def test_why_a_model_that_does_not_exist(cluster: Cluster, env: Any) -> None:
    proc = airt(cluster, "why", "ghost", "-n", env["ns"])
    assert proc.returncode == 1
    assert "no ModelDeployment 'ghost'" in proc.stdout


def test_plan_places_without_creating(cluster: Cluster, env: Any) -> None:
    ns, tmp = env["ns"], env["tmp"]
    gpu = tmp / "gpu.yaml"
    gpu.write_text((ROOT / "examples" / "deployments" / "gpu-products.yaml").read_text())
    proc = airt(cluster, "plan", "-f", str(gpu), "-n", ns)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the API server accepts it (dry run)" in proc.stdout
    assert "runtime: torch-cuda (auto-selected" in proc.stdout
    rows = {line.split()[0]: line for line in proc.stdout.splitlines() if line.strip()}
    assert rows["h100-0"].split()[1] == "yes"
    assert "is not one of" in rows["l4-0"]
    assert "taint" not in rows["h100-0"]
    assert proc.stdout.strip().splitlines()[-1].startswith("would land on h100-0, h100-1")
    assert cluster.kubectl("get", "md", "cnn-gpu", "-n", ns, check=False).returncode != 0

    nowhere = tmp / "nowhere.yaml"
    md = yaml.safe_load(gpu.read_text())
    md["spec"]["resources"]["gpu"]["products"] = ["NVIDIA-B200"]
    nowhere.write_text(yaml.safe_dump(md))
    proc = airt(cluster, "plan", "-f", str(nowhere), "-n", ns)
    assert proc.returncode == 1
    assert "no node can ever hold one replica" in proc.stdout

    invalid = tmp / "invalid.yaml"
    md["spec"]["model"]["uri"] = "ftp://example/model.pt"
    invalid.write_text(yaml.safe_dump(md))
    proc = airt(cluster, "plan", "-f", str(invalid), "-n", ns)
    assert proc.returncode == 1
    assert "the API server would refuse it" in proc.stdout and "uri" in proc.stdout


def test_logs_asks_each_pod_for_the_container(cluster: Cluster, env: Any) -> None:
    ns = env["ns"]
    pods = cluster.get_json("pods", "-n", ns, "-l", "app.kubernetes.io/instance=mlp-cpu")["items"]
    proc = airt(cluster, "logs", "mlp-cpu", "-n", ns, "--container", "metrics")
    for pod in pods:
        assert f"==> pod/{pod['metadata']['name']} container metrics <==" in proc.stdout
    # kwok serves no logs: each pod's refusal is one line, and no pod answering is exit 2.
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    bad = airt(cluster, "logs", "mlp-cpu", "-n", ns, "--container", "sidecar")
    assert bad.returncode == 2 and "must be one of worker, model-fetch, metrics" in bad.stderr


def test_infer_reports_a_failed_port_forward_in_one_line(cluster: Cluster, env: Any) -> None:
    ns = env["ns"]
    proc = airt(cluster, "infer", "mlp-cpu", "-n", ns, "--input", "features=[0.5]")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    missing = airt(cluster, "infer", "ghost", "-n", ns, "--input", "x=[1]")
    assert missing.returncode == 2 and "no ModelDeployment ghost" in missing.stderr
    bad = airt(cluster, "infer", "mlp-cpu", "-n", ns, "--input", "x=[1,")
    assert bad.returncode == 2 and "not JSON" in bad.stderr

"""`make dev` / `airt-dev run`: the whole product on this machine, end to end.

Called by cli.py. Steps: the local cluster (kwok GPU fleet) → CRDs and the default runtimes →
a demo namespace enforcing Pod Security `restricted` with the volume and Secret the examples
use → the operator as a background process → every example applied and waited on until Ready
(on kwok's nodes, where pods run nothing) → the real node (realnode.py) joined, the example MLP
pushed to the local OCI store (modelstore.py), the CPU example applied from there, sha256-pinned,
and answered by its real pod through tritonclient (HTTP and gRPC) over `kubectl port-forward`.
The operator, the real node and the port-forward keep running afterwards (PIDs and logs in the
cache directory) until `airt-dev down` stops them with the cluster.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from airt_dev import procs
from airt_dev.cluster import CACHE_ROOT, REPO_ROOT, Cluster, ClusterManager
from airt_dev.fixtures import apply_files, ensure_fixtures, example_models, install_api
from airt_dev.modelstore import ModelStore
from airt_dev.ports import free_port
from airt_dev.realnode import RealNode, default_layout, set_real_node_only
from airt_dev.wait import wait_for

DEV_DIR = CACHE_ROOT / "dev"
NAMESPACE = "airt-demo"
REAL_EXAMPLE = "mlp-local"  # the CPU example, served from the local OCI store by a real pod
Say = Callable[[str], None]


def _spawn(name: str, args: list[str], env: dict[str, str]) -> int:
    return procs.spawn(DEV_DIR / f"{name}.pid", DEV_DIR / f"{name}.log", args, env)


def _stop(name: str) -> None:
    procs.stop(DEV_DIR / f"{name}.pid")


def _ready_models(c: Cluster) -> tuple[int, int, list[str]]:
    items = c.get_json("md", "-n", NAMESPACE)["items"]
    not_ready = []
    for m in items:
        conds = {x["type"]: x for x in (m.get("status") or {}).get("conditions", [])}
        if conds.get("Ready", {}).get("status") != "True":
            not_ready.append(m["metadata"]["name"])
    return len(items) - len(not_ready), len(items), not_ready


def install(c: Cluster, say: Say) -> None:
    say("installing the CRDs and the default InferenceRuntimes")
    install_api(c)
    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
        },
    }
    c.kubectl("apply", "--server-side", "--field-manager=airt-dev", "-f", "-", input=json.dumps(ns))
    ensure_fixtures(c, NAMESPACE)


def start_operator(c: Cluster, say: Say) -> None:
    if procs.alive(DEV_DIR / "operator.pid"):
        say("the operator is already running")
        return
    port = free_port()
    (DEV_DIR / "operator.port").parent.mkdir(parents=True, exist_ok=True)
    (DEV_DIR / "operator.port").write_text(str(port))
    # Scoped to the demo namespace, so a dev operator never races the operators that the test
    # tiers start on the same cluster; `airt-operator run` without --namespace watches all.
    args = [sys.executable, "-m", "airt_operator.cli", "run", "--standalone"]
    args += ["--namespace", NAMESPACE]
    _spawn("operator", [*args, "--health-port", str(port)], c.env())
    say(f"operator started (log {DEV_DIR / 'operator.log'}, metrics :{port}/metrics)")


def apply_examples(c: Cluster, say: Say, timeout_s: float = 300) -> None:
    files = sorted((REPO_ROOT / "examples" / "deployments").glob("*.yaml"))
    apply_files(c, *files, namespace=NAMESPACE)
    say(f"applied {len(files)} example ModelDeployments; waiting until every one is Ready")
    shown = -1

    def all_ready() -> bool:
        nonlocal shown
        ready, total, _ = _ready_models(c)
        if ready != shown:  # a live count, a line each time it moves
            say(f"{ready}/{total} ModelDeployments Ready")
            shown = ready
        return ready == total

    wait_for(all_ready, timeout_s, "every example ModelDeployment Ready")


def serve_on_real_node(c: Cluster, say: Say) -> dict[str, Any]:
    """The CPU example served by its real pod: model pushed to the local OCI store (sha256-pinned),
    the ModelDeployment applied, Ready on the real node, answered through tritonclient over a
    port-forward that stays up for the user."""
    import numpy as np
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    node = RealNode(c, default_layout(c.name))
    say("starting the real node (containerd, kubelet, kube-router) and importing the images")
    node.up()
    store = ModelStore(CACHE_ROOT / "modelstore", c.bin_dir / "modelstore", node.layout.node_ip)
    store.start()
    models = example_models()
    uri = store.push(models / "mlp.pt", "models/mlp")
    sha = hashlib.sha256((models / "mlp.pt").read_bytes()).hexdigest()
    md = yaml.safe_load((REPO_ROOT / "examples" / "deployments" / "cpu-mlp.yaml").read_text())
    md["metadata"] = {"name": REAL_EXAMPLE}
    md["spec"]["model"].update({"uri": uri, "sha256": sha, "credentials": {"name": "model-store"}})
    # Sized for the real node: this machine's cores, not a fleet's.
    md["spec"]["replicas"] = 1
    md["spec"]["resources"] = {"cpu": "500m", "memory": "2Gi"}
    # While it is placed, the fake CPU nodes are cordoned: this model must run for real.
    set_real_node_only(c, True)
    try:
        c.apply_objects([store.secret_for("model-store", NAMESPACE), md], namespace=NAMESPACE)
        say(f"applied {REAL_EXAMPLE} ({uri}); waiting until its pod on {node.layout.name} is Ready")
        wait_for(lambda: REAL_EXAMPLE not in _ready_models(c)[2], 300, f"{REAL_EXAMPLE} Ready")
    finally:
        set_real_node_only(c, False)
    _stop("port-forward")
    http_port, grpc_port = free_port(), free_port()
    args = [
        str(c.bin_dir / "kubectl"), f"--kubeconfig={c.kubeconfig}", "-n", NAMESPACE,
        "port-forward", "--address=127.0.0.1", f"svc/{REAL_EXAMPLE}",
        f"{http_port}:8000", f"{grpc_port}:8001",
    ]  # fmt: skip
    _spawn("port-forward", args, c.env())
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")

    def ready() -> bool:
        try:
            return bool(client.is_model_ready("mlp"))
        except Exception:  # the port-forward is not listening yet
            return False

    wait_for(ready, 60, "the real pod to answer through the port-forward")
    x = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
    tensor = httpclient.InferInput("features", [1, 64], "FP32")
    tensor.set_data_from_numpy(x)
    out_name = client.get_model_metadata("mlp")["outputs"][0]["name"]
    via_http = client.infer("mlp", [tensor]).as_numpy(out_name)
    client.close()
    g = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    gt = grpcclient.InferInput("features", [1, 64], "FP32")
    gt.set_data_from_numpy(x)
    via_grpc = g.infer("mlp", [gt]).as_numpy(out_name)
    g.close()
    if via_http is None or via_grpc is None or not np.allclose(via_http, via_grpc):
        raise RuntimeError("the real pod answered differently over HTTP and gRPC")
    pod = c.get_json("pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={REAL_EXAMPLE}")
    pod_name = pod["items"][0]["metadata"]["name"] if pod["items"] else "?"
    say(
        f"pod {pod_name} on {node.layout.name} answered over HTTP and gRPC: "
        f"{out_name} shape {list(via_http.shape)}"
    )
    return {"http": f"127.0.0.1:{http_port}", "grpc": f"127.0.0.1:{grpc_port}", "pod": pod_name}


def run(say: Say) -> Cluster:
    manager = ClusterManager.from_env()
    started = manager.up()
    c = manager.cluster()
    say(f"cluster {'started' if started else 'reused'}: {c.kubeconfig}")
    install(c, say)
    start_operator(c, say)
    set_real_node_only(c, False)  # a real node from an earlier run takes no fleet example
    apply_examples(c, say)
    addr = serve_on_real_node(c, say)
    kubectl = f"{c.bin_dir / 'kubectl'} --kubeconfig {c.kubeconfig}"
    say(
        f"{REAL_EXAMPLE} is reachable at http {addr['http']} and grpc {addr['grpc']} "
        f"(a port-forward kept running; log {DEV_DIR / 'port-forward.log'})"
    )
    say("try:")
    say(f"  curl -s http://{addr['http']}/v2/models/mlp")
    say(f"  {kubectl} -n {NAMESPACE} port-forward svc/{REAL_EXAMPLE} 8000:8000 8001:8001")
    say(f"  {kubectl} get md,pods -n {NAMESPACE} -o wide")
    return c


def stop() -> None:
    """Stop the dev operator, the port-forward, the model store and the real node (the cluster
    itself is stopped by ClusterManager.down)."""
    _stop("port-forward")
    _stop("operator")
    manager = ClusterManager.from_env()
    store = ModelStore(CACHE_ROOT / "modelstore", Path(), default_layout(manager.name).node_ip)
    store.stop()
    if manager.kubeconfig.exists() or default_layout(manager.name).workdir.exists():
        RealNode(manager.cluster(), default_layout(manager.name)).down()

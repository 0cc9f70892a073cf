"""`make dev` / `airt dev run`: the whole product on this machine, end to end.

Called by cli.py. Steps: the local cluster (kwok GPU fleet) → CRDs and the default runtimes →
a demo namespace enforcing Pod Security `restricted` with the volume and Secret the examples
use → the operator as a background process → every example applied and waited on until Ready
→ one example model built, served by a real `airt serve` process, and answered through
tritonclient. The operator and the worker keep running afterwards (their PIDs and logs live in
the cache directory) until `airt dev down` stops them with the cluster.

kwok pods run nothing, so the served model is a local worker process: it is the same worker
the pods would run, answering the same protocol.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airt_operator.dev.cluster import CACHE_ROOT, REPO_ROOT, Cluster, ClusterManager
from airt_operator.dev.fixtures import apply_files, ensure_fixtures, install_api
from airt_operator.dev.operator_proc import free_port
from airt_operator.dev.wait import wait_for

DEV_DIR = CACHE_ROOT / "dev"
NAMESPACE = "airt-demo"
Say = Callable[[str], None]


def _pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _spawn(name: str, args: list[str], env: dict[str, str]) -> int:
    DEV_DIR.mkdir(parents=True, exist_ok=True)
    log = (DEV_DIR / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    (DEV_DIR / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _stop(name: str) -> None:
    pid = _pid_alive(DEV_DIR / f"{name}.pid")
    if pid:
        os.kill(pid, signal.SIGTERM)
    (DEV_DIR / f"{name}.pid").unlink(missing_ok=True)


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
    if _pid_alive(DEV_DIR / "operator.pid"):
        say("the operator is already running")
        return
    port = free_port()
    (DEV_DIR / "operator.port").parent.mkdir(parents=True, exist_ok=True)
    (DEV_DIR / "operator.port").write_text(str(port))
    # Scoped to the demo namespace, so a dev operator never races the operators that the test
    # tiers start on the same cluster; `airt operator run` without --namespace watches all.
    args = [sys.executable, "-m", "airt_operator.cli", "operator", "run", "--standalone"]
    args += ["--namespace", NAMESPACE]
    _spawn("operator", [*args, "--health-port", str(port)], c.env())
    say(f"operator started (log {DEV_DIR / 'operator.log'}, metrics :{port}/metrics)")


def apply_examples(c: Cluster, say: Say, timeout_s: float = 300) -> None:
    files = sorted((REPO_ROOT / "examples" / "deployments").glob("*.yaml"))
    apply_files(c, *files, namespace=NAMESPACE)
    say(f"applied {len(files)} example ModelDeployments; waiting until every one is Ready")
    wait_for(lambda: not _ready_models(c)[2], timeout_s, "every example ModelDeployment Ready")
    ready, total, _ = _ready_models(c)
    say(f"{ready}/{total} ModelDeployments Ready")


def serve_example(say: Say) -> dict[str, Any]:
    """Build the example MLP, serve it with `airt serve`, and ask it through tritonclient."""
    import numpy as np
    import tritonclient.http as httpclient

    models = DEV_DIR / "models"
    if not (models / "mlp.pt").exists():
        say("building the example models (no download)")
        subprocess.run(
            [sys.executable, str(REPO_ROOT / "examples" / "build_models.py"), str(models)],
            check=True,
        )
    _stop("worker")
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    args = [
        sys.executable, "-m", "airt_worker",
        "--model-path", str(models / "mlp.pt"),
        "--model-name", "mlp",
        "--host", "127.0.0.1",
        "--http-port", str(http_port),
        "--grpc-port", str(grpc_port),
        "--metrics-port", str(metrics_port),
        "--threads", "1",
    ]  # fmt: skip
    config = models / "mlp.yaml"
    if config.exists():
        args += ["--config-file", str(config)]
    _spawn("worker", args, dict(os.environ))
    client = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")

    def ready() -> bool:
        try:
            return bool(client.is_model_ready("mlp"))
        except Exception:  # not listening yet
            return False

    wait_for(ready, 120, "the example worker to be ready")
    meta = client.get_model_metadata("mlp")
    inp = meta["inputs"][0]
    shape = [1 if d == -1 else int(d) for d in inp["shape"]]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    tensor = httpclient.InferInput(inp["name"], shape, inp["datatype"])
    tensor.set_data_from_numpy(x)
    result = client.infer("mlp", [tensor])
    out_name = meta["outputs"][0]["name"]
    out = result.as_numpy(out_name)
    client.close()
    say(f"worker answered: model mlp, output {out_name} shape {list(out.shape)}")
    return {"http": f"127.0.0.1:{http_port}", "grpc": f"127.0.0.1:{grpc_port}"}


def run(say: Say) -> Cluster:
    manager = ClusterManager.from_env()
    started = manager.up()
    c = manager.cluster()
    say(f"cluster {'started' if started else 'reused'}: {c.kubeconfig}")
    install(c, say)
    start_operator(c, say)
    apply_examples(c, say)
    addr = serve_example(say)
    say(f"example worker: http {addr['http']}, grpc {addr['grpc']} (log {DEV_DIR / 'worker.log'})")
    say(f"try: {c.bin_dir / 'kubectl'} --kubeconfig {c.kubeconfig} get md -n {NAMESPACE}")
    return c


def stop() -> None:
    """Stop the dev operator and worker (the cluster is stopped by ClusterManager.down)."""
    _stop("worker")
    _stop("operator")

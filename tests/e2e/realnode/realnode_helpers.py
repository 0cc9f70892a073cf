"""Helpers of the real-node e2e tests: manifests, condition waits, port-forwards, probe pods."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

from airt_dev.cluster import Cluster
from airt_dev.ports import free_port
from airt_dev.wait import wait_for

MODEL_STORE_SECRET = "model-store"
PROBE_IMAGE = "ghcr.io/airt-dev/metrics:0.1.0"  # has Python, small: the probe pods run it


def apply(cluster: Cluster, obj: dict[str, Any], namespace: str | None = None) -> None:
    cluster.apply_objects([obj], namespace=namespace)


def md_manifest(
    name: str,
    uri: str,
    sha256: str | None,
    *,
    replicas: int = 1,
    runtime: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """The CPU example (examples/deployments/cpu-mlp.yaml) sized for a 2-core node."""
    model: dict[str, Any] = {
        "uri": uri,
        "format": "torchscript",
        "name": name,
        "credentials": {"name": MODEL_STORE_SECRET},
        # TorchScript does not record input types: the example MLP's interface, as in
        # examples/deployments/cpu-mlp.yaml.
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [64]}],
    }
    if sha256:
        model["sha256"] = sha256
    return {
        "apiVersion": "airt.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "runtime": runtime or {"name": "torch-cpu"},
            "replicas": replicas,
            "resources": {"cpu": "500m", "memory": "2Gi"},
            "batching": {"maxBatchSize": 32, "maxQueueDelayMicroseconds": 2000},
            **spec,
        },
    }


def get_md(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    md: dict[str, Any] = cluster.get_json("md", name, "-n", ns)
    return md


def condition(md: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (md.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return None


def wait_condition(
    cluster: Cluster,
    ns: str,
    name: str,
    type_: str,
    status: str,
    reason: str | None = None,
    timeout_s: float = 120,
) -> dict[str, Any]:
    """Wait until the ModelDeployment's condition has this status (and reason); return it."""
    seen: dict[str, Any] = {}

    def met() -> bool:
        md = get_md(cluster, ns, name)
        c = condition(md, type_) or {}
        seen.update(c)
        return c.get("status") == status and (reason is None or c.get("reason") == reason)

    try:
        wait_for(met, timeout_s, f"{ns}/{name} {type_}={status} {reason or ''}", 0.5)
    except Exception as exc:
        pods = cluster.kubectl("get", "pods", "-n", ns, "-o", "wide", check=False).stdout
        raise AssertionError(f"{exc}\nlast {type_}: {seen}\n{pods}") from exc
    return dict(seen)


def pods_of(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json(
        "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}"
    )["items"]
    return items


def last_termination(container_status: dict[str, Any]) -> dict[str, Any]:
    """The container's termination, current or the one before its restart; {} if none."""
    state = container_status.get("state") or {}
    last = container_status.get("lastState") or {}
    ended: dict[str, Any] = state.get("terminated") or last.get("terminated") or {}
    return ended


@contextlib.contextmanager
def port_forward(cluster: Cluster, ns: str, target: str, *ports: int) -> Iterator[list[int]]:
    """`kubectl port-forward` on 127.0.0.1; yields the local ports, in the order asked."""
    local = [free_port() for _ in ports]
    mapping = [f"{lp}:{rp}" for lp, rp in zip(local, ports, strict=True)]
    proc = subprocess.Popen(
        [str(cluster.bin_dir / "kubectl"), f"--kubeconfig={cluster.kubeconfig}", "-n", ns,
         "port-forward", "--address=127.0.0.1", target, *mapping],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"port-forward exited: {proc.stderr.read() if proc.stderr else ''}")
        with socket.socket() as s:
            return all(s.connect_ex(("127.0.0.1", p)) == 0 for p in local[:1])

    try:
        wait_for(listening, 30, f"port-forward to {ns}/{target}", 0.1)
        yield local
    finally:
        proc.terminate()
        proc.wait(timeout=10)


PROBE = """
import json, socket, sys
out = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, int(port)))
        out[target] = "open"
    except ConnectionRefusedError:
        out[target] = "refused"
    except OSError as exc:
        out[target] = type(exc).__name__
    finally:
        s.close()
print(json.dumps(out))
"""


def probe_from(
    cluster: Cluster, ns: str, targets: list[str], labels: dict[str, str] | None = None
) -> dict[str, str]:
    """Run a pod in `ns` that tries a TCP connect to each host:port; return what it saw."""
    name = f"probe-{int(time.monotonic() * 1000) % 10**8}"
    restricted = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {"app": "probe"}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "probe",
                    "image": PROBE_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", PROBE, *targets],
                    "securityContext": restricted,
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                }
            ],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def done() -> bool:
        phase = cluster.get_json("pod", name, "-n", ns).get("status", {}).get("phase")
        return phase in ("Succeeded", "Failed")

    try:
        wait_for(done, 90, f"probe pod {ns}/{name}", 0.5)
        logs = cluster.kubectl("logs", "-n", ns, name).stdout.strip().splitlines()
        result: dict[str, str] = json.loads(logs[-1])
        return result
    finally:
        cluster.kubectl("delete", "pod", name, "-n", ns, "--wait=false", check=False)


def assert_network_policy(
    cluster: Cluster, ns: str, other: str, monitoring: str, ip: str, serving: tuple[int, int]
) -> None:
    """The model's NetworkPolicy as enforced: its serving ports open from its own namespace,
    nothing open from another, and the monitoring namespace reaching the sidecar's 8002 only."""
    ports = [*serving, 8002]
    targets = [f"{ip}:{p}" for p in ports]
    same = probe_from(cluster, ns, targets)
    elsewhere = probe_from(cluster, other, targets)
    scraper = probe_from(cluster, monitoring, targets)
    assert all(same[f"{ip}:{p}"] == "open" for p in serving), same
    # Blocked is blocked: kube-router rejects or drops; either way no connection is made.
    assert all(v != "open" for v in elsewhere.values()), elsewhere
    assert scraper[f"{ip}:8002"] == "open", scraper
    assert all(scraper[f"{ip}:{p}"] != "open" for p in serving), scraper

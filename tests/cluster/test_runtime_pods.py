"""Every runtime's pod as the real Pod Security admission judges it.

Cluster tier: the operator renders the serving pod of a model on each shipped runtime (the airt
worker, Triton, MLServer, vLLM) and of templates that ask for what `restricted` forbids; each pod
is sent as a server-side dry run into a namespace labelled
`pod-security.kubernetes.io/enforce=restricted`. The shipped ones must be admitted, the others
refused, so the operator's own check (reconcile/pod_security.py) and the API server agree.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from airt_dev.cluster import Cluster
from airt_operator.api import AnyRuntime, parse_model_deployment, parse_runtime
from airt_operator.reconcile.build import BuildSettings, build_context
from airt_operator.reconcile.pod_security import deployment_violations
from airt_operator.reconcile.render import render
from airt_operator.reconcile.resolve import resolve

ROOT = Path(__file__).resolve().parents[2]
RUNTIMES = ROOT / "examples" / "runtimes"


def _runtime(path: Path) -> AnyRuntime:
    return parse_runtime(yaml.safe_load(path.read_text()))


SHIPPED = {
    "torch-cpu": ("torchscript", "pvc://models/mlp/model.pt", 0),
    "torch-cuda": ("torchscript", "pvc://models/mlp/model.pt", 1),
    "triton": ("triton", "pvc://models/repository", 1),
    "mlserver": ("mlp-npz", "s3://models-bucket/mlp.npz", 0),
    "vllm": ("safetensors", "pvc://llm/qwen", 2),
}


def _pod(runtime: AnyRuntime, fmt: str, uri: str, gpus: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"uri": uri, "format": fmt},
        "runtime": {"name": runtime.metadata.name},
    }
    if gpus:
        spec["resources"] = {"gpu": {"count": gpus}}
    md = parse_model_deployment({"metadata": {"name": "m", "namespace": "x"}, "spec": spec})
    ctx = build_context(md, resolve(md, [runtime]), BuildSettings.defaults(), "u", 1, False)
    children = render(ctx)
    dep = next(c for c in children if c["kind"] == "Deployment")
    pod_spec = dict(dep["spec"]["template"]["spec"])
    pod_spec["serviceAccountName"] = "default"  # the dry run need not create the model's
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{runtime.metadata.name}-pod"},
        "spec": pod_spec,
        "_violations": deployment_violations(children),
    }


@pytest.fixture(scope="module")
def restricted(cluster: Cluster) -> Iterator[str]:
    name = f"psa-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _dry_run(cluster: Cluster, namespace: str, pod: dict[str, Any]) -> Any:
    body = {k: v for k, v in pod.items() if not k.startswith("_")}
    return cluster.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-",
        input=json.dumps(body), check=False,
    )  # fmt: skip


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_runtime_pod_is_admitted_under_restricted(
    cluster: Cluster, restricted: str, name: str
) -> None:
    path = next(p for p in RUNTIMES.rglob("*.yaml") if p.stem == name)
    pod = _pod(_runtime(path), *SHIPPED[name])
    assert pod["_violations"] == []
    proc = _dry_run(cluster, restricted, pod)
    assert proc.returncode == 0, proc.stderr


FORBIDDEN = {
    "privileged": {"securityContext": {"privileged": True, "allowPrivilegeEscalation": True}},
    "root": {"securityContext": {"runAsUser": 0}},
    "capability": {"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}},
    "host-network": {"hostNetwork": True},
    "host-path": {"volumes": [{"name": "host", "mountPath": "/host", "hostPath": {"path": "/"}}]},
}


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_a_forbidden_template_is_refused_by_both(
    cluster: Cluster, restricted: str, name: str
) -> None:
    runtime = parse_runtime(
        {
            "kind": "InferenceRuntime",
            "metadata": {"name": f"bad-{name}"},
            "spec": {
                "container": {"image": "registry.local:5000/server:1", **FORBIDDEN[name]},
                "formats": ["onnx"],
                "accelerator": "cpu",
            },
        }
    )
    pod = _pod(runtime, "onnx", "pvc://models/m.onnx", 0)
    assert pod["_violations"], "the operator's check let it through"
    proc = _dry_run(cluster, restricted, pod)
    assert proc.returncode != 0 and "PodSecurity" in proc.stderr, proc.stdout

"""Bring-your-own runtimes: template expansion, Pod Security restricted, resolution, rendering.

Unit tier: the pure middle (runtime_template, pod_security, resolve, render, runtime_status) and
one Reconciler driven with a Snapshot and an in-memory API client, for the example runtimes of
examples/runtimes/byo (Triton, MLServer, vLLM, a team's namespaced MLServer) and for templates
that ask for what restricted forbids.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from opbuild import model, runtimes
from test_owned_children import FakeKube

from airt_operator.api import AnyRuntime, ModelDeployment, parse_runtime
from airt_operator.kube.client import Kube
from airt_operator.metrics import OperatorMetrics
from airt_operator.reconcile.build import BuildSettings, build_context
from airt_operator.reconcile.observe import status_fields
from airt_operator.reconcile.pod_security import (
    deployment_violations,
    restricted_violations,
    template_violations,
)
from airt_operator.reconcile.render import render
from airt_operator.reconcile.resolve import ResolutionFailure, resolve
from airt_operator.reconcile.runtime_status import runtime_status
from airt_operator.reconcile.runtime_template import (
    AIRT_WORKER,
    container_of,
    expand,
    model_paths,
)
from airt_operator.reconciler import Reconciler, Result, Snapshot

ROOT = Path(__file__).resolve().parents[3]
BYO = ROOT / "examples" / "runtimes" / "byo"


def byo(name: str) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load((BYO / f"{name}.yaml").read_text())
    return raw


def rt(raw: dict[str, Any]) -> AnyRuntime:
    return parse_runtime(raw)


def team(**metadata: Any) -> AnyRuntime:
    """The team's example runtime, as created in its namespace (team-a)."""
    raw = byo("team-mlserver")
    return rt({**raw, "metadata": {**raw["metadata"], "namespace": "team-a", **metadata}})


def md(
    fmt: str,
    runtime: str | None = None,
    uri: str = "pvc://models/repo",
    gpus: int = 0,
    ns: str = "team-a",
) -> ModelDeployment:
    spec: dict[str, Any] = {"model": {"uri": uri, "format": fmt}}
    if runtime:
        spec["runtime"] = {"name": runtime}
    if gpus:
        spec["resources"] = {"gpu": {"count": gpus}}
    return model({"metadata": {"name": "m"}, "spec": spec}, namespace=ns)


def children(m: ModelDeployment, catalog: list[AnyRuntime]) -> list[dict[str, Any]]:
    ctx = build_context(m, resolve(m, catalog), BuildSettings.defaults(), "uid-1", 1, True)
    return render(ctx)


def by_kind(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objs}


def pod_of(objs: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = by_kind(objs)["Deployment"]["spec"]["template"]["spec"]
    return pod


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


# --- the pure pieces ---------------------------------------------------------------------------


def test_placeholders_expand_to_the_model_and_the_ports() -> None:
    values = {"{{model.path}}": "/models/repo", "{{port.http}}": "8080"}
    assert expand("--m={{model.path}} --p={{port.http}}", values) == "--m=/models/repo --p=8080"
    assert model_paths("pvc://claim/a/b", "/mnt/models") == ("/mnt/models/a/b", "/mnt/models")
    # A fetched model is where the fetcher wrote it, under the runtime's own mount.
    assert model_paths("s3://bucket/key", "/mnt/models") == ("/mnt/models/model", "/mnt/models")


def test_the_images_worker_shorthand_is_the_airt_worker_template() -> None:
    legacy = rt(
        {
            "kind": "InferenceRuntime",
            "metadata": {"name": "w"},
            "spec": {
                "images": {"worker": "ghcr.io/x/w:1"},
                "formats": ["torchscript"],
                "accelerator": "cpu",
            },
        }
    )
    assert container_of(legacy.spec) == AIRT_WORKER.model_copy(update={"image": "ghcr.io/x/w:1"})
    # The rewritten default runtime says exactly the same in container terms.
    cpu = next(r for r in runtimes() if r.metadata.name == "torch-cpu")
    assert container_of(cpu.spec) == AIRT_WORKER.model_copy(update={"image": cpu.spec.image})


def _template(**container: Any) -> dict[str, Any]:
    return {
        "kind": "InferenceRuntime",
        "metadata": {"name": "bad"},
        "spec": {
            "container": {"image": "ghcr.io/x/server:1", **container},
            "formats": ["onnx"],
            "accelerator": "cpu",
        },
    }


REFUSED = [
    ({"securityContext": {"privileged": True}}, "privileged=true"),
    ({"securityContext": {"runAsUser": 0}}, "runAsUser=0"),
    ({"securityContext": {"allowPrivilegeEscalation": True}}, "allowPrivilegeEscalation"),
    ({"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}, "capabilities.add=SYS_ADMIN"),
    ({"hostNetwork": True}, "hostNetwork=true"),
    ({"hostPID": True}, "hostPID=true"),
    ({"volumes": [{"name": "host", "mountPath": "/host", "hostPath": {"path": "/"}}]},
     "volumes[host].hostPath"),
]  # fmt: skip


@pytest.mark.parametrize(("container", "named"), REFUSED, ids=[r[1] for r in REFUSED])
def test_a_template_restricted_forbids_is_named(container: dict[str, Any], named: str) -> None:
    found = template_violations(container_of(rt(_template(**container)).spec))
    assert any(named in v for v in found), found


def test_what_restricted_still_allows_is_not_refused() -> None:
    ok = _template(
        securityContext={
            "runAsUser": 1000,
            "readOnlyRootFilesystem": False,
            "capabilities": {"add": ["NET_BIND_SERVICE"]},
        },
        volumes=[{"name": "cfg", "mountPath": "/cfg", "configMap": {"name": "c"}}],
    )
    assert template_violations(container_of(rt(ok).spec)) == []


def test_the_check_reads_pod_and_container_contexts_like_admission() -> None:
    base = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "c",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
    }
    assert restricted_violations(base) == []
    loose = copy.deepcopy(base)
    loose["securityContext"] = {}
    loose["containers"][0]["ports"] = [{"name": "http", "containerPort": 80, "hostPort": 80}]
    found = restricted_violations(loose)
    assert "containers[c].securityContext.runAsNonRoot must be true" in found
    assert "containers[c].securityContext.seccompProfile must be RuntimeDefault" in found
    assert "containers[c].ports[http].hostPort" in found


# --- the example runtimes render restricted pods -----------------------------------------------


def test_every_shipped_runtime_renders_a_restricted_pod() -> None:
    catalog = [*runtimes(), *(rt(byo(n)) for n in ("triton", "mlserver", "vllm"))]
    cases = [
        md("torchscript", uri="pvc://models/mlp/model.pt"),
        md("torchscript", uri="pvc://models/mlp/model.pt", gpus=1),
        md("triton", "triton", gpus=1),
        md("mlp-npz", "mlserver", uri="s3://models-bucket/mlp.npz"),
        md("safetensors", "vllm", uri="pvc://llm/qwen", gpus=2),
    ]
    for m in cases:
        objs = children(m, catalog)
        assert deployment_violations(objs) == [], m.spec.model.format


def test_triton_serves_its_repository_and_its_own_metrics() -> None:
    objs = children(md("triton", "triton", gpus=1), [*runtimes(), rt(byo("triton"))])
    pod = pod_of(objs)
    (server,) = pod["containers"]  # no sidecar: Triton exports its metrics itself
    assert server["command"] == ["tritonserver"]
    assert "--model-repository=/models/repo" in server["args"]
    assert "--grpc-port=8001" in server["args"] and "--metrics-port=8002" in server["args"]
    assert "AIRT_WORKER_CONFIG" not in env_of(server)
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"  # GPU placement as for any model
    svc = by_kind(objs)["Service"]["spec"]["ports"]
    assert {p["name"]: p["targetPort"] for p in svc} == {
        "http": "http",
        "grpc": "grpc",
        "metrics": "metrics",
    }


def test_mlserver_gets_its_ports_by_environment_and_the_sidecar_scrapes_it() -> None:
    objs = children(
        md("mlp-npz", "mlserver", uri="s3://models-bucket/mlp.npz"), [rt(byo("mlserver"))]
    )
    pod = pod_of(objs)
    server, sidecar = pod["containers"]
    assert server["command"] == ["mlserver", "start", "/mnt/models/model"]
    env = env_of(server)
    assert (env["MLSERVER_HTTP_PORT"], env["MLSERVER_GRPC_PORT"]) == ("8080", "8081")
    assert env["MLSERVER_MODEL_NAME"] == "m"
    # The fetched file is the model MLServer loads with airt's runtime, without a settings file.
    assert env["MLSERVER_MODEL_URI"] == "/mnt/models/model"
    assert env["MLSERVER_MODEL_IMPLEMENTATION"] == "airt_mlserver.runtime.NpzMlp"
    assert {"name": "models", "mountPath": "/mnt/models"} in server["volumeMounts"]
    assert env_of(sidecar)["AIRT_METRICS_WORKER_URL"] == "http://127.0.0.1:8082/metrics"
    # The fetcher still fetches (and checks digests), whatever the runtime.
    assert pod["initContainers"][0]["name"] == "model-fetch"
    netpol = by_kind(objs)["NetworkPolicy"]["spec"]["ingress"]
    assert netpol[0]["ports"] == [
        {"port": 8080, "protocol": "TCP"},
        {"port": 8081, "protocol": "TCP"},
    ]


def test_vllm_speaks_openai_on_http_only_and_is_scraped_on_its_own_port() -> None:
    m = md("safetensors", "vllm", uri="pvc://llm/qwen", gpus=2)
    catalog = [rt(byo("vllm"))]
    objs = children(m, catalog)
    pod = pod_of(objs)
    (server,) = pod["containers"]
    assert "--model=/models/qwen" in server["args"] and "--port=8000" in server["args"]
    assert server["readinessProbe"]["httpGet"]["path"] == "/health"
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert {"name": "cache", "mountPath": "/cache"} in server["volumeMounts"]
    assert {"name": "cache", "emptyDir": {"sizeLimit": "20Gi"}} in pod["volumes"]
    svc = {p["name"]: p for p in by_kind(objs)["Service"]["spec"]["ports"]}
    assert "grpc" not in svc and svc["metrics"]["targetPort"] == "http"
    monitor = by_kind(objs)["ServiceMonitor"]["spec"]["endpoints"][0]
    assert monitor["path"] == "/metrics"
    ctx = build_context(m, resolve(m, catalog), BuildSettings.defaults(), "u", 1, False)
    assert "grpcAddress" not in {k for k, v in status_fields(ctx, _no_obs()).items() if v}


def _no_obs() -> Any:
    from airt_operator.reconcile.observe import Observation

    return Observation(None, [], [])


# --- resolution ----------------------------------------------------------------------------------


def test_a_format_no_runtime_accepts_names_the_formats_available() -> None:
    with pytest.raises(ResolutionFailure) as info:
        resolve(md("onnx"), runtimes())
    assert info.value.reason == "NoMatchingRuntime"
    assert "formats available: torch-export, torchscript" in info.value.message


def test_the_airt_worker_refuses_a_format_it_cannot_load() -> None:
    raw = copy.deepcopy(yaml.safe_load((ROOT / "examples/runtimes/torch-cpu.yaml").read_text()))
    raw["spec"]["formats"].append("onnx")
    with pytest.raises(ResolutionFailure) as info:
        resolve(md("onnx", "torch-cpu"), [rt(raw)])
    assert "airt worker" in info.value.message and info.value.reason == "RuntimeIncompatible"


def test_a_namespaced_runtime_is_resolved_before_the_cluster_catalog() -> None:
    mine = team()  # namespace team-a, format sklearn, priority 10
    spec = {**byo("mlserver")["spec"], "autoSelect": True, "priority": 900, "formats": ["sklearn"]}
    cluster = rt({**byo("mlserver"), "spec": spec})
    # Auto-selection: the team's runtime wins over a higher-priority cluster one.
    got = resolve(md("sklearn"), [cluster, mine])
    assert (got.kind, got.name) == ("NamespacedInferenceRuntime", "team-mlserver")
    # By name: a namespaced runtime shadows a cluster runtime of the same name.
    shadow = team(name="mlserver")
    assert (
        resolve(md("sklearn", "mlserver"), [cluster, shadow]).kind == "NamespacedInferenceRuntime"
    )
    # Another namespace's runtime is invisible.
    other = md("sklearn", ns="team-b")
    got = resolve(other, [cluster, mine])
    assert (got.kind, got.name) == ("InferenceRuntime", "mlserver")
    with pytest.raises(ResolutionFailure) as info:
        resolve(md("sklearn", "team-mlserver", ns="team-b"), [cluster, mine])
    assert info.value.reason == "RuntimeNotFound"


# --- status and the reconcile ------------------------------------------------------------------


def test_a_runtime_restricted_forbids_is_not_ready_and_says_why() -> None:
    body = _template(securityContext={"privileged": True})
    body["metadata"]["generation"] = 1
    status = runtime_status(body, [])
    (ready,) = status["conditions"]
    assert (ready["status"], ready["reason"]) == ("False", "RuntimeNotRestricted")
    assert "privileged=true" in ready["message"]
    fine = runtime_status({**byo("team-mlserver"), "metadata": {**byo("team-mlserver")["metadata"],
                                                                 "generation": 1}}, [])  # fmt: skip
    assert fine["conditions"][0]["status"] == "True"


class StatusKube(FakeKube):
    """FakeKube that keeps the last status written."""

    status: dict[str, Any]

    async def patch_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        self.status = status
        return await super().patch_status(namespace, name, status)


async def test_a_model_on_a_hostpath_runtime_is_refused_and_nothing_is_applied() -> None:
    bad = _template(volumes=[{"name": "host", "mountPath": "/host", "hostPath": {"path": "/var"}}])
    body = {
        "apiVersion": "airt.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "m", "namespace": "team", "uid": "u", "generation": 1,
                     "resourceVersion": "1"},
        "spec": {"model": {"uri": "pvc://models/m.onnx", "format": "onnx"},
                 "runtime": {"name": "bad"}},
    }  # fmt: skip
    kube = StatusKube()
    rec = Reconciler(cast(Kube, kube), OperatorMetrics(), BuildSettings.defaults())
    snap = Snapshot(body, [bad], {}, [], [], service_monitor_crd=False)
    outcome = await rec.reconcile("team", "m", lambda: snap)
    assert outcome is not None and outcome.result == Result.INVALID
    assert [w for w in kube.writes if w[0] == "apply"] == []
    conds = {c["type"]: c for c in kube.status["conditions"]}
    resolved = conds["RuntimeResolved"]
    assert (resolved["status"], resolved["reason"]) == ("False", "RuntimeNotRestricted")
    assert "volumes[host].hostPath" in resolved["message"]


async def test_a_namespaced_runtime_status_is_written_in_its_namespace_and_counts_its_own() -> None:
    from airt_operator.runtime_status_loop import RuntimeStatusLoop

    ns_rt = copy.deepcopy(byo("team-mlserver"))
    ns_rt["metadata"].update(namespace="team-a", generation=1)
    cluster_rt = copy.deepcopy(byo("mlserver"))
    cluster_rt["metadata"].update(name="team-mlserver", generation=1)  # same name, cluster kind
    models = [
        {
            "metadata": {"namespace": "team-a"},
            "status": {"runtimeName": "team-mlserver", "runtimeKind": "NamespacedInferenceRuntime"},
        },
        {
            "metadata": {"namespace": "team-b"},
            "status": {"runtimeName": "team-mlserver", "runtimeKind": "InferenceRuntime"},
        },
        {"metadata": {"namespace": "team-c"}, "status": {"runtimeName": "team-mlserver"}},
    ]
    writes: list[tuple[Any, ...]] = []

    async def write(name: str, status: dict[str, Any], namespace: str | None = None) -> None:
        writes.append((namespace, name, status["modelDeployments"]))

    loop = RuntimeStatusLoop(lambda: [ns_rt, cluster_rt], lambda: models, write)
    assert await loop.write_pass() == 2
    # The team's runtime counts the one model of its namespace that chose the namespaced kind;
    # the cluster runtime of the same name counts the others (no kind: written before the kind).
    assert sorted(writes, key=str) == sorted(
        [("team-a", "team-mlserver", 1), (None, "team-mlserver", 2)], key=str
    )


async def test_a_format_no_runtime_accepts_is_a_condition_naming_the_formats() -> None:
    body = {
        "apiVersion": "airt.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "m", "namespace": "team", "uid": "u", "generation": 1,
                     "resourceVersion": "1"},
        "spec": {"model": {"uri": "pvc://models/m.onnx", "format": "onnx"}},
    }  # fmt: skip
    catalog = [
        yaml.safe_load(p.read_text()) for p in sorted((ROOT / "examples/runtimes").glob("*.yaml"))
    ]
    catalog.append(byo("triton"))  # not auto-selected: its format is not offered
    kube = StatusKube()
    rec = Reconciler(cast(Kube, kube), OperatorMetrics(), BuildSettings.defaults())
    snap = Snapshot(body, catalog, {}, [], [], service_monitor_crd=False)
    outcome = await rec.reconcile("team", "m", lambda: snap)
    assert outcome is not None and outcome.result == Result.INVALID
    resolved = {c["type"]: c for c in kube.status["conditions"]}["RuntimeResolved"]
    assert (resolved["status"], resolved["reason"]) == ("False", "NoMatchingRuntime")
    assert resolved["message"] == (
        "no runtime accepts format onnx; formats available: torch-export, torchscript"
    )
    # A runtime that loads it but is not auto-selected is named as the way out.
    snap = Snapshot({**body, "spec": {**body["spec"], "model": {"uri": "pvc://m/r",
                                                                 "format": "triton"}}},
                    catalog, {}, [], [], service_monitor_crd=False)  # fmt: skip
    await rec.reconcile("team", "m", lambda: snap)
    resolved = {c["type"]: c for c in kube.status["conditions"]}["RuntimeResolved"]
    assert resolved["message"].endswith(
        "(runtimes that load it when named in spec.runtime.name: triton)"
    )

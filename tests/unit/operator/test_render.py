"""Rendering every example: children, security, placement, probes, network policy."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml
from opbuild import EXAMPLE_FILES, context, example, fetch_config, model, worker_config

from airt_operator.reconcile.render import render

NAMES = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in EXAMPLE_FILES]


def by_kind(children: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["kind"]: c for c in children}


@pytest.mark.parametrize("name", NAMES)
def test_every_example_renders_owned_restricted_children(name: str) -> None:
    md = example(name)
    children = render(context(md))
    kinds = [c["kind"] for c in children]
    for k in ("ServiceAccount", "Service", "NetworkPolicy", "Deployment"):
        assert k in kinds
    assert "Role" not in kinds and "RoleBinding" not in kinds  # the pod needs no API access
    for c in children:
        ref = c["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["uid"], ref["controller"]) == ("ModelDeployment", "uid-1", True)
        assert c["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "airt-operator"
    pod = by_kind(children)["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c["securityContext"]
        assert sc == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }, c["name"]
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"


def test_deployment_probes_drain_and_rollout() -> None:
    dep = by_kind(render(context(example("mlp-cpu"))))["Deployment"]
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = dep["spec"]["template"]["spec"]
    worker = pod["containers"][0]
    assert worker["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert worker["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert worker["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert worker["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert pod["terminationGracePeriodSeconds"] > 30
    ports = {p["name"]: p["containerPort"] for c in pod["containers"] for p in c["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    config = worker_config(render(context(example("mlp-cpu"))))
    assert config.threads == 2  # from the CPU limit "2"
    assert config.device == "cpu"
    assert config.device_count is None
    assert config.batching.max_batch_size == 32
    assert config.batching.preferred_batch_sizes == [8, 16, 32]
    # The template spells no worker field: one variable carries the whole configuration, then
    # the runtime's own variables (which the worker reads as overrides).
    assert [e["name"] for e in worker["env"]] == ["AIRT_WORKER_CONFIG", "AIRT_LOG_FORMAT"]


def test_remote_model_gets_a_fetch_init_container_and_storage_egress() -> None:
    children = by_kind(render(context(example("cnn-gpu"))))
    pod = children["Deployment"]["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    assert init["name"] == "model-fetch"
    assert init["args"] == ["fetch"]
    fetch = fetch_config(render(context(example("cnn-gpu"))))
    assert fetch.uri.startswith("oci://ghcr.io/airt-dev/models/cnn@sha256:")
    assert fetch.sha256 is not None and len(fetch.sha256) == 64
    assert str(fetch.dest) == "/models/model"
    egress = children["NetworkPolicy"]["spec"]["egress"]
    assert {"port": 443, "protocol": "TCP"} in egress[1]["ports"]
    assert "envFrom" not in init  # a public artifact: no credentials


def test_credentials_reach_the_fetcher_through_env_from() -> None:
    md = model(
        {
            "apiVersion": "airt.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "private"},
            "spec": {
                "model": {
                    "uri": "s3://bucket/cnn/model.pt2",
                    "format": "torch-export",
                    "sha256": "a" * 64,
                    "credentials": {"name": "store-creds"},
                }
            },
        }
    )
    pod = by_kind(render(context(md)))["Deployment"]["spec"]["template"]["spec"]
    # The kubelet reads the Secret; the operator never does.
    assert pod["initContainers"][0]["envFrom"] == [{"secretRef": {"name": "store-creds"}}]


def test_pvc_model_has_no_init_container_and_no_storage_egress() -> None:
    md = model(
        {
            "apiVersion": "airt.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "from-volume"},
            "spec": {"model": {"uri": "pvc://airt-models/mlp/model.pt", "format": "torchscript"}},
        }
    )
    children = by_kind(render(context(md)))
    pod = children["Deployment"]["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    claim = next(v for v in pod["volumes"] if v["name"] == "models")
    assert claim["persistentVolumeClaim"] == {"claimName": "airt-models", "readOnly": True}
    assert len(children["NetworkPolicy"]["spec"]["egress"]) == 1  # DNS only


def test_network_policy_default_is_same_namespace_and_metrics_from_monitoring() -> None:
    np = by_kind(render(context(example("mlp-cpu"))))["NetworkPolicy"]["spec"]
    serve, scrape = np["ingress"]
    assert serve["from"] == [{"podSelector": {}}]
    assert {p["port"] for p in serve["ports"]} == {8000, 8001}
    assert scrape["ports"] == [{"port": 8002, "protocol": "TCP"}]
    assert scrape["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }


def test_restricted_access_allows_only_the_named_namespace_and_pods() -> None:
    np = by_kind(render(context(example("mlp-checkout"))))["NetworkPolicy"]["spec"]
    serve = np["ingress"][0]
    assert serve["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "team-checkout"}},
            "podSelector": {"matchLabels": {"app": "checkout"}},
        }
    ]


def test_pdb_only_with_more_than_one_replica_and_hpa_only_with_autoscaling() -> None:
    cpu = by_kind(render(context(example("mlp-cpu"))))
    assert "PodDisruptionBudget" in cpu and "HorizontalPodAutoscaler" not in cpu
    auto = by_kind(render(context(example("mlp-autoscaled"))))
    hpa = auto["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "airt.dev/v1alpha1",
        "kind": "ModelDeployment",
        "name": "mlp-autoscaled",
    }
    single = model(
        {
            "apiVersion": "airt.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "one"},
            "spec": {"model": {"uri": "pvc://c/m.pt", "format": "torchscript"}, "replicas": 1},
        }
    )
    kinds = by_kind(render(context(single)))
    assert "PodDisruptionBudget" not in kinds and "HorizontalPodAutoscaler" not in kinds


def test_service_monitor_only_when_the_crd_exists() -> None:
    assert "ServiceMonitor" not in by_kind(render(context(example("mlp-cpu"))))
    sm = by_kind(render(context(example("mlp-cpu"), service_monitor=True)))["ServiceMonitor"]
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"


def test_values_cannot_change_manifest_structure() -> None:
    # Runtime env values are free text: YAML syntax in one stays one string value.
    ctx = dataclasses.replace(
        context(example("mlp-cpu")), runtime_env=(("EVIL", "a: b\n- c: {d}"),)
    )
    dep = by_kind(render(ctx))["Deployment"]
    env = {
        e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["EVIL"] == "a: b\n- c: {d}"


def _autoscaled(target: dict[str, Any] | None) -> dict[str, Any]:
    autoscaling: dict[str, Any] = {"minReplicas": 1, "maxReplicas": 4}
    if target is not None:
        autoscaling["target"] = target
    md = model(
        {
            "apiVersion": "airt.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "auto"},
            "spec": {
                "model": {"uri": "pvc://c/m.pt", "format": "torchscript"},
                "autoscaling": autoscaling,
            },
        }
    )
    return by_kind(render(context(md)))["HorizontalPodAutoscaler"]["spec"]  # type: ignore[no-any-return]


def test_hpa_targets_what_the_api_says() -> None:
    from airt_operator.api.modeldeployment import DEFAULT_CPU_UTILIZATION, INFLIGHT_METRIC

    # Omitted: the API's documented default, not a template's own number.
    assert DEFAULT_CPU_UTILIZATION == 80
    (cpu,) = _autoscaled(None)["metrics"]
    assert cpu["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION},
    }
    (cpu,) = _autoscaled({"cpuUtilization": 55})["metrics"]
    assert cpu["resource"]["target"]["averageUtilization"] == 55
    (pods,) = _autoscaled({"inflightRequests": 12})["metrics"]
    assert pods == {
        "type": "Pods",
        "pods": {
            "metric": {"name": INFLIGHT_METRIC},
            "target": {"type": "AverageValue", "averageValue": "12"},
        },
    }

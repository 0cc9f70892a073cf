"""What `helm template` renders: labels, names, security, CRDs, runtimes, gates and preflight.

The chart is rendered with the pinned helm (no cluster); objects are checked as parsed YAML.
The e2e tier (tests/e2e) then installs the same chart into the real control plane.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import CHART, ROOT, SERVED, Render, by_kind, helm_template, one

from airt_operator.api import parse_inference_runtime

STANDARD_LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
)


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_default_render_has_every_part(render: Render) -> None:
    kinds = sorted(o["kind"] for o in render())
    assert kinds == sorted(
        [
            "ClusterKopfPeering",
            "ClusterRole",  # cluster-scoped objects and reads
            "ClusterRole",  # namespaced writes
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "ValidatingAdmissionPolicy",  # keeps those writes out of protected namespaces
            "ValidatingAdmissionPolicyBinding",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "InferenceRuntime",
            "InferenceRuntime",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        ]
    )


def test_every_object_has_the_standard_labels(render: Render) -> None:
    everything = render(
        "--set",
        "serviceMonitor.enabled=true,dashboards.enabled=true,prometheusRules.enabled=true",
    )
    for obj in everything:
        labels = obj["metadata"].get("labels", {})
        missing = [k for k in STANDARD_LABELS if k not in labels]
        assert not missing, (obj["kind"], obj["metadata"]["name"], missing)
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_names_are_truncated_to_63(render: Render) -> None:
    release = "a-very-long-release-name-that-goes-on-and-on-for-ev"  # helm allows 53
    override = "x" * 63
    for obj in [*render(release=release), *render("--set", f"fullnameOverride={override}")]:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
        assert not obj["metadata"]["name"].endswith("-")
        for value in obj["metadata"].get("labels", {}).values():
            assert len(str(value)) <= 63


def test_operator_pod_is_restricted_with_probes_and_metrics(render: Render) -> None:
    deployment = one(render(), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["args"] == ["run"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    env = _env(container)
    assert env["AIRT_OPERATOR_STANDALONE"] == "false"
    assert env["AIRT_OPERATOR_PEERING_NAME"] == "airt"
    assert env["AIRT_OPERATOR_MONITORING_NAMESPACE"] == "monitoring"
    assert env["AIRT_OPERATOR_HEALTH_PORT"] == "8080"
    assert container["image"] == "ghcr.io/airt-dev/operator:0.1.0"


def test_one_replica_runs_standalone_without_peering_or_pdb(render: Render) -> None:
    objects = render("--set", "replicaCount=1")
    env = _env(one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    assert env["AIRT_OPERATOR_STANDALONE"] == "true"
    assert not by_kind(objects, "ClusterKopfPeering")
    assert not by_kind(objects, "PodDisruptionBudget")


def test_peering_object_is_named_after_the_release(render: Render) -> None:
    objects = render(release="prod")
    peering = one(objects, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "prod-airt"
    env = _env(one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    assert env["AIRT_OPERATOR_PEERING_NAME"] == "prod-airt"


def test_digest_wins_over_tag(render: Render) -> None:
    digest = "sha256:" + "a" * 64
    objects = render("--set", f"images.operator.digest={digest},images.workerCpu.digest={digest}")
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"ghcr.io/airt-dev/operator@{digest}"
    cpu = next(o for o in by_kind(objects, "InferenceRuntime") if o["spec"]["accelerator"] == "cpu")
    assert cpu["spec"]["container"]["image"] == f"ghcr.io/airt-dev/worker-cpu@{digest}"


def _crds(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in by_kind(objects, "CustomResourceDefinition")}


def test_crds_are_the_generated_ones_with_keep(render: Render) -> None:
    crds = _crds(render())
    generated = {}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                generated[doc["metadata"]["name"]] = doc
    assert (
        set(crds)
        == set(generated)
        == {
            "modeldeployments.airt.dev",
            "inferenceruntimes.airt.dev",
            "namespacedinferenceruntimes.airt.dev",
        }
    )
    for name, crd in crds.items():
        assert crd["spec"] == generated[name]["spec"], name
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/part-of"] == "airt"


def test_crds_keep_false_and_enabled_false(render: Render) -> None:
    for crd in _crds(render("--set", "crds.keep=false")).values():
        assert "annotations" not in crd["metadata"]
    assert not _crds(render("--set", "crds.enabled=false"))


def test_chart_crd_copies_match_crds_dir() -> None:
    source = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    copies = {p.name: p.read_text() for p in (CHART / "files" / "crds").glob("*.yaml")}
    assert copies == source, "charts/airt/files/crds drifted from crds/: run `make generate`"


def test_kopf_peering_crds_are_in_the_chart_crds_dir() -> None:
    docs = [d for d in yaml.safe_load_all((CHART / "crds" / "kopf-peering.yaml").read_text()) if d]
    scopes = {d["metadata"]["name"]: d["spec"]["scope"] for d in docs}
    assert scopes == {
        "clusterkopfpeerings.kopf.dev": "Cluster",
        "kopfpeerings.kopf.dev": "Namespaced",
    }
    for doc in docs:
        (version,) = doc["spec"]["versions"]
        assert version["name"] == "v1" and version["served"] and version["storage"]
        assert version["schema"]["openAPIV3Schema"]["x-kubernetes-preserve-unknown-fields"]


def test_default_runtimes_are_valid_inference_runtimes(render: Render) -> None:
    runtimes = {o["metadata"]["name"]: o for o in by_kind(render(), "InferenceRuntime")}
    assert set(runtimes) == {"torch-cpu", "torch-cuda"}
    for obj in runtimes.values():
        parsed = parse_inference_runtime(obj)
        assert parsed.spec.image.startswith("ghcr.io/airt-dev/worker-")
        assert parsed.spec.container is not None and parsed.spec.container.airt_worker_config
    assert runtimes["torch-cpu"]["spec"]["accelerator"] == "cpu"
    assert runtimes["torch-cpu"]["spec"]["policy"]["maxGpusPerReplica"] == 0
    assert runtimes["torch-cuda"]["spec"]["accelerator"] == "nvidia"
    assert runtimes["torch-cuda"]["spec"]["container"]["image"].startswith(
        "ghcr.io/airt-dev/worker-cuda:"
    )


def test_runtimes_follow_values(render: Render) -> None:
    objects = render(
        "--set", "defaultRuntimes.torchCuda.enabled=false,defaultRuntimes.torchCpu.priority=7"
    )
    (cpu,) = by_kind(objects, "InferenceRuntime")
    assert cpu["spec"]["priority"] == 7
    annotations = cpu["metadata"]["annotations"]
    assert not any(k.startswith("helm.sh/hook") for k in annotations)  # an ordinary object
    assert annotations["argocd.argoproj.io/sync-options"] == "SkipDryRunOnMissingResource=true"


def test_first_install_creates_the_runtimes_in_a_post_install_hook(render: Render) -> None:
    """Before the API server serves InferenceRuntime, the same `helm install` still creates the
    runtimes: as a post-install hook (after its CRDs exist), owned the way the next upgrade
    adopts them."""
    first = render("--set", "exampleRuntimes.triton.enabled=true", release="one", served=())
    runtimes = {r["metadata"]["name"]: r for r in by_kind(first, "InferenceRuntime")}
    assert set(runtimes) == {"torch-cpu", "torch-cuda", "triton"}
    for rt in runtimes.values():
        meta = rt["metadata"]
        assert meta["annotations"]["helm.sh/hook"] == "post-install"
        assert meta["annotations"]["meta.helm.sh/release-name"] == "one"
        assert meta["annotations"]["meta.helm.sh/release-namespace"] == "airt-system"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"


def test_values_schema_field_names_follow_the_inference_runtime_crd() -> None:
    crd = yaml.safe_load(
        (ROOT / "crds" / "airt.dev_inferenceruntimes.yaml").read_text().split("---", 1)[1]
    )
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())
    for key in ("torchCpu", "torchCuda"):
        rt = schema["properties"]["defaultRuntimes"]["properties"][key]["properties"]
        for field in ("formats", "priority", "autoSelect"):
            assert field in spec["properties"], field
        assert set(rt["resources"]["properties"]) <= set(
            spec["properties"]["defaults"]["properties"]["resources"]["properties"]
        )
        assert set(rt["policy"]["properties"]) <= set(spec["properties"]["policy"]["properties"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "serviceMonitor.enabled=true,podMonitor.enabled=true"), "both true"),
        (("--set", "replicaCount=2,podDisruptionBudget.minAvailable=2"), "lower than replicaCount"),
        (("--set", "serviceAccount.create=false"), "serviceAccount.name"),
        (("--set", "defaultRuntimes.torchCuda.name=torch-cpu"), "different names"),
        (("--set", "crds.enabled=false"), "apply crds/ first"),
        (("--set", "images.operator.digest=latest"), "digest"),
        (("--set", "replicaCont=3"), "replicaCont"),  # a typo: values.schema.json refuses it
        (("--set", "crds.kep=true"), "kep"),
        (("--set", "replicaCount=0"), "replicaCount"),
    ],
)
def test_conflicting_or_unknown_values_fail(
    helm: Path, args: tuple[str, ...], message: str
) -> None:
    served = () if "crds.enabled=false" in args[1] else ("airt.dev/v1alpha1/InferenceRuntime",)
    proc = helm_template(helm, *args, served=served)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_monitoring_objects_are_gated(render: Render) -> None:
    base = {o["kind"] for o in render()}
    assert not base & {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ConfigMap"}
    sm = one(render("--set", "serviceMonitor.enabled=true"), "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    pm = one(render("--set", "podMonitor.enabled=true"), "PodMonitor")
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_dashboards_configmap_and_prometheus_rules(render: Render) -> None:
    objects = render("--set", "dashboards.enabled=true,prometheusRules.enabled=true")
    cm = one(objects, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboards = sorted(p.name for p in (CHART / "dashboards").glob("*.json"))
    assert sorted(cm["data"]) == dashboards
    rules = by_kind(objects, "PrometheusRule")
    alerts = sorted((CHART / "alerts").glob("*.yaml"))
    assert len(rules) == len(alerts)
    for rule, path in zip(sorted(rules, key=lambda r: r["metadata"]["name"]), alerts, strict=True):
        assert rule["spec"] == yaml.safe_load(path.read_text())


def test_network_policy_allows_metrics_from_monitoring_only(render: Render) -> None:
    policy = one(render("--set", "monitoringNamespace=prom"), "NetworkPolicy")
    (ingress,) = policy["spec"]["ingress"]
    assert ingress["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert ingress["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prom"}}}
    ]
    assert not by_kind(render("--set", "networkPolicy.enabled=false"), "NetworkPolicy")


def test_operator_env_names_are_operator_settings(render: Render) -> None:
    """Every AIRT_OPERATOR_* the chart sets is a field of OperatorSettings (no silent typos)."""
    from airt_operator.settings import OperatorSettings

    prefix = "AIRT_OPERATOR_"
    fields = {name.upper() for name in OperatorSettings.model_fields}
    container = one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    names = [e["name"] for e in container["env"] if e["name"].startswith(prefix)]
    assert names
    unknown = [n for n in names if n.removeprefix(prefix) not in fields]
    assert not unknown, f"OperatorSettings has no field for {unknown}"
    # The values pass the settings' own validation.
    env = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith(prefix)}
    settings = OperatorSettings(**{k.removeprefix(prefix).lower(): v for k, v in env.items()})
    assert settings.health_port == 8080 and settings.standalone is False


def test_example_runtimes_are_off_by_default_and_match_the_examples(render: Render) -> None:
    assert {o["metadata"]["name"] for o in by_kind(render(), "InferenceRuntime")} == {
        "torch-cpu",
        "torch-cuda",
    }
    on = "exampleRuntimes.triton.enabled=true,exampleRuntimes.mlserver.enabled=true"
    objects = render("--set", on + ",exampleRuntimes.vllm.enabled=true")
    runtimes = {o["metadata"]["name"]: o for o in by_kind(objects, "InferenceRuntime")}
    for name in ("triton", "mlserver", "vllm"):
        example = yaml.safe_load((ROOT / "examples/runtimes/byo" / f"{name}.yaml").read_text())
        assert runtimes[name]["spec"] == example["spec"], name
        parsed = parse_inference_runtime(runtimes[name])
        assert parsed.spec.container is not None and not parsed.spec.container.airt_worker_config


def test_works_as_a_dependency_of_an_umbrella_chart(helm: Path, tmp_path: Path) -> None:
    """A platform chart that pulls airt in as a dependency, with Helm's `global` values set:
    the schema accepts `global`, and the umbrella's values reach the subchart."""
    umbrella = tmp_path / "platform"
    (umbrella / "charts").mkdir(parents=True)
    shutil.copytree(CHART, umbrella / "charts" / "airt")
    airt_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    (umbrella / "Chart.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v2",
                "name": "platform",
                "version": "1.0.0",
                "dependencies": [
                    {"name": "airt", "version": airt_version, "repository": "file://charts/airt"}
                ],
            }
        )
    )
    (umbrella / "values.yaml").write_text(
        yaml.safe_dump(
            {
                "global": {"imageRegistry": "registry.example.com", "team": {"name": "ml"}},
                "airt": {"replicaCount": 1, "defaultRuntimes": {"torchCuda": {"enabled": False}}},
            }
        )
    )
    lint = subprocess.run(
        [str(helm), "lint", str(umbrella), "--strict", "--with-subcharts"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0 and "[ERROR]" not in lint.stdout, lint.stdout + lint.stderr
    cmd = [str(helm), "template", "platform", str(umbrella), "-n", "airt-system"]
    cmd += ["--kube-version", "1.34.4"]
    for api in SERVED:
        cmd += ["--api-versions", api]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    objects = [d for d in yaml.safe_load_all(proc.stdout) if d]
    deployment = one(objects, "Deployment")
    assert deployment["metadata"]["name"] == "platform-airt-operator"
    assert deployment["spec"]["replicas"] == 1
    assert [r["metadata"]["name"] for r in by_kind(objects, "InferenceRuntime")] == ["torch-cpu"]
    assert len(by_kind(objects, "CustomResourceDefinition")) >= 3
    # A typo under the subchart's key still fails: only `global` is open.
    typo = subprocess.run(
        [*cmd, "--set", "airt.replicaCont=1"], capture_output=True, text=True, check=False
    )
    assert typo.returncode != 0 and "replicaCont" in typo.stderr, typo.stderr


def test_operator_tracing_sets_otel_env_and_egress(render: Render) -> None:
    """operator.tracing: the standard OTEL_* variables and egress to the receiver's port; none
    of either by default."""

    def parts(*args: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
        objects = render(*args)
        container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value", "") for e in container["env"]}
        return env, one(objects, "NetworkPolicy")["spec"]["egress"]

    env, egress = parts()
    assert not [k for k in env if k.startswith("OTEL_")]
    assert len(egress) == 2  # DNS and the API server
    env, egress = parts(
        "--set", "operator.tracing.endpoint=http://otel-collector.observability:4317",
        "--set", "operator.tracing.samplingPercent=50",
    )  # fmt: skip
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.5"
    assert egress[-1] == {"ports": [{"port": 4317, "protocol": "TCP"}]}
    _, egress = parts(
        "--set", "operator.tracing.endpoint=https://otlp.example.com",
        "--set", "operator.tracing.protocol=http/protobuf",
    )  # fmt: skip
    assert egress[-1] == {"ports": [{"port": 4318, "protocol": "TCP"}]}

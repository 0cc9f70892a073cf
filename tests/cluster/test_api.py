"""The airt API as the real kube-apiserver enforces it: CRDs install, examples are accepted, and
every manifest of the shared invalid table is refused with a message naming the offending field.

Cluster tier: uses the session cluster (tests/conftest.py) and a namespace of its own. The CRDs
are applied server-side and left installed (other tests in the session use them). Every wait is on
a condition with a deadline; nothing sleeps.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from airt_dev.cluster import Cluster
from airt_dev.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
CRD_NAMES = (
    "modeldeployments.airt.dev",
    "inferenceruntimes.airt.dev",
    "namespacedinferenceruntimes.airt.dev",
)


def _load_cases() -> ModuleType:
    path = ROOT / "tests" / "unit" / "api" / "api_cases.py"
    spec = importlib.util.spec_from_file_location("airt_api_cases", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_cases = _load_cases()
CASES = _cases.load_cases()
VALID = _cases.load_valid()
EXAMPLES = sorted(
    p
    for p in (ROOT / "examples").rglob("*.yaml")
    if p.relative_to(ROOT / "examples").parts[0] != "models"
)


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Cluster:
    """The cluster with the airt CRDs installed, established and published in OpenAPI."""
    cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=airt-crds",
        "-f", str(ROOT / "crds"),
    )  # fmt: skip
    cluster.wait_crds_established(*CRD_NAMES)
    wait_for(
        lambda: (
            cluster.kubectl("explain", "modeldeployment.spec.model", check=False).returncode == 0
        ),
        60,
        "the ModelDeployment schema to be published in OpenAPI",
    )
    return cluster


@pytest.fixture(scope="module")
def namespace(api: Cluster) -> Iterator[str]:
    name = f"api-{uuid.uuid4().hex[:8]}"
    api.kubectl("create", "namespace", name)
    yield name
    api.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _names_field(output: str, field: str) -> bool:
    """Whether the API server's message names `field` (optionally with a leading dot), exactly."""
    pattern = rf"(?<![\w.])\.?{re.escape(field)}(?![\w.\[])"
    return re.search(pattern, output) is not None


def test_crds_established_with_names_and_categories(api: Cluster) -> None:
    for name in CRD_NAMES:
        crd = api.get_json(f"crd/{name}")
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions.get("NamesAccepted") == "True"
        assert crd["spec"]["names"]["categories"] == ["airt"]
        assert crd["status"]["acceptedNames"]["shortNames"] in (["md"], ["irt"], ["nirt"])


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT / "examples")))
def test_example_accepted_by_server_side_dry_run(api: Cluster, namespace: str, path: Path) -> None:
    proc = api.kubectl(
        "apply", "--server-side", "--dry-run=server", "--validate=strict",
        "--field-manager=airt-test", "-n", namespace, "-f", str(path), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "serverside-applied (server dry run)" in proc.stdout


@pytest.mark.parametrize("mode", ["apply", "server-side"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_manifest_refused_naming_the_field(
    api: Cluster, namespace: str, case: Any, mode: str
) -> None:
    args = ["apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-"]
    field = case.field
    if mode == "server-side":
        args += ["--server-side", "--field-manager=airt-test"]
        field = case.ssa_field or case.field
    proc = api.kubectl(*args, input=yaml.safe_dump(case.manifest), check=False)
    assert proc.returncode != 0, f"accepted: {proc.stdout}"
    assert _names_field(proc.stderr, field), proc.stderr


@pytest.mark.parametrize("mode", ["apply", "server-side"])
@pytest.mark.parametrize(("case_id", "manifest"), VALID, ids=[v[0] for v in VALID])
def test_valid_edge_case_accepted(
    api: Cluster, namespace: str, case_id: str, manifest: dict[str, Any], mode: str
) -> None:
    args = ["apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-"]
    if mode == "server-side":
        args += ["--server-side", "--field-manager=airt-test"]
    proc = api.kubectl(*args, input=yaml.safe_dump(manifest), check=False)
    assert proc.returncode == 0, proc.stderr


def test_explain_shows_descriptions(api: Cluster) -> None:
    out = api.kubectl("explain", "modeldeployment.spec.resources.gpu").stdout
    assert "GPUs per replica" in out
    for field in ("count", "products", "minMemoryGiB", "mig"):
        assert re.search(rf"^\s+{field}\s", out, re.MULTILINE), out
    assert "nvidia.com/gpu.product" in out
    runtime = api.kubectl("explain", "inferenceruntime.spec.policy").stdout
    assert "allowedImagePrefixes" in runtime and "Rules every ModelDeployment" in runtime


@pytest.fixture(scope="module")
def created(api: Cluster, namespace: str) -> str:
    """A real (not dry-run) ModelDeployment with an operator-like status written to it."""
    api.kubectl("apply", "--server-side", "--field-manager=airt-test", "-n", namespace,
                "-f", str(ROOT / "examples" / "deployments" / "cpu-mlp.yaml"))  # fmt: skip
    status = {
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "selector": "app.kubernetes.io/instance=mlp-cpu",
            "url": f"http://mlp-cpu.{namespace}.svc:8000",
            "runtimeName": "torch-cpu",
            "gpu": "",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Ready",
                    "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
    }
    api.kubectl("patch", "md/mlp-cpu", "-n", namespace, "--subresource=status", "--type=merge",
                "-p", json.dumps(status))  # fmt: skip
    return "mlp-cpu"


def test_get_shows_printer_columns(api: Cluster, namespace: str, created: str) -> None:
    out = api.kubectl("get", "md", "-n", namespace).stdout
    header, *rows = out.strip().splitlines()
    assert header.split() == [
        "NAME", "MODEL", "RUNTIME", "GPU", "ALLOCATED", "READY", "REPLICAS", "URL", "AGE"
    ]  # fmt: skip
    row = next(r for r in rows if r.startswith(created)).split()
    cpu_mlp = yaml.safe_load((ROOT / "examples" / "deployments" / "cpu-mlp.yaml").read_text())
    assert row[1] == cpu_mlp["spec"]["model"]["uri"]
    assert row[2] == "torch-cpu" and "True" in row and "2" in row
    wide = api.kubectl("get", "md", "-n", namespace, "-o", "wide").stdout.splitlines()[0].split()
    assert wide[-3:] == ["AVAILABLE", "REASON", "FORMAT"]
    assert created in api.kubectl("get", "airt", "-n", namespace).stdout


def test_runtime_is_cluster_scoped_with_columns(api: Cluster) -> None:
    name = f"api-test-{uuid.uuid4().hex[:8]}"
    runtime = yaml.safe_load((ROOT / "examples" / "runtimes" / "torch-cpu.yaml").read_text())
    runtime["metadata"]["name"] = name
    runtime["spec"]["autoSelect"] = False  # never picked for other tests' models
    api.kubectl("apply", "--server-side", "--field-manager=airt-test", "-f", "-",
                input=yaml.safe_dump(runtime))  # fmt: skip
    try:
        out = api.kubectl("get", "irt", name).stdout.splitlines()
        assert out[0].split() == ["NAME", "ACCELERATOR", "FORMATS", "PRIORITY", "READY", "AGE"]
        assert out[1].split()[:2] == [name, "cpu"]
        assert "torchscript" in out[1]
        assert api.get_json(f"irt/{name}")["metadata"].get("namespace") is None
    finally:
        api.kubectl("delete", "irt", name, "--wait=false", check=False)


def test_status_is_a_subresource(api: Cluster, namespace: str, created: str) -> None:
    # A status sent to the main resource is ignored: the operator alone writes status.
    patch = {"status": {"runtimeName": "forged"}}
    api.kubectl("patch", f"md/{created}", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    obj = api.get_json(f"md/{created}", "-n", namespace)
    assert obj["status"]["runtimeName"] == "torch-cpu"


def test_scale_changes_spec_replicas(api: Cluster, namespace: str, created: str) -> None:
    api.kubectl("scale", f"md/{created}", "-n", namespace, "--replicas=3")
    obj = api.get_json(f"md/{created}", "-n", namespace)
    assert obj["spec"]["replicas"] == 3
    scale = json.loads(
        api.kubectl(
            "get", "--raw",
            f"/apis/airt.dev/v1alpha1/namespaces/{namespace}/modeldeployments/{created}/scale",
        ).stdout
    )  # fmt: skip
    assert scale["kind"] == "Scale"
    assert scale["spec"]["replicas"] == 3
    assert scale["status"]["replicas"] == 2
    assert scale["status"]["selector"] == "app.kubernetes.io/instance=mlp-cpu"


def test_defaults_are_applied_by_the_server(api: Cluster, namespace: str) -> None:
    manifest = {
        "apiVersion": "airt.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "defaults"},
        "spec": {
            "model": {"uri": "pvc://models/mlp/model.pt", "format": "torchscript"},
            "resources": {"gpu": {"mig": "1g.5gb"}},
            "autoscaling": {"maxReplicas": 3},
        },
    }
    proc = api.kubectl("create", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-",
                       input=json.dumps(manifest))  # fmt: skip
    spec = json.loads(proc.stdout)["spec"]
    assert spec["replicas"] == 1
    assert spec["resources"]["gpu"]["count"] == 1
    assert spec["autoscaling"]["minReplicas"] == 1

"""One-step install from an OCI registry, on an empty cluster, and installs over objects that
already exist.

e2e tier, on a control plane of its own (`<cluster name>-oci`, started and deleted by this
module): the session cluster already has the airt CRDs, and an empty cluster is the point. The
chart is packaged and pushed the way `make chart` does (airt_dev.chartpub) to the pinned local
registry (airt_dev.oci_registry), then installed from there with a plain `helm install`. The
tests run in file order: install, upgrade, uninstall, install over kept CRDs, install over
runtimes created outside Helm.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airt_dev import chartpub
from airt_dev.cluster import Cluster, ClusterManager
from airt_dev.oci_registry import local_registry
from airt_dev.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
AIRT_CRDS = ("inferenceruntimes.airt.dev", "modeldeployments.airt.dev")
RUNTIMES = ("torch-cpu", "torch-cuda")


class Oci:
    """The pushed chart and the cluster it is installed into."""

    def __init__(self, cluster: Cluster, published: chartpub.Published) -> None:
        self.cluster = cluster
        self.published = published

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.helm(*args, check=check)

    def install(
        self, release: str, namespace: str, *extra: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`helm install <release> oci://…/airt --version …`, as a platform team types it."""
        return self.helm(
            "install", release, self.published.ref, "--version", self.published.version,
            "--plain-http", "-n", namespace, "--create-namespace",
            "--set", "replicaCount=1", "--wait", "--timeout", "180s", *extra,
            check=check,
        )  # fmt: skip

    def runtime(self, name: str) -> dict[str, Any] | None:
        proc = self.cluster.kubectl("get", "inferenceruntime", name, "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def wait_gone(self, *names: str) -> None:
        for name in names:
            wait_for(lambda n=name: self.runtime(n) is None, 60, f"{name} to be deleted")  # type: ignore[misc]


@pytest.fixture(scope="module")
def oci(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oci]:
    name = os.environ.get("AIRT_CLUSTER_NAME", "airt") + "-oci"
    manager = ClusterManager(name=name)
    manager.down()  # whatever an interrupted run left
    manager.up()
    cluster = manager.cluster()
    try:
        for crd in AIRT_CRDS:
            assert cluster.kubectl("get", "crd", crd, check=False).returncode != 0
        helm = cluster.bin_dir / "helm"
        with local_registry(cluster.bin_dir) as registry:
            tgz = chartpub.package(helm, tmp_path_factory.mktemp("dist"))
            published = chartpub.push(helm, tgz, f"oci://{registry}/charts", plain_http=True)
            yield Oci(cluster, published)
    finally:
        manager.down()


def _error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("Error:")]


def test_one_helm_install_from_oci_brings_crds_operator_and_runtimes(oci: Oci) -> None:
    assert oci.published.ref.endswith("/charts/airt") and oci.published.digest
    out = oci.install("airt", "airt-system").stdout
    assert "--reuse-values" not in out and "kubectl get inferenceruntimes" in out, out
    status = json.loads(oci.helm("status", "airt", "-n", "airt-system", "-o", "json").stdout)
    assert status["info"]["status"] == "deployed" and status["version"] == 1
    oci.cluster.wait_crds_established(*AIRT_CRDS)
    for name in RUNTIMES:
        runtime = oci.runtime(name)
        assert runtime is not None, f"the first helm install did not create {name}"
    deployment = oci.cluster.get_json("deployment", "airt-operator", "-n", "airt-system")
    assert deployment["status"].get("readyReplicas") == 1


def test_the_next_upgrade_adopts_the_runtimes_with_its_values(oci: Oci) -> None:
    def upgrade(priority: int) -> None:
        oci.helm(
            "upgrade", "airt", oci.published.ref, "--version", oci.published.version,
            "--plain-http", "-n", "airt-system", "--reuse-values",
            "--set", f"defaultRuntimes.torchCpu.priority={priority}",
            "--wait", "--timeout", "180s",
        )  # fmt: skip

    # The first upgrade takes the install hook's runtimes into the release, values applied.
    upgrade(7)
    manifest = oci.helm("get", "manifest", "airt", "-n", "airt-system").stdout
    for name in RUNTIMES:
        assert f"name: {name}\n" in manifest, f"{name} is not a release object after the upgrade"
    adopted = oci.runtime("torch-cpu")
    assert adopted is not None and adopted["spec"]["priority"] == 7
    # From then on an ordinary release object: patched in place, never recreated.
    upgrade(8)
    patched = oci.runtime("torch-cpu")
    assert patched is not None and patched["spec"]["priority"] == 8
    assert patched["metadata"]["uid"] == adopted["metadata"]["uid"]


def test_install_over_kept_crds_names_the_flag_then_adopts_with_it(oci: Oci) -> None:
    oci.helm("uninstall", "airt", "-n", "airt-system", "--wait", "--timeout", "120s")
    for crd in AIRT_CRDS:  # kept (crds.keep), still owned by the old release
        assert oci.cluster.kubectl("get", "crd", crd, check=False).returncode == 0
    oci.wait_gone(*RUNTIMES)  # release objects since the upgrade: gone with it

    refused = oci.install("platform", "platform-system", check=False)
    assert refused.returncode != 0
    (line,) = _error_lines(refused)
    assert "CustomResourceDefinition" in line and "owned by the release airt" in line, line
    assert "--take-ownership --set takeOwnership=true" in line, line
    assert "crds.enabled=false" in line, line

    oci.install("platform", "platform-system", "--take-ownership", "--set", "takeOwnership=true")
    for crd in AIRT_CRDS:
        meta = oci.cluster.get_json("crd", crd)["metadata"]
        assert meta["annotations"]["meta.helm.sh/release-name"] == "platform"
    for name in RUNTIMES:
        assert oci.runtime(name) is not None


def test_install_over_runtimes_made_outside_helm_names_the_flag(oci: Oci) -> None:
    oci.helm("uninstall", "platform", "-n", "platform-system", "--wait", "--timeout", "120s")
    oci.wait_gone(*RUNTIMES)
    # What `make dev` does: the CRDs and the default runtimes applied with kubectl.
    oci.cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "examples" / "runtimes"))
    refused = oci.install("late", "late-system", "--set", "crds.enabled=false", check=False)
    assert refused.returncode != 0
    (line,) = _error_lines(refused)
    assert "InferenceRuntime torch-" in line and "created outside Helm" in line, line
    assert "--take-ownership --set takeOwnership=true" in line, line
    assert "--set defaultRuntimes.torchC" in line and ".enabled=false" in line, line

    oci.install(
        "late", "late-system", "--set", "crds.enabled=false",
        "--set", "defaultRuntimes.torchCpu.enabled=false",
        "--set", "defaultRuntimes.torchCuda.enabled=false",
    )  # fmt: skip
    for name in RUNTIMES:  # left as they were
        runtime = oci.runtime(name)
        assert runtime is not None
        assert "meta.helm.sh/release-name" not in (runtime["metadata"].get("annotations") or {})

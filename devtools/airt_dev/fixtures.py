"""What the tests' models assume exists: a model volume (pvc://airt-models/...) and S3
credentials in a namespace, and the example models built (example_models, cached by
examples/model_cache.py). The examples themselves need neither: their models are pinned OCI
artifacts (examples/README.md).

Called by `make dev` (tools/dev.sh) and by the cluster and e2e tiers before they apply the
examples. The PersistentVolume is pre-bound to its claim (claimRef + volumeName), so binding
needs no provisioner — kwok clusters have none.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from airt_dev.cluster import REPO_ROOT, Cluster, ClusterError

MODEL_CLAIM = "airt-models"
S3_SECRET = "airt-examples-s3"


def model_volume(namespace: str) -> list[dict[str, Any]]:
    pv_name = f"airt-models-{namespace}"[:253]
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv_name, "labels": {"airt.dev/dev-fixture": "true"}},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadOnlyMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "airt-local",
                "hostPath": {"path": "/var/lib/airt/models"},
                "claimRef": {"namespace": namespace, "name": MODEL_CLAIM},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": MODEL_CLAIM, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "airt-local",
                "volumeName": pv_name,
                "resources": {"requests": {"storage": "10Gi"}},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            # The label is the namespace owner's consent to hand this Secret to model fetchers.
            "metadata": {
                "name": S3_SECRET,
                "namespace": namespace,
                "labels": {"airt.dev/model-credentials": "true"},
            },
            "type": "Opaque",
            "stringData": {"AWS_ACCESS_KEY_ID": "example", "AWS_SECRET_ACCESS_KEY": "example"},
        },
    ]


def apply_files(cluster: Cluster, *paths: Path, namespace: str | None = None) -> None:
    """Server-side apply files or folders as the dev/test manager, taking over shared fields
    (several tiers apply the same CRDs and runtimes to one cluster)."""
    args = ["apply", "--server-side", "--force-conflicts", "--field-manager=airt-dev"]
    if namespace:
        args += ["-n", namespace]
    cluster.kubectl(*args, *[a for p in paths for a in ("-f", str(p))])


def example_copies(n: int, prefix: str, cpu: str, memory: str) -> list[dict[str, Any]]:
    """N copies of the CPU example ModelDeployment (`<prefix>-<i>`), one replica each with small
    requests, so that many fit on the dev node pool (scale tests and the operator benchmark)."""
    base = yaml.safe_load((REPO_ROOT / "examples" / "deployments" / "cpu-mlp.yaml").read_text())
    out = []
    for i in range(n):
        md = copy.deepcopy(base)
        md["metadata"] = {"name": f"{prefix}-{i:04d}"}
        md["spec"]["replicas"] = 1
        md["spec"]["resources"] = {"cpu": cpu, "memory": memory}
        out.append(md)
    return out


def install_api(cluster: Cluster) -> None:
    """The airt CRDs (established) and the default InferenceRuntimes from examples/runtimes."""
    apply_files(cluster, REPO_ROOT / "crds")
    cluster.wait_crds_established()
    apply_files(cluster, REPO_ROOT / "examples" / "runtimes")


def ensure_fixtures(cluster: Cluster, namespace: str) -> None:
    """Create the model volume, its claim and the example credentials (idempotent)."""
    cluster.apply_objects(model_volume(namespace))


def example_models() -> Path:
    """The example models' folder, built once per builder and torch version
    (examples/model_cache.py, run as a script so that a cache hit imports no torch)."""
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "model_cache.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise ClusterError(f"building the example models failed:\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip())

"""Fixtures of the real-node e2e tests: the node, the model store, the operator, the served model.

The real node (containerd + runc + the pinned kubelet, kube-router's firewall) joins the session
cluster for each module here (module scope: this folder is not a Python package, so a "package"
fixture would live until the session ends and leave kwok's CPU nodes cordoned for the tests that
follow), and kwok's CPU nodes are cordoned meanwhile, so every CPU pod
created here runs as real containers on it. On a machine that cannot host containers the
package is skipped with the list of what is missing (realnode_preflight); any other failure
fails the tests.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from realnode_helpers import MODEL_STORE_SECRET, apply, md_manifest, wait_condition

from airt_dev import realnode_preflight as preflight
from airt_dev.cluster import CACHE_ROOT, REPO_ROOT, Cluster
from airt_dev.fixtures import install_api
from airt_dev.modelstore import ModelStore
from airt_dev.operator_proc import OperatorProcess
from airt_dev.realnode import RealNode, default_layout, set_real_node_only

#: Held while a real node is up for these tests; `flock /tmp/airt-realnode.lock CMD` takes the
#: same lock around anything else that brings a real node up by hand.
REALNODE_LOCK = Path("/tmp/airt-realnode.lock")


@dataclass(frozen=True)
class Store:
    store: ModelStore
    models: Path  # the example models built for this run
    mlp_uri: str  # oci://<node ip>/models/mlp@sha256:<manifest>
    mlp_sha256: str  # hex digest of mlp.pt


@dataclass(frozen=True)
class Env:
    cluster: Cluster
    node: RealNode
    store: Store
    ns: str  # the models' namespace (Pod Security `restricted` enforced)
    other: str  # another namespace, not allowed by the models' NetworkPolicy
    monitoring: str  # the namespace allowed to scrape 8002
    op: OperatorProcess


def build_images() -> dict[str, Any]:
    """The runtime images, built by tools/images/build.sh (cached: nothing to do when current)."""
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "tools" / "images" / "build.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"tools/images/build.sh failed:\n{proc.stderr[-4000:]}")
    images: dict[str, Any] = json.loads((CACHE_ROOT / "images" / "images.json").read_text())
    return images


@pytest.fixture(scope="module")
def real_node(cluster: Cluster) -> Iterator[RealNode]:
    missing = preflight.check()
    if missing:
        pytest.skip(preflight.report(missing))
    build_images()
    # One real node per machine (fixed addresses): test runs of other checkouts wait here.
    with REALNODE_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        node = RealNode(cluster, default_layout(cluster.name))
        was_up = node.is_up()  # a node `make dev` left running is reused and left running
        node.up()
        set_real_node_only(cluster, True)
        try:
            yield node
        finally:
            set_real_node_only(cluster, False)
            if not was_up and os.environ.get("AIRT_KEEP_CLUSTER") != "1":
                node.down()


@pytest.fixture(scope="module")
def store(real_node: RealNode, cluster: Cluster) -> Iterator[Store]:
    ms = ModelStore(
        CACHE_ROOT / "modelstore", cluster.bin_dir / "modelstore", real_node.layout.node_ip
    )
    ms.start()
    build = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "model_cache.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    models = Path(build.stdout.strip())
    mlp = models / "mlp.pt"
    uri = ms.push(mlp, "models/mlp")
    try:
        yield Store(ms, models, uri, hashlib.sha256(mlp.read_bytes()).hexdigest())
    finally:
        ms.stop()


@pytest.fixture(scope="module")
def env(
    cluster: Cluster, real_node: RealNode, store: Store, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    base = f"rn-{uuid.uuid4().hex[:6]}"
    ns, other, monitoring = base, f"{base}-other", f"{base}-mon"
    install_api(cluster)
    for name in (ns, other, monitoring):
        cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", ns, "pod-security.kubernetes.io/enforce=restricted")
    apply(cluster, store.store.secret_for(MODEL_STORE_SECRET, ns))
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    op = OperatorProcess.start(
        cluster.kubeconfig,
        log,
        namespaces=(ns,),
        extra_env={
            "AIRT_OPERATOR_MONITORING_NAMESPACE": monitoring,
            "AIRT_OPERATOR_DRAIN_SECONDS": "10",
        },
    )
    try:
        yield Env(cluster, real_node, store, ns, other, monitoring, op)
    finally:
        op.stop()
        for name in (ns, other, monitoring):
            cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def served(env: Env) -> dict[str, Any]:
    """The CPU example from the local OCI registry, sha256-pinned, Ready on the real node."""
    md = md_manifest("mlp", env.store.mlp_uri, env.store.mlp_sha256)
    apply(env.cluster, md, env.ns)
    wait_condition(env.cluster, env.ns, "mlp", "Ready", "True", timeout_s=300)
    return md

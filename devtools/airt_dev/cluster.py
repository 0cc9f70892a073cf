"""The local control plane: kwokctl's binary runtime over project-built, pinned binaries.

Called by `airt-dev up|down` (cli.py), `make cluster-up|cluster-down` and the test suite's
session fixture (tests/conftest.py). It starts — or reuses — one cluster whose etcd,
kube-apiserver, kube-controller-manager, kube-scheduler and kwok controller are local
processes, with RBAC and admission (PodSecurity among the defaults) on, an audit log of every
write (so tests can count the operator's writes from the API server's own record), and the
fake node pool described in tools/cluster/nodepool.yaml (Nodes, and the GPUs' ResourceSlices and
DeviceClasses as the NVIDIA DRA driver would publish them).

kwokctl is driven through its CLI rather than a Go library because the project is Python and
kwokctl's CLI is its supported interface.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from airt_dev.nodes import NodePool, device_classes, render_nodes, render_resource_slices
from airt_dev.wait import WaitTimeoutError, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = REPO_ROOT / "tools"
DEFAULT_NODEPOOL = TOOLS_DIR / "cluster" / "nodepool.yaml"
CACHE_ROOT = Path(os.environ.get("AIRT_CACHE", Path.home() / ".cache" / "airt"))

# Every write, by anyone, at Metadata level: enough to count requests by user agent and verb
# without logging bodies. Reads are not logged (they are the bulk and not what we count).
AUDIT_POLICY: dict[str, Any] = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "verbs": ["create", "update", "patch", "delete", "deletecollection"]},
        {"level": "None"},
    ],
}


class ClusterError(RuntimeError):
    """The local cluster could not be started, reached or stopped; the message says why."""


def tool_bin_dir() -> Path:
    """The keyed cache directory with the pinned binaries, built by tools/build.sh if needed."""
    override = os.environ.get("AIRT_BIN_DIR")
    if override:
        return Path(override)
    # A cold build takes many minutes: its progress lines ([tools] k/n building ..., built in
    # N s) go to the user as they come, and the last ones into the error if it fails.
    proc = subprocess.Popen(
        ["bash", str(TOOLS_DIR / "build.sh")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None and proc.stdout is not None
    tail: collections.deque[str] = collections.deque(maxlen=40)
    for line in proc.stderr:
        tail.append(line)
        sys.stderr.write(line)
        sys.stderr.flush()
    out = proc.stdout.read()
    if proc.wait() != 0:
        raise ClusterError("tools/build.sh failed:\n" + "".join(tail))
    return Path(out.strip().splitlines()[-1])


@dataclass(frozen=True)
class Cluster:
    """A running cluster: its kubeconfig and a kubectl bound to it."""

    name: str
    kubeconfig: Path
    bin_dir: Path
    workdir: Path

    @property
    def audit_log(self) -> Path:
        return self.workdir / "logs" / "audit.log"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the project-built kubectl against this cluster; raise with stderr on failure."""
        proc = subprocess.run(
            [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
            env=self.env(),
        )
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def helm(
        self, *args: str, check: bool = True, timeout_s: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run the project-built helm against this cluster; raise with its output on failure."""
        proc = subprocess.run(
            [str(self.bin_dir / "helm"), *args],
            capture_output=True,
            text=True,
            check=False,
            env=self.env(),
            timeout=timeout_s,
        )
        if check and proc.returncode != 0:
            raise ClusterError(f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def wait_crds_established(self, *names: str, timeout_s: float = 60.0) -> None:
        """Wait until these CRDs (all CRDs when none are named) report Established=True.

        Not `kubectl wait --for=condition=Established`: for a CRD created a moment ago
        `.status.conditions` is still null, and kubectl then fails at once ("accessor error")
        instead of waiting."""

        def established() -> bool:
            proc = self.kubectl("get", "crd", *names, "-o", "json", check=False)
            if proc.returncode != 0:
                return False
            doc = json.loads(proc.stdout)
            items = doc.get("items", []) if doc.get("kind") == "List" else [doc]
            return bool(items) and all(
                any(
                    c.get("type") == "Established" and c.get("status") == "True"
                    for c in (item.get("status") or {}).get("conditions") or []
                )
                for item in items
            )

        try:
            wait_for(established, timeout_s, f"CRDs {names or 'all'} Established", interval_s=0.2)
        except WaitTimeoutError as exc:
            raise ClusterError(str(exc)) from exc

    def apply_objects(
        self,
        items: list[dict[str, Any]],
        namespace: str | None = None,
        field_manager: str = "airt-dev",
    ) -> None:
        """Server-side apply these objects in one request (a v1 List on stdin)."""
        args = ["apply", "--server-side", f"--field-manager={field_manager}"]
        if namespace:
            args += ["-n", namespace]
        self.kubectl(
            *args, "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        )


@dataclass
class ClusterManager:
    """Starts, reuses and stops the named local cluster."""

    name: str = "airt"
    nodepool: Path = DEFAULT_NODEPOOL
    kwok_workdir: Path = field(default_factory=lambda: CACHE_ROOT / "kwok")
    _bin_dir: Path | None = None

    @classmethod
    def from_env(cls) -> ClusterManager:
        return cls(name=os.environ.get("AIRT_CLUSTER_NAME", "airt"))

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = tool_bin_dir()
        return self._bin_dir

    @property
    def workdir(self) -> Path:
        return self.kwok_workdir / "clusters" / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig.yaml"

    def cluster(self) -> Cluster:
        return Cluster(self.name, self.kubeconfig, self.bin_dir, self.workdir)

    def _kwokctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env["KWOK_WORKDIR"] = str(self.kwok_workdir)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        proc = subprocess.run(
            [str(self.bin_dir / "kwokctl"), "--name", self.name, *args],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        if check and proc.returncode != 0:
            raise ClusterError(
                f"kwokctl {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            )
        return proc

    def config_path(self) -> Path:
        return self.kwok_workdir / f"{self.name}-kwokctl.yaml"

    def write_config(self) -> Path:
        """The kwokctl configuration: every binary a local path, so nothing is downloaded."""
        self.kwok_workdir.mkdir(parents=True, exist_ok=True)
        audit = self.kwok_workdir / f"{self.name}-audit-policy.yaml"
        audit.write_text(yaml.safe_dump(AUDIT_POLICY, sort_keys=False))
        b = self.bin_dir
        config: dict[str, Any] = {
            "kind": "KwokctlConfiguration",
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "options": {
                "runtime": "binary",
                "kubeBinaryPrefix": str(b),
                "kubeApiserverBinary": str(b / "kube-apiserver"),
                "kubeControllerManagerBinary": str(b / "kube-controller-manager"),
                "kubeSchedulerBinary": str(b / "kube-scheduler"),
                "kubectlBinary": str(b / "kubectl"),
                "etcdBinaryPrefix": str(b),
                "etcdBinary": str(b / "etcd"),
                "kwokBinaryPrefix": str(b),
                "kwokControllerBinary": str(b / "kwok"),
                "kubeAuthorization": True,
                "kubeAdmission": True,
                "kubeAuditPolicy": str(audit),
                "securePort": True,
                "bindAddress": "127.0.0.1",
                "quietPull": True,
            },
        }
        pki = self.workdir / "pki"
        config["componentsPatches"] = [
            # kwok manages only the fake nodes, so a real kubelet's Node stays its own.
            {
                "name": "kwok-controller",
                "extraArgs": [
                    {"key": "manage-all-nodes", "value": "false"},
                    {
                        "key": "manage-nodes-with-annotation-selector",
                        "value": "kwok.x-k8s.io/node=fake",
                    },
                ],
            },
            # logs, exec and port-forward on the real node: the API server authenticates to the
            # kubelet with the admin pair and dials it by IP (never through the machine's resolver).
            {
                "name": "kube-apiserver",
                "extraArgs": [
                    {"key": "kubelet-client-certificate", "value": str(pki / "admin.crt")},
                    {"key": "kubelet-client-key", "value": str(pki / "admin.key")},
                    {"key": "kubelet-preferred-address-types", "value": "InternalIP"},
                ],
            },
        ]
        path = self.config_path()
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def dry_run(self) -> str:
        """The commands kwokctl would run (used to check that no URL is left)."""
        cfg = self.write_config()
        return self._kwokctl("--dry-run", "create", "cluster", "--config", str(cfg)).stdout

    def is_up(self) -> bool:
        if not self.kubeconfig.exists():
            return False
        proc = self.cluster().kubectl("get", "--raw=/readyz", check=False)
        return proc.returncode == 0 and proc.stdout.strip() == "ok"

    def _config_stamp(self) -> Path:
        return self.workdir / "airt-config.sha256"

    def up(self, timeout_s: float = 300.0) -> bool:
        """Start the cluster unless one is already serving; return True if this call started it.

        A running cluster made from an older configuration (say, before kwok was told to leave
        real nodes alone) is recreated rather than reused.
        """
        cfg = self.write_config()
        stamp = hashlib.sha256(cfg.read_bytes()).hexdigest()
        current = self._config_stamp().read_text() if self._config_stamp().exists() else ""
        if self.is_up() and current == stamp:
            self.apply_nodes(timeout_s)
            return False
        if self.workdir.exists():
            # A stopped or half-made cluster from an earlier run: start over cleanly.
            self._kwokctl("delete", "cluster", check=False)
            shutil.rmtree(self.workdir, ignore_errors=True)
        # kwokctl picks each component's port as the first free one counting down from 32767, so
        # two clusters created at once (make test's cluster and e2e tiers, or two checkouts) can
        # pick the same port; one create at a time per machine, until its ports are bound.
        self.kwok_workdir.mkdir(parents=True, exist_ok=True)
        with (self.kwok_workdir / "create.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._kwokctl("create", "cluster", "--config", str(cfg), "--wait", f"{int(timeout_s)}s")
            self._config_stamp().write_text(stamp)
            self._wait(lambda: self.is_up(), timeout_s, "the API server to report /readyz ok")
        self.apply_nodes(timeout_s)
        return True

    def apply_nodes(self, timeout_s: float = 120.0) -> None:
        """Create the node pool's Nodes (idempotent) and wait until kwok reports them Ready."""
        pools = [
            NodePool.model_validate(p) for p in yaml.safe_load(self.nodepool.read_text())["pools"]
        ]
        nodes = render_nodes(pools)
        c = self.cluster()
        c.apply_objects(nodes)
        # The GPUs as the NVIDIA DRA driver would publish them (nodes.py), for DRA placement.
        dra = render_resource_slices(pools)
        if dra:
            c.apply_objects([*device_classes(), *dra])
        names = [n["metadata"]["name"] for n in nodes]

        def all_ready() -> bool:
            items = c.get_json("nodes")["items"]
            ready = {
                n["metadata"]["name"]
                for n in items
                for cond in n.get("status", {}).get("conditions", [])
                if cond["type"] == "Ready" and cond["status"] == "True"
            }
            return set(names) <= ready

        self._wait(all_ready, timeout_s, "the kwok nodes to become Ready")

    def down(self) -> None:
        if self.workdir.exists():
            self._kwokctl("delete", "cluster", check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)

    @staticmethod
    def _wait(predicate: Any, timeout_s: float, what: str) -> None:
        try:
            wait_for(predicate, timeout_s, what, interval_s=0.5)
        except WaitTimeoutError as exc:
            raise ClusterError(str(exc)) from exc

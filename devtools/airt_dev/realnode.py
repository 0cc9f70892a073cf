"""The real node: containerd + runc + the pinned kubelet joined to the local cluster, with CNI
bridge networking that stays on this machine and NetworkPolicy enforced by kube-router.

Called by `airt-dev up --real-node` / `make dev` (devjob.py) and the e2e tier's real-node
fixture. `up()` checks the machine (realnode_preflight), writes the configuration
(realnode_config), sets up the node's addresses and a guard that keeps pod traffic on the
machine, starts containerd, imports the locally built images (tools/images/build.sh) and a
locally made pause image, starts the kubelet with a node certificate signed by the cluster CA,
waits for the Node to be Ready, then starts kube-router's firewall. `down()` undoes all of it.
The GPU nodes stay kwok fakes; kwok is told to leave this node alone (cluster.py).

Processes are started directly, not through systemd (the machine has none): their PIDs and logs
live in the node's work directory.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from airt_dev import procs
from airt_dev import realnode_config as cfg
from airt_dev import realnode_preflight as preflight
from airt_dev.cluster import CACHE_ROOT, Cluster, ClusterError
from airt_dev.pause import ensure_pause_archive
from airt_dev.wait import WaitTimeoutError, wait_for

GUARD_CHAIN = "AIRT-REALNODE-GUARD"
DEFAULT_SERVICE_CIDR = "10.0.0.0/24"  # kube-apiserver's --service-cluster-ip-range default
IMAGES_JSON = CACHE_ROOT / "images" / "images.json"


class RealNodeUnavailableError(ClusterError):
    """This machine cannot host a real node; the message lists what is missing and the fix."""


def default_layout(name: str = "airt") -> cfg.Layout:
    return cfg.Layout(
        workdir=CACHE_ROOT / "realnode" / name,
        images_root=CACHE_ROOT / "realnode" / "containerd-root",
    )


def _run(
    *args: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False, input=input)
    if check and proc.returncode != 0:
        raise ClusterError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclass
class RealNode:
    """One real node of one local cluster."""

    cluster: Cluster
    layout: cfg.Layout

    # ---- lifecycle ---------------------------------------------------------------------------

    def is_up(self) -> bool:
        if not all(procs.alive(self._pidfile(p)) for p in ("containerd", "kubelet", "kube-router")):
            return False
        return self.node_ready()

    def up(self, timeout_s: float = 180.0) -> None:
        """Start the node (or keep the running one) and make sure the built images are on it."""
        missing = preflight.check()
        if missing:
            raise RealNodeUnavailableError(preflight.report(missing))
        if self.is_up():
            self.import_images()
            return
        other = self.foreign_node()
        if other is not None:
            # The node's addresses and bridge are fixed (realnode_config), so a second node
            # would tear down the first one's network: refuse, and say how to free the machine.
            raise RealNodeUnavailableError(
                f"the real node of the local cluster {other!r} is running on this machine "
                f"(one real node per machine); stop it first: "
                f"AIRT_CLUSTER_NAME={other} airt-dev down"
            )
        self.down()  # whatever a crashed or half-made run left behind
        lay = self.layout
        for d in (
            lay.workdir,
            lay.logs,
            lay.pki,
            lay.cni_conf_dir,
            lay.cni_data_dir,
            lay.images_root,
        ):
            d.mkdir(parents=True, exist_ok=True)
        service_cidr = self.service_cidr()
        self._network(service_cidr)
        self._start_containerd()
        self.import_images()
        self._start_kubelet()
        try:
            wait_for(self.node_ready, timeout_s, f"the real node {lay.name} to be Ready", 0.5)
        except WaitTimeoutError as exc:
            raise ClusterError(f"{exc}\n{self._tail('kubelet')}") from exc
        self._start_kube_router(service_cidr)

    def foreign_node(self) -> str | None:
        """The cluster name of another local cluster whose real node runs here, if any."""
        for pidfile in sorted((CACHE_ROOT / "realnode").glob("*/kubelet.pid")):
            owner = pidfile.parent
            if owner != self.layout.workdir and procs.alive(pidfile):
                return owner.name
        return None

    def down(self) -> None:
        """Stop everything `up` started and remove its network state; images stay cached."""
        lay = self.layout
        if self.cluster.kubeconfig.exists():
            self.cluster.kubectl(
                "delete", "node", lay.name, "--ignore-not-found", "--wait=false", check=False
            )
        for name in ("kube-router", "kubelet"):
            self._stop(name)
        self._remove_pods()
        self._stop("containerd")
        self._kill_shims()
        self._unmount_under(lay.workdir)
        self._unmount_under(Path("/run/netns"), prefix="cni-")
        self._firewall_cleanup()
        _run("ip", "link", "del", lay.bridge, check=False)
        _run("ip", "addr", "del", f"{lay.node_ip}/32", "dev", "lo", check=False)
        saved = lay.workdir / "ip_forward.orig"
        if saved.exists():
            Path("/proc/sys/net/ipv4/ip_forward").write_text(saved.read_text())
            saved.unlink()
        for d in (lay.state, lay.cni_data_dir, lay.kubelet_root, lay.workdir / "pod-logs"):
            shutil.rmtree(d, ignore_errors=True)

    # ---- what tests and the dev job ask of the node ------------------------------------------

    def node_ready(self) -> bool:
        proc = self.cluster.kubectl("get", "node", self.layout.name, "-o", "json", check=False)
        if proc.returncode != 0:
            return False
        conds = json.loads(proc.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    def service_cidr(self) -> str:
        """The API server's service range (kube-router needs it to tell services from pods)."""
        for line in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                argv = line.read_bytes().split(b"\0")
            except OSError:
                continue
            if not argv or not argv[0].endswith(b"kube-apiserver"):
                continue
            if not any(str(self.cluster.workdir).encode() in a for a in argv):
                continue
            for a in argv:
                if a.startswith(b"--service-cluster-ip-range="):
                    return a.split(b"=", 1)[1].decode()
        # Not set: the API server's default range. Check it against the `kubernetes` Service.
        ip = self.cluster.get_json("service", "kubernetes", "-n", "default")["spec"]["clusterIP"]
        if ipaddress.ip_address(ip) not in ipaddress.ip_network(DEFAULT_SERVICE_CIDR):
            raise ClusterError(f"the service range is unknown (the kubernetes Service is {ip})")
        return DEFAULT_SERVICE_CIDR

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run("ctr", "--address", str(self.layout.socket), "-n", "k8s.io", *args, check=check)

    def image_digests(self) -> dict[str, str]:
        """Image reference → manifest digest, as containerd on the node has them."""
        out: dict[str, str] = {}
        for line in self.ctr("images", "ls").stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 3:
                out[parts[0]] = parts[2]
        return out

    def import_images(self) -> list[str]:
        """Import the pause image and every image in images.json that the node lacks."""
        wanted: list[tuple[str, str, Path]] = []
        pause = ensure_pause_archive(CACHE_ROOT / "realnode", self.layout.pause_image)
        wanted.append((self.layout.pause_image, pause.digest, pause.archive))
        if IMAGES_JSON.exists():
            for entry in json.loads(IMAGES_JSON.read_text()).values():
                wanted.append((entry["ref"], entry["digest"], Path(entry["archive"])))
        have = self.image_digests()
        imported = []
        for ref, digest, archive in wanted:
            if have.get(ref) == digest:
                continue
            if ref in have:
                # The replaced image goes first, so the node's disk need not hold both (the
                # worker's is gigabytes); running containers keep their own snapshots.
                self.ctr("images", "rm", ref, check=False)
                self._forget_replaced_images()
            self.ctr("images", "import", "--no-unpack=false", str(archive))
            imported.append(ref)
        if imported:
            self._forget_replaced_images()
        return imported

    def _forget_replaced_images(self) -> None:
        """Drop the `sha256:<id>` references the CRI plugin keeps for images whose name now points
        elsewhere: they alone would hold a replaced worker image (gigabytes) on the node."""
        digests = self.image_digests()
        named = {d for ref, d in digests.items() if not ref.startswith("sha256:")}
        for ref, digest in digests.items():
            if ref.startswith("sha256:") and digest not in named:
                self.ctr("images", "rm", ref, check=False)

    # ---- pieces ------------------------------------------------------------------------------

    def _pidfile(self, name: str) -> Path:
        return self.layout.workdir / f"{name}.pid"

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        procs.spawn(self._pidfile(name), self.layout.logs / f"{name}.log", args, env)

    def _stop(self, name: str, timeout_s: float = 15.0) -> None:
        procs.stop(self._pidfile(name), timeout_s)

    def _tail(self, name: str, n: int = 30) -> str:
        path = self.layout.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])

    def _network(self, service_cidr: str) -> None:
        lay = self.layout
        addrs = _run("ip", "-o", "addr", "show", "dev", "lo").stdout
        if f" {lay.node_ip}/32 " not in addrs:
            _run("ip", "addr", "add", f"{lay.node_ip}/32", "dev", "lo")
        fwd = Path("/proc/sys/net/ipv4/ip_forward")
        saved = lay.workdir / "ip_forward.orig"
        if not saved.exists():
            saved.write_text(fwd.read_text())
        conf = cfg.cni_conflist(lay, service_cidr)
        (lay.cni_conf_dir / "10-airt.conflist").write_text(json.dumps(conf, indent=2))
        # The guard: forwarded traffic from pods may only go to pods, the node or services. It
        # sits in mangle because kube-router ACCEPTs in filter before later rules would be seen.
        _run("iptables", "-t", "mangle", "-N", GUARD_CHAIN, check=False)
        _run("iptables", "-t", "mangle", "-F", GUARD_CHAIN)
        for dst in (lay.pod_cidr, f"{lay.node_ip}/32", service_cidr):
            _run(
                "iptables",
                "-t",
                "mangle",
                "-A",
                GUARD_CHAIN,
                "-s",
                lay.pod_cidr,
                "-d",
                dst,
                "-j",
                "RETURN",
            )
        _run("iptables", "-t", "mangle", "-A", GUARD_CHAIN, "-s", lay.pod_cidr, "-j", "DROP")
        if _run(
            "iptables", "-t", "mangle", "-C", "FORWARD", "-j", GUARD_CHAIN, check=False
        ).returncode:
            _run("iptables", "-t", "mangle", "-I", "FORWARD", "-j", GUARD_CHAIN)

    def _firewall_cleanup(self) -> None:
        while (
            _run(
                "iptables", "-t", "mangle", "-D", "FORWARD", "-j", GUARD_CHAIN, check=False
            ).returncode
            == 0
        ):
            pass
        _run("iptables", "-t", "mangle", "-F", GUARD_CHAIN, check=False)
        _run("iptables", "-t", "mangle", "-X", GUARD_CHAIN, check=False)
        # kube-router's own cleanup panics without IPVS; remove its chains, jumps and sets here.
        for table in ("filter", "nat", "mangle"):
            rules = _run("iptables-save", "-t", table, check=False).stdout.splitlines()
            chains = [
                r[1:].split()[0]
                for r in rules
                if r.startswith(":KUBE-ROUTER")
                or r.startswith(":KUBE-NWPLCY")
                or r.startswith(":KUBE-POD-FW")
                or r.startswith(":KUBE-SRC")
            ]
            for r in rules:
                rule = shlex.split(r)[1:]  # kube-router's comments are quoted
                jumps = r.startswith("-A ") and any(f"-j {c}" in r for c in chains)
                if jumps and rule[0] not in chains:
                    _run("iptables", "-t", table, "-D", *rule, check=False)
            for c in chains:
                _run("iptables", "-t", table, "-F", c, check=False)
            for c in chains:
                _run("iptables", "-t", table, "-X", c, check=False)
        for line in _run("ipset", "list", "-n", check=False).stdout.splitlines():
            if line.startswith(("KUBE-", "kube-router", "inet6:KUBE", "KUBE-DST", "KUBE-SRC")):
                _run("ipset", "destroy", line, check=False)

    def _start_containerd(self) -> None:
        lay = self.layout
        cni_dir = preflight.cni_bin_dir()
        assert cni_dir is not None  # preflight checked it
        conf = lay.workdir / "containerd.toml"
        conf.write_text(cfg.containerd_config(lay, cni_dir))
        self._spawn("containerd", ["containerd", "--config", str(conf)])

        def serving() -> bool:
            return self.ctr("version", check=False).returncode == 0

        try:
            wait_for(serving, 30, "containerd to serve its socket", 0.2)
        except WaitTimeoutError as exc:
            raise ClusterError(f"{exc}\n{self._tail('containerd')}") from exc

    def _node_certificate(self) -> tuple[Path, Path]:
        """A client certificate for system:node:<name>, signed by the cluster CA."""
        lay, pki = self.layout, self.cluster.workdir / "pki"
        key, csr, crt = lay.pki / "node.key", lay.pki / "node.csr", lay.pki / "node.crt"
        ext = lay.pki / "node.ext"
        ext.write_text(
            "extendedKeyUsage = clientAuth\nkeyUsage = digitalSignature, keyEncipherment\n"
        )
        _run("openssl", "genrsa", "-out", str(key), "2048")
        subj = f"/O=system:nodes/CN=system:node:{lay.name}"
        _run("openssl", "req", "-new", "-key", str(key), "-subj", subj, "-out", str(csr))
        _run(
            "openssl", "x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"),
            "-CAkey", str(pki / "ca.key"), "-CAcreateserial", "-days", "30",
            "-extfile", str(ext), "-out", str(crt),
        )  # fmt: skip
        return crt, key

    def _server(self) -> str:
        config = yaml.safe_load(self.cluster.kubeconfig.read_text())
        server: str = config["clusters"][0]["cluster"]["server"]
        return server

    def _start_kubelet(self) -> None:
        lay = self.layout
        ca = self.cluster.workdir / "pki" / "ca.crt"
        crt, key = self._node_certificate()
        kubeconfig = lay.workdir / "kubelet.kubeconfig"
        user = f"system:node:{lay.name}"
        kubeconfig.write_text(yaml.safe_dump(cfg.kubeconfig(self._server(), ca, crt, key, user)))
        config = lay.workdir / "kubelet.yaml"
        kc = cfg.kubelet_config(lay, ca, preflight.cgroup_v2())
        config.write_text(yaml.safe_dump(kc, sort_keys=False))
        kubelet = self.cluster.bin_dir / "kubelet"
        env = dict(os.environ)
        env["PATH"] = f"/usr/sbin:/sbin:{env.get('PATH', '')}"
        self._spawn("kubelet", [str(kubelet), *cfg.kubelet_args(lay, kubeconfig, config)], env)

    def _start_kube_router(self, service_cidr: str) -> None:
        router = self.cluster.bin_dir / "kube-router"
        args = cfg.kube_router_args(self.layout, self.cluster.kubeconfig, service_cidr)
        env = dict(os.environ)
        env["PATH"] = f"/usr/sbin:/sbin:{env.get('PATH', '')}"
        self._spawn("kube-router", [str(router), *args], env)

        def enforcing() -> bool:
            chains = _run("iptables-save", "-t", "filter", check=False).stdout
            return ":KUBE-ROUTER-FORWARD" in chains

        try:
            wait_for(enforcing, 60, "kube-router's firewall chains", 0.5)
        except WaitTimeoutError as exc:
            raise ClusterError(f"{exc}\n{self._tail('kube-router')}") from exc

    def _remove_pods(self) -> None:
        """Kill and delete every container task containerd still runs for this node."""
        if not self.layout.socket.exists() or not procs.alive(self._pidfile("containerd")):
            return
        tasks = self.ctr("tasks", "ls", "-q", check=False).stdout.split()
        for t in tasks:
            self.ctr("tasks", "kill", "-s", "SIGKILL", t, check=False)
        deadline = time.monotonic() + 10
        for t in tasks:
            while time.monotonic() < deadline:
                if self.ctr("tasks", "delete", t, check=False).returncode == 0:
                    break
                time.sleep(0.2)
        for c in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "rm", c, check=False)

    def _kill_shims(self) -> None:
        """Shims outlive containerd by design; ours are the ones started with our socket."""
        marker = str(self.layout.socket).encode()
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                argv = cmdline.read_bytes()
            except OSError:
                continue
            if b"containerd-shim" in argv and marker in argv:
                with contextlib.suppress(OSError):
                    os.kill(int(cmdline.parent.name), signal.SIGKILL)

    @staticmethod
    def _unmount_under(root: Path, prefix: str = "") -> None:
        """Unmount everything mounted at or below root (deepest first)."""
        try:
            lines = Path("/proc/self/mounts").read_text().splitlines()
        except OSError:
            return
        base = str(root)
        points: list[str] = []
        for line in lines:
            point = line.split()[1].replace("\\040", " ")
            under = point == base or point.startswith(base + "/")
            if under and (not prefix or Path(point).name.startswith(prefix)):
                points.append(point)
        for point in sorted(set(points), key=len, reverse=True):
            _run("umount", "-l", point, check=False)
        if prefix and root.is_dir():
            for p in root.glob(f"{prefix}*"):
                p.unlink(missing_ok=True)


def set_real_node_only(cluster: Cluster, real_only: bool) -> None:
    """Make the real node the only place for CPU pods (kwok's CPU nodes cordoned), or the
    opposite (the real node cordoned), so that which one runs a CPU model is never left to the
    scheduler's scoring: tests that expect kwok's instant pods and tests that need real
    containers share one cluster."""
    fake = f"!nvidia.com/gpu.product,!{cfg.NODE_LABEL}"
    real = f"{cfg.NODE_LABEL}=true"
    for selector, schedulable in ((fake, not real_only), (real, real_only)):
        names = [n["metadata"]["name"] for n in cluster.get_json("nodes", "-l", selector)["items"]]
        for name in names:
            cluster.kubectl("uncordon" if schedulable else "cordon", name)


def describe(node: RealNode) -> dict[str, Any]:
    """What `airt-dev up --real-node` prints: the node, its logs, its containerd socket."""
    lay = node.layout
    return {
        "node": lay.name,
        "ip": lay.node_ip,
        "logs": str(lay.logs),
        "containerd": str(lay.socket),
    }

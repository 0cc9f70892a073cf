"""The real node's configuration files, rendered from one layout: pure functions, unit-tested.

Called by realnode.py, which writes what these return and starts the processes. Every path
lives under the node's work directory and every address on the node's own bridge or loopback
alias, so that nothing here touches the machine's uplink (see docs/development.md, "The real
node"). The values that matter and why:

- containerd: CRI with `restrict_oom_score_adj` (root here lacks CAP_SYS_RESOURCE, so the
  kubelet's negative OOM scores would make every sandbox fail), cgroupfs (no systemd), a locally
  made pause image, CNI from our own conf dir.
- CNI: a bridge with host-local IPAM, no masquerade, no default route — pods reach other pods,
  the node and the service range, nothing else.
- kubelet: x509 client auth against the cluster CA (the API server presents the admin pair),
  cgroupfs, cgroup v1 allowed, no image GC and tiny eviction floors (a shared disk must not
  evict the test's pods), no iptables util chains.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

NODE_LABEL = "airt.dev/real-node"


@dataclass(frozen=True)
class Layout:
    """Where everything of one real node lives, and its addresses."""

    workdir: Path
    images_root: Path  # containerd's root: kept across runs, so images stay on the node
    name: str = "airt-real-0"
    node_ip: str = "10.240.0.1"
    pod_cidr: str = "10.244.0.0/24"
    pod_gateway: str = "10.244.0.1"
    bridge: str = "airt0"
    kubelet_port: int = 10250
    kubelet_healthz_port: int = 10248
    pause_image: str = "localhost/airt/pause:1.0"

    @property
    def state(self) -> Path:
        return self.workdir / "containerd-state"

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.workdir / "cni" / "net.d"

    @property
    def cni_data_dir(self) -> Path:
        return self.workdir / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.workdir / "kubelet"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"


def containerd_config(layout: Layout, cni_bin_dir: Path) -> str:
    """containerd 1.6+ (config version 2) as TOML text."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join(
        [
            "version = 2",
            f'root = "{layout.images_root}"',
            f'state = "{layout.state}"',
            "oom_score = 0",
            "[grpc]",
            f'  address = "{layout.socket}"',
            "[ttrpc]",
            f'  address = "{layout.socket}.ttrpc"',
            "[debug]",
            '  address = ""',
            "[metrics]",
            '  address = ""',
            f"[{cri}]",
            f'  sandbox_image = "{layout.pause_image}"',
            "  restrict_oom_score_adj = true",
            "  enable_selinux = false",
            "  disable_apparmor = true",
            "  max_container_log_line_size = 16384",
            f"[{cri}.containerd]",
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            f"[{cri}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"[{cri}.containerd.runtimes.runc.options]",
            "  SystemdCgroup = false",
            f"[{cri}.cni]",
            f'  bin_dir = "{cni_bin_dir}"',
            f'  conf_dir = "{layout.cni_conf_dir}"',
            "  max_conf_num = 1",
            "",
        ]
    )


def cni_conflist(layout: Layout, service_cidr: str) -> dict[str, Any]:
    """The pod network: one bridge, host-local addresses, routes only to what is on this node."""
    routes = [{"dst": layout.pod_cidr}, {"dst": f"{layout.node_ip}/32"}]
    if service_cidr:
        routes.append({"dst": service_cidr})
    return {
        "cniVersion": "1.0.0",
        "name": "airt",
        "plugins": [
            {
                "type": "bridge",
                "bridge": layout.bridge,
                "isGateway": True,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": layout.pod_cidr, "gateway": layout.pod_gateway}]],
                    "routes": routes,
                    "dataDir": str(layout.cni_data_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(layout: Layout, ca_file: Path, cgroup_v2: bool) -> dict[str, Any]:
    """KubeletConfiguration (kubelet.config.k8s.io/v1beta1)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": layout.node_ip,
        "port": layout.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": layout.kubelet_healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca_file)},
        },
        # Only holders of a certificate signed by the cluster CA get past authentication above.
        "authorization": {"mode": "AlwaysAllow"},
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{layout.socket}",
        "imageServiceEndpoint": f"unix://{layout.socket}",
        "resolvConf": "",
        "makeIPTablesUtilChains": False,
        "serializeImagePulls": False,
        "maxPods": 32,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "podLogsDir": str(layout.workdir / "pod-logs"),
        "volumePluginDir": str(layout.workdir / "volume-plugins"),
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "protectKernelDefaults": False,
        "registerNode": True,
        "runtimeRequestTimeout": "10m",
        "cpuManagerPolicy": "none",
        **({"memorySwap": {}} if cgroup_v2 else {}),
    }


def kubelet_args(layout: Layout, kubeconfig: Path, config: Path) -> list[str]:
    return [
        f"--config={config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={layout.kubelet_root}",
        f"--cert-dir={layout.pki / 'kubelet'}",
        f"--hostname-override={layout.name}",
        f"--node-ip={layout.node_ip}",
        f"--node-labels={NODE_LABEL}=true",
        "--v=1",
    ]


def kube_router_args(layout: Layout, kubeconfig: Path, service_cidr: str) -> list[str]:
    """kube-router with its NetworkPolicy firewall only: no routing, no proxy, no CNI."""
    return [
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        "--enable-cni=false",
        "--enable-ipv6=false",
        "--enable-ipv4=true",
        f"--hostname-override={layout.name}",
        f"--service-cluster-ip-range={service_cidr}",
        "--metrics-port=0",
        "--health-port=0",
        f"--kubeconfig={kubeconfig}",
        "--iptables-sync-period=1m",
        "--v=1",
    ]


def kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> dict[str, Any]:
    """A kubeconfig with a client certificate (the kubelet's node identity, or kube-router's)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "airt", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
        ],
        "contexts": [{"name": "airt", "context": {"cluster": "airt", "user": user}}],
        "current-context": "airt",
    }

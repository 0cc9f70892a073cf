"""The real node's configuration: what keeps it on this machine and what makes it work here."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from airt_dev import realnode_config as cfg
from airt_dev import realnode_preflight as preflight
from airt_dev.pause import oci_archive

LAYOUT = cfg.Layout(workdir=Path("/w/node"), images_root=Path("/w/images"))


def test_containerd_restricts_oom_scores_and_uses_cgroupfs_and_our_cni() -> None:
    text = cfg.containerd_config(LAYOUT, Path("/usr/lib/cni"))
    assert "restrict_oom_score_adj = true" in text  # root here lacks CAP_SYS_RESOURCE
    assert "SystemdCgroup = false" in text
    assert f'sandbox_image = "{LAYOUT.pause_image}"' in text  # made here, never pulled
    assert f'conf_dir = "{LAYOUT.cni_conf_dir}"' in text
    assert f'address = "{LAYOUT.socket}"' in text


def test_pod_network_has_no_default_route_and_no_masquerade() -> None:
    conf = cfg.cni_conflist(LAYOUT, "10.0.0.0/24")
    bridge = conf["plugins"][0]
    assert bridge["ipMasq"] is False and bridge["isDefaultGateway"] is False
    dsts = {r["dst"] for r in bridge["ipam"]["routes"]}
    assert dsts == {LAYOUT.pod_cidr, f"{LAYOUT.node_ip}/32", "10.0.0.0/24"}
    assert "0.0.0.0/0" not in dsts


def test_kubelet_only_trusts_the_cluster_ca_and_never_collects_images() -> None:
    kc = cfg.kubelet_config(LAYOUT, Path("/pki/ca.crt"), cgroup_v2=False)
    assert kc["authentication"]["anonymous"]["enabled"] is False
    assert kc["authentication"]["x509"]["clientCAFile"] == "/pki/ca.crt"
    assert kc["cgroupDriver"] == "cgroupfs" and kc["failCgroupV1"] is False
    assert kc["imageGCHighThresholdPercent"] == 100
    assert kc["address"] == LAYOUT.node_ip and kc["readOnlyPort"] == 0
    args = cfg.kubelet_args(LAYOUT, Path("/k"), Path("/c"))
    assert f"--node-labels={cfg.NODE_LABEL}=true" in args
    assert f"--node-ip={LAYOUT.node_ip}" in args


def test_kube_router_runs_its_firewall_only() -> None:
    args = cfg.kube_router_args(LAYOUT, Path("/k"), "10.0.0.0/24")
    for flag in ("--run-firewall=true", "--run-router=false", "--run-service-proxy=false",
                 "--enable-cni=false"):  # fmt: skip
        assert flag in args


def test_preflight_names_each_missing_piece_and_its_package() -> None:
    missing = preflight.check(
        which=lambda b: None if b in {"containerd", "ipset"} else f"/usr/bin/{b}",
        is_root=lambda: True,
        filesystems=lambda: "nodev\tproc\nnodev\toverlay\n",
        cni_dir=lambda: None,
    )
    text = preflight.report(missing)
    assert "`containerd`" in text and "apt-get install -y containerd" in text
    assert "`ipset`" in text and "apt-get install -y ipset" in text
    assert "containernetworking-plugins" in text
    assert "overlay" not in [m.what for m in missing]


def test_preflight_wants_overlayfs() -> None:
    missing = preflight.check(
        which=lambda b: f"/usr/bin/{b}",
        is_root=lambda: True,
        filesystems=lambda: "nodev\tproc\n",
        cni_dir=lambda: Path("/usr/lib/cni"),
    )
    assert any("overlay" in m.what for m in missing)


def test_the_pause_archive_names_its_image_for_containerd() -> None:
    data, digest = oci_archive(b"\x7fELF...", "localhost/airt/pause:1.0")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        names = tar.getnames()
    entry = index["manifests"][0]
    assert entry["digest"] == digest
    assert entry["annotations"]["io.containerd.image.name"] == "localhost/airt/pause:1.0"
    assert f"blobs/sha256/{digest.split(':')[1]}" in names and "oci-layout" in names

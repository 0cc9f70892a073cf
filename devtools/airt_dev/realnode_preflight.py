"""What a real node needs from this machine, checked before anything is started.

Called by realnode.RealNode.up (and so by `airt-dev up --real-node`, `make dev` and the e2e
tier's real-node fixture). Each missing piece comes back as one line that says what is missing
and how to get it, so `make cluster-up` can print them all at once and the fake-node tiers can
still run on a machine that cannot host containers.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CNI_DIRS = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
APT = "apt-get install -y containerd runc containernetworking-plugins iptables ipset iproute2"


@dataclass(frozen=True)
class Missing:
    """One thing the machine lacks, and how to get it."""

    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what} — {self.fix}"


def cni_bin_dir() -> Path | None:
    """The first directory that holds every CNI plugin the node uses."""
    for d in CNI_DIRS:
        if all((d / p).is_file() for p in CNI_PLUGINS):
            return d
    return None


def _filesystems() -> str:
    try:
        return Path("/proc/filesystems").read_text()
    except OSError:
        return ""


def check(
    which: Callable[[str], str | None] = shutil.which,
    is_root: Callable[[], bool] = lambda: os.geteuid() == 0,
    filesystems: Callable[[], str] = _filesystems,
    cni_dir: Callable[[], Path | None] = cni_bin_dir,
) -> list[Missing]:
    """Everything missing for a real node on this machine (empty when it can host one)."""
    missing: list[Missing] = []
    if not is_root():
        missing.append(
            Missing("root", "the real node mounts, makes network namespaces and sets iptables")
        )
    for binary, package in (
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("runc", "runc"),
        ("iptables", "iptables"),
        ("iptables-save", "iptables"),
        ("ipset", "ipset"),
        ("ip", "iproute2"),
        ("openssl", "openssl"),
    ):
        if which(binary) is None:
            missing.append(Missing(f"the `{binary}` command", f"apt-get install -y {package}"))
    if cni_dir() is None:
        plugins = ", ".join(CNI_PLUGINS)
        missing.append(
            Missing(
                f"the CNI plugins ({plugins}) in /usr/lib/cni or /opt/cni/bin",
                "apt-get install -y containernetworking-plugins",
            )
        )
    fs = _filesystems_set(filesystems())
    if "overlay" not in fs:
        missing.append(
            Missing("the overlay file system (containerd's snapshotter)", "modprobe overlay")
        )
    if not Path("/proc/sys/net/ipv4/ip_forward").exists():
        missing.append(
            Missing("IPv4 forwarding (/proc/sys/net/ipv4/ip_forward)", "a netns-capable kernel")
        )
    if not _cgroups_ok():
        missing.append(
            Missing(
                "cgroups (v2 at /sys/fs/cgroup, or v1 with the cpu, memory and pids controllers)",
                "mount the cgroup file systems (the kubelet needs them)",
            )
        )
    return missing


def _filesystems_set(text: str) -> set[str]:
    return {line.split()[-1] for line in text.splitlines() if line.strip()}


def _cgroups_ok(root: Path = Path("/sys/fs/cgroup")) -> bool:
    if (root / "cgroup.controllers").exists():  # v2 (unified)
        return True
    return all((root / c).is_dir() for c in ("cpu", "memory", "pids"))


def cgroup_v2(root: Path = Path("/sys/fs/cgroup")) -> bool:
    return (root / "cgroup.controllers").exists()


def report(missing: list[Missing]) -> str:
    """The message a user reads: every missing piece, then one command that installs most."""
    lines = ["this machine cannot host a real node; missing:"]
    lines += [f"  - {m}" for m in missing]
    lines.append(f"  (on Debian/Ubuntu most of it is: {APT})")
    return "\n".join(lines)

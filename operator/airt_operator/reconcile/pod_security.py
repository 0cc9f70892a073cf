"""Pod Security Standards, level `restricted`, checked on a pod spec before it is applied.

Called by the reconciler on every rendered Deployment's pod template (so no runtime template,
whatever it says, reaches the API server as a pod restricted would refuse) and by
reconcile/runtime_status.py on a runtime's template alone (so the InferenceRuntime says it is
unusable before any model uses it). Pure: a plain dict in, the violations out, each naming the
field, in the words of the Kubernetes Pod Security admission checks (baseline and restricted,
as of Kubernetes 1.30).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airt_operator.api import RuntimeContainer
from airt_operator.reconcile.runtime_template import (
    POD_SECURITY_CONTEXT,
    extra_volumes,
    pod_flags,
    security_context,
)

# Volume types restricted allows (everything else, hostPath first, is refused).
ALLOWED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
ALLOWED_ADD_CAPABILITY = "NET_BIND_SERVICE"
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
_SECCOMP_OK = ("RuntimeDefault", "Localhost")
_SELINUX_TYPES = ("", "container_t", "container_init_t", "container_kvm_t", "container_engine_t")


def _containers(pod: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    out = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in pod.get(key) or []:
            out.append((f"{key}[{c.get('name', '?')}]", c))
    return out


def _volume_type(volume: Mapping[str, Any]) -> str:
    kinds = [k for k in volume if k != "name"]
    return kinds[0] if kinds else "emptyDir"


def restricted_violations(pod: Mapping[str, Any]) -> list[str]:
    """Every reason the pod spec fails Pod Security `restricted` (empty: it passes)."""
    found: list[str] = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            found.append(f"{flag}=true")
    for v in pod.get("volumes") or []:
        kind = _volume_type(v)
        if kind not in ALLOWED_VOLUMES:
            found.append(f"volumes[{v.get('name', '?')}].{kind}")
    psc = pod.get("securityContext") or {}
    pod_non_root = psc.get("runAsNonRoot") is True
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if psc.get("runAsUser") == 0:
        found.append("securityContext.runAsUser=0")
    if pod_seccomp is not None and pod_seccomp not in _SECCOMP_OK:
        found.append(f"securityContext.seccompProfile.type={pod_seccomp}")
    for s in psc.get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            found.append(f"securityContext.sysctls[{s.get('name')}]")
    if (psc.get("seLinuxOptions") or {}).get("type", "") not in _SELINUX_TYPES:
        found.append("securityContext.seLinuxOptions.type")
    for where, c in _containers(pod):
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            found.append(f"{where}.securityContext.privileged=true")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}.securityContext.allowPrivilegeEscalation must be false")
        if sc.get("runAsUser") == 0:
            found.append(f"{where}.securityContext.runAsUser=0")
        if sc.get("runAsNonRoot") is False or (not pod_non_root and not sc.get("runAsNonRoot")):
            found.append(f"{where}.securityContext.runAsNonRoot must be true")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is None and pod_seccomp is None:
            found.append(f"{where}.securityContext.seccompProfile must be RuntimeDefault")
        elif seccomp is not None and seccomp not in _SECCOMP_OK:
            found.append(f"{where}.securityContext.seccompProfile.type={seccomp}")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"{where}.securityContext.capabilities.drop must include ALL")
        added = [a for a in caps.get("add") or [] if a != ALLOWED_ADD_CAPABILITY]
        if added:
            found.append(f"{where}.securityContext.capabilities.add={','.join(added)}")
        if sc.get("procMount") not in (None, "Default"):
            found.append(f"{where}.securityContext.procMount={sc['procMount']}")
        if (sc.get("seLinuxOptions") or {}).get("type", "") not in _SELINUX_TYPES:
            found.append(f"{where}.securityContext.seLinuxOptions.type")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                found.append(f"{where}.ports[{p.get('name', p.get('containerPort'))}].hostPort")
    return found


def deployment_violations(
    manifests: list[dict[str, Any]] | tuple[dict[str, Any], ...],
) -> list[str]:
    """The violations of the pod template of the Deployment among rendered children."""
    for m in manifests:
        if m.get("kind") == "Deployment":
            return restricted_violations(m["spec"]["template"]["spec"])
    return []


def template_violations(container: RuntimeContainer) -> list[str]:
    """The violations of a runtime's container template alone, in the pod the operator would
    render around it (the pod-level context is the Deployment template's, restricted)."""
    volumes, mounts = extra_volumes(container)
    pod: dict[str, Any] = {
        **pod_flags(container),
        "securityContext": POD_SECURITY_CONTEXT,
        "containers": [
            {
                "name": "worker",
                "securityContext": security_context(container),
                "volumeMounts": mounts,
            }
        ],
        "volumes": volumes,
    }
    return restricted_violations(pod)

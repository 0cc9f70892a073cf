"""Expand a runtime's container template for one model: the serving container, resolved.

Called by reconcile/build.py (which stores the result in the render context) and by
reconcile/runtime_status.py (which checks a runtime's template against Pod Security alone).
Pure. The airt worker is one runtime among others: `images.worker` is shorthand for
`AIRT_WORKER` with that image, so both spellings render the same pod.

The security context, the pod-level flags and the extra volumes are built here, once, so the
Pod Security check (reconcile/pod_security.py) and the Deployment template see the same values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airt_contract.worker import FETCHED_MODEL_PATH
from airt_operator.api import InferenceRuntimeSpec, RuntimeContainer
from airt_operator.api.runtime_container import (
    HttpEndpoint,
    MetricsEndpoint,
    RuntimePorts,
)

#: The container security context every airt container starts from (Pod Security restricted).
RESTRICTED: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

#: The pod-level security context of every serving pod (templates/deployment.yaml.j2 renders it).
POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "fsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}

#: Health endpoints by protocol, for templates that declare none.
DEFAULT_READINESS = {"v2": "/v2/health/ready", "openai": "/health"}
DEFAULT_LIVENESS = {"v2": "/v2/health/live", "openai": "/health"}

#: The airt worker, in the terms of any runtime (its metrics port is the worker's own, 8082,
#: which the sidecar re-exports on 8002).
AIRT_WORKER = RuntimeContainer(
    image="ghcr.io/airt-dev/worker-cpu:latest",
    args=["serve"],
    protocol="v2",
    ports=RuntimePorts(http=8000, grpc=8001),
    readiness=HttpEndpoint(path="/v2/health/ready"),
    liveness=HttpEndpoint(path="/v2/health/live"),
    metrics=MetricsEndpoint(port=8082, path="/metrics"),
    metrics_sidecar=True,
    model_mount_path="/models",
    airt_worker_config=True,
)


def container_of(spec: InferenceRuntimeSpec) -> RuntimeContainer:
    """The runtime's container template (the airt worker's for the `images.worker` shorthand)."""
    if spec.container is not None:
        return spec.container
    assert spec.images is not None and spec.images.worker is not None  # the spec's CEL rule
    return AIRT_WORKER.model_copy(update={"image": spec.images.worker})


def model_paths(uri: str, mount: str) -> tuple[str, str]:
    """(path of the model, directory it is mounted in) inside the serving container.

    A pvc:// model is its path in the claim under the mount; a fetched model is where the
    fetcher wrote it (FETCHED_MODEL_PATH, under the same volume mounted at /models there).
    """
    if uri.startswith("pvc://"):
        path = uri.removeprefix("pvc://").partition("/")[2]
        return f"{mount}/{path}".rstrip("/"), mount
    return mount + FETCHED_MODEL_PATH.removeprefix("/models"), mount


def expand(value: str, values: Mapping[str, str]) -> str:
    """Replace every placeholder (validated by the API to be known) with its value."""
    for key, replacement in values.items():
        value = value.replace(key, replacement)
    return value


def security_context(c: RuntimeContainer) -> dict[str, Any]:
    """The container's security context: RESTRICTED, changed where the template says."""
    out: dict[str, Any] = json.loads(json.dumps(RESTRICTED))
    sc = c.security_context
    if sc is None:
        return out
    simple = {
        "runAsUser": sc.run_as_user,
        "runAsGroup": sc.run_as_group,
        "readOnlyRootFilesystem": sc.read_only_root_filesystem,
        "privileged": sc.privileged,
        "allowPrivilegeEscalation": sc.allow_privilege_escalation,
    }
    out.update({k: v for k, v in simple.items() if v is not None})
    if sc.capabilities is not None:
        drop = sorted({"ALL", *(sc.capabilities.drop or [])})
        caps: dict[str, Any] = {"drop": drop}
        if sc.capabilities.add:
            caps["add"] = list(sc.capabilities.add)
        out["capabilities"] = caps
    return out


def extra_volumes(c: RuntimeContainer) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, container mounts) for the template's extra volumes."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for v in c.volumes or []:
        vol: dict[str, Any] = {"name": v.name}
        if v.empty_dir is not None:
            vol["emptyDir"] = v.empty_dir.to_wire()
        elif v.config_map is not None:
            vol["configMap"] = {"name": v.config_map.name}
        elif v.host_path is not None:
            vol["hostPath"] = {"path": v.host_path.path}
        volumes.append(vol)
        mount: dict[str, Any] = {"name": v.name, "mountPath": v.mount_path}
        if v.read_only:
            mount["readOnly"] = True
        mounts.append(mount)
    return volumes, mounts


def pod_flags(c: RuntimeContainer) -> dict[str, bool]:
    """The pod-level host namespaces the template asks for (only those set to true)."""
    flags = {"hostNetwork": c.host_network, "hostPID": c.host_pid, "hostIPC": c.host_ipc}
    return {k: v for k, v in flags.items() if v}


@dataclass(frozen=True)
class ServingContainer:
    """The serving container of one model, resolved: what the templates render. Hashable (the
    render cache keys on the context), so the nested structures are held as JSON."""

    command: tuple[str, ...] | None
    args: tuple[str, ...] | None
    env: tuple[tuple[str, str], ...]
    protocol: str
    http_port: int
    grpc_port: int | None
    readiness_path: str
    liveness_path: str
    metrics_port: int | None  # the runtime's own metrics port, if it serves metrics
    metrics_path: str
    sidecar: bool
    model_mount_path: str
    airt_worker_config: bool
    security_context_json: str
    pod_flags_json: str
    volumes_json: str
    mounts_json: str

    @property
    def security_context(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.security_context_json)
        return result

    @property
    def pod_flags(self) -> dict[str, bool]:
        result: dict[str, bool] = json.loads(self.pod_flags_json)
        return result

    @property
    def volumes(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = json.loads(self.volumes_json)
        return result

    @property
    def mounts(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = json.loads(self.mounts_json)
        return result

    @property
    def metrics_url(self) -> str:
        """Where the sidecar scrapes the runtime's own metrics (nothing to scrape: empty)."""
        if self.metrics_port is None:
            return ""
        return f"http://127.0.0.1:{self.metrics_port}{self.metrics_path}"

    @property
    def metrics_pod_port(self) -> int:
        """The pod port Prometheus scrapes: the sidecar's, or the runtime's own."""
        if self.sidecar or self.metrics_port is None:
            return 8002
        return self.metrics_port

    @property
    def metrics_target(self) -> str:
        """The container port name the Service's metrics port targets."""
        if self.sidecar or self.metrics_port != self.http_port:
            return "metrics"
        return "http"

    @property
    def declares_metrics_port(self) -> bool:
        """Whether the serving container itself declares the port named `metrics`."""
        return not self.sidecar and self.metrics_target == "metrics"


def serving_container(c: RuntimeContainer, uri: str, served_name: str) -> ServingContainer:
    """The template expanded for one model."""
    path, directory = model_paths(uri, c.model_mount_path)
    values = {
        "{{model.path}}": path,
        "{{model.dir}}": directory,
        "{{model.name}}": served_name,
        "{{port.http}}": str(c.http_port),
        "{{port.grpc}}": str(c.grpc_port or ""),
        "{{port.metrics}}": str(c.metrics.port if c.metrics else ""),
    }
    volumes, mounts = extra_volumes(c)
    return ServingContainer(
        command=tuple(expand(a, values) for a in c.command) if c.command else None,
        args=tuple(expand(a, values) for a in c.args) if c.args else None,
        env=tuple((e.name, expand(e.value, values)) for e in c.env or []),
        protocol=c.protocol,
        http_port=c.http_port,
        grpc_port=c.grpc_port,
        readiness_path=c.readiness.path if c.readiness else DEFAULT_READINESS[c.protocol],
        liveness_path=c.liveness.path if c.liveness else DEFAULT_LIVENESS[c.protocol],
        metrics_port=c.metrics.port if c.metrics else None,
        metrics_path=c.metrics.path if c.metrics else "/metrics",
        sidecar=c.metrics_sidecar,
        model_mount_path=c.model_mount_path,
        airt_worker_config=c.airt_worker_config,
        security_context_json=json.dumps(security_context(c)),
        pod_flags_json=json.dumps(pod_flags(c)),
        volumes_json=json.dumps(volumes),
        mounts_json=json.dumps(mounts),
    )

"""An InferenceRuntime's container template: how any inference server runs a model under airt.

Read by the runtime kinds (runtime.py) as `spec.container`, by the operator's template expansion
(reconcile/runtime_template.py) and its Pod Security check (reconcile/pod_security.py), and by
`airt_operator.crdgen`. Pure models, no kopf.

Refinements, and why:
- Ports are a fixed set of roles (`http`, optional `grpc`) rather than a free list: the Service,
  NetworkPolicy and probes are rendered from roles, so every runtime keeps the Service's ports
  8000/8001/8002 whatever its container listens on.
- Placeholders (`{{model.path}}`, `{{port.http}}`, ...) are a closed set checked by the API server,
  so a typo is refused at `kubectl apply`, not found in a crash-looping pod.
- The security-relevant fields (`securityContext`, `hostNetwork`, `volumes[].hostPath`) exist so
  that a template asking for them is refused with a reason naming them (Pod Security
  `restricted`, checked by the operator on the rendered pod), not silently pruned by the schema.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from .base import DNS1123_LABEL, ENV_NAME, IMAGE, ApiModel, Quantity, cel, cel_str

Protocol = Literal["v2", "openai", "custom"]

#: Every placeholder a command, an argument or an environment value may hold.
PLACEHOLDERS: tuple[str, ...] = (
    "{{model.path}}",
    "{{model.dir}}",
    "{{model.name}}",
    "{{port.http}}",
    "{{port.grpc}}",
    "{{port.metrics}}",
)
_PLACEHOLDER = r"\{\{[^}]*\}\}"
_PLACEHOLDER_RE = re.compile(_PLACEHOLDER)
_KNOWN = "[" + ", ".join(cel_str(p) for p in PLACEHOLDERS) + "]"

#: The port the airt metrics sidecar listens on (and the Service's metrics port).
SIDECAR_PORT = 8002
# Paths the operator mounts itself in every serving container.
RESERVED_PATHS = ("/", "/tmp", "/dev", "/dev/shm", "/proc", "/sys", "/etc", "/var/run/secrets")

Port = Annotated[int, Field(ge=1024, le=65535)]
HttpPath = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^/[A-Za-z0-9._~%/=&?-]*$")
]
MountPath = Annotated[
    str, StringConstraints(min_length=2, max_length=256, pattern=r"^(/[A-Za-z0-9._-]+)+$")
]
TemplateString = Annotated[str, StringConstraints(max_length=1024)]
CapabilityName = Annotated[str, StringConstraints(max_length=64, pattern=r"^[A-Z_]+$")]


def known_placeholders(value: str) -> bool:
    """Whether every `{{...}}` in `value` is one of PLACEHOLDERS."""
    return all(p in PLACEHOLDERS for p in _PLACEHOLDER_RE.findall(value))


def _placeholder_rule(field: str) -> tuple[str, str]:
    rule = f"self.findAll({cel_str(_PLACEHOLDER)}).all(p, p in {_KNOWN})"
    message = f"{field} may hold only the placeholders " + ", ".join(PLACEHOLDERS)
    return rule, message


def _uses(field: str, placeholder: str) -> str:
    """CEL: some item of a string list (or env value) holds `placeholder`."""
    needle = cel_str(placeholder)
    if field == "env":
        return f"(has(self.env) && self.env.exists(e, has(e.value) && e.value.contains({needle})))"
    return f"(has(self.{field}) && self.{field}.exists(a, a.contains({needle})))"


def _uses_py(c: RuntimeContainer, placeholder: str) -> bool:
    strings = [*(c.command or []), *(c.args or []), *(e.value for e in c.env or [])]
    return any(placeholder in s for s in strings)


class TemplateEnvVar(ApiModel):
    """An environment variable of the runtime's container; its value may hold placeholders."""

    name: str = Field(
        min_length=1, max_length=128, pattern=ENV_NAME, description="The variable's name."
    )
    value: str = Field(
        default="",
        max_length=1024,
        description="The value; placeholders ({{model.path}}, {{port.http}}, ...) are expanded.",
    )


@cel(
    "!has(self.grpc) || self.grpc != self.http",
    "the grpc port must differ from the http port",
    lambda p: p.grpc is None or p.grpc != p.http,
    field_path=".grpc",
)
class RuntimePorts(ApiModel):
    """The ports the runtime's server listens on, by role (the Service maps 8000/8001 onto them)."""

    http: Port = Field(default=8000, description="The HTTP port (inference and health).")
    grpc: Port | None = Field(default=None, description="The gRPC port, if the server has one.")


class HttpEndpoint(ApiModel):
    """An HTTP path on the runtime's http port."""

    path: HttpPath = Field(description="The path, e.g. /v2/health/ready.")


class MetricsEndpoint(ApiModel):
    """Where the runtime itself serves Prometheus metrics."""

    port: Port = Field(description="The port its metrics are served on.")
    path: HttpPath = Field(default="/metrics", description="The path, /metrics by default.")


class Capabilities(ApiModel):
    """Linux capabilities to add or drop (Pod Security restricted allows adding only
    NET_BIND_SERVICE)."""

    add: list[CapabilityName] | None = Field(
        default=None, max_length=16, description="Capabilities to add."
    )
    drop: list[CapabilityName] | None = Field(
        default=None, max_length=16, description="Capabilities to drop (ALL is always dropped)."
    )


class ContainerSecurity(ApiModel):
    """Changes to the restricted security context the operator gives every container. Anything
    Pod Security `restricted` forbids makes the runtime unusable (a condition names it)."""

    run_as_user: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="The UID (65532 by default; not 0)."
    )
    run_as_group: int | None = Field(
        default=None, ge=0, le=2**31 - 1, description="The GID (65532 by default)."
    )
    read_only_root_filesystem: bool | None = Field(
        default=None,
        description="False for servers that write outside their volumes (true by default).",
    )
    privileged: bool | None = Field(default=None, description="Refused: restricted forbids it.")
    allow_privilege_escalation: bool | None = Field(
        default=None, description="Refused when true: restricted forbids it."
    )
    capabilities: Capabilities | None = Field(default=None, description="Capabilities.")


class EmptyDirSource(ApiModel):
    """A scratch volume."""

    medium: Literal["", "Memory"] | None = Field(default=None, description="'' or Memory.")
    size_limit: Quantity | None = Field(default=None, description="Its size limit.")


class ConfigMapSource(ApiModel):
    """A ConfigMap of the model's namespace, read-only."""

    name: str = Field(max_length=253, description="The ConfigMap's name.")


class HostPathSource(ApiModel):
    """A directory of the node. Refused: Pod Security restricted forbids hostPath volumes."""

    path: str = Field(max_length=1024, description="The node's path.")


@cel(
    "[has(self.emptyDir), has(self.configMap), has(self.hostPath)].filter(x, x).size() == 1",
    "set exactly one of emptyDir, configMap, hostPath",
    lambda v: sum(x is not None for x in (v.empty_dir, v.config_map, v.host_path)) == 1,
)
class RuntimeVolume(ApiModel):
    """An extra volume the runtime's container mounts."""

    name: str = Field(
        max_length=63,
        pattern=DNS1123_LABEL,
        description="The volume's name (not models, tmp, dshm).",
    )
    mount_path: MountPath = Field(description="Where the container mounts it.")
    read_only: bool = Field(default=False, description="Mount it read-only.")
    empty_dir: EmptyDirSource | None = Field(default=None, description="A scratch volume.")
    config_map: ConfigMapSource | None = Field(default=None, description="A ConfigMap.")
    host_path: HostPathSource | None = Field(
        default=None, description="A node directory (refused under restricted)."
    )


_COMMAND_RULE = _placeholder_rule("command")
_ARGS_RULE = _placeholder_rule("args")


@cel(_COMMAND_RULE[0], _COMMAND_RULE[1], known_placeholders, field="command", each=True)
@cel(_ARGS_RULE[0], _ARGS_RULE[1], known_placeholders, field="args", each=True)
@cel(
    "!(" + " || ".join(_uses(f, "{{port.grpc}}") for f in ("command", "args", "env")) + ")"
    " || has(self.ports) && has(self.ports.grpc)",
    "{{port.grpc}} is used but ports.grpc is not declared",
    lambda c: (
        not _uses_py(c, "{{port.grpc}}") or (c.ports is not None and c.ports.grpc is not None)
    ),
    field_path=".ports.grpc",
    reason="FieldValueRequired",
)
@cel(
    "!(" + " || ".join(_uses(f, "{{port.metrics}}") for f in ("command", "args", "env")) + ")"
    " || has(self.metrics)",
    "{{port.metrics}} is used but metrics is not declared",
    lambda c: not _uses_py(c, "{{port.metrics}}") or c.metrics is not None,
    field_path=".metrics",
    reason="FieldValueRequired",
)
@cel(
    "self.protocol != 'openai' || !has(self.ports) || !has(self.ports.grpc)",
    "the openai protocol has no gRPC port",
    lambda c: c.protocol != "openai" or c.ports is None or c.ports.grpc is None,
    field_path=".ports.grpc",
    reason="FieldValueForbidden",
)
@cel(
    "self.protocol != 'custom' || (has(self.readiness) && has(self.liveness) && has(self.metrics))",
    "a custom protocol declares its readiness, liveness and metrics endpoints",
    lambda c: (
        c.protocol != "custom"
        or (c.readiness is not None and c.liveness is not None and c.metrics is not None)
    ),
    field_path=".protocol",
    reason="FieldValueRequired",
)
@cel(
    "!has(self.metricsSidecar) || self.metricsSidecar || has(self.metrics)",
    "without the metrics sidecar the runtime must serve metrics itself (set metrics)",
    lambda c: c.metrics_sidecar or c.metrics is not None,
    field_path=".metricsSidecar",
)
@cel(
    "!has(self.metrics) || !has(self.ports) || !has(self.ports.grpc) "
    "|| self.metrics.port != self.ports.grpc",
    "metrics.port must differ from the grpc port",
    lambda c: c.metrics is None or c.metrics.port != c.grpc_port,
    field_path=".metrics.port",
)
@cel(
    "(has(self.metricsSidecar) && !self.metricsSidecar) || ("
    "(!has(self.ports) || (self.ports.http != 8002 && (!has(self.ports.grpc) || "
    "self.ports.grpc != 8002))) && (!has(self.metrics) || self.metrics.port != 8002))",
    "port 8002 belongs to the metrics sidecar: choose another or set metricsSidecar: false",
    lambda c: (
        not c.metrics_sidecar
        or SIDECAR_PORT not in {c.http_port, c.grpc_port, c.metrics.port if c.metrics else None}
    ),
    field_path=".ports",
)
@cel(
    f"!(self.modelMountPath in [{', '.join(cel_str(p) for p in RESERVED_PATHS)}])",
    "modelMountPath may not be a path the operator mounts or the system owns",
    lambda c: c.model_mount_path not in RESERVED_PATHS,
    field_path=".modelMountPath",
)
class RuntimeContainer(ApiModel):
    """The runtime's serving container, as a template the operator expands for each model."""

    image: Annotated[str, StringConstraints(max_length=512, pattern=IMAGE)] = Field(
        description="The server's image (pin it by digest in production)."
    )
    command: list[TemplateString] | None = Field(
        default=None, max_length=32, description="The entrypoint (the image's when omitted)."
    )
    args: list[TemplateString] | None = Field(
        default=None,
        max_length=64,
        description="Arguments; placeholders {{model.path}} (the model file or directory), "
        "{{model.dir}} (the directory the model is mounted in), {{model.name}} (the served "
        "name), {{port.http}}, {{port.grpc}} and {{port.metrics}} are expanded.",
    )
    env: list[TemplateEnvVar] | None = Field(
        default=None,
        max_length=64,
        description="Environment variables (placeholders expanded); defaults.env comes after.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    protocol: Protocol = Field(
        default="v2",
        description="What clients speak to it: v2 (Open Inference Protocol, HTTP and gRPC), "
        "openai (OpenAI-compatible HTTP) or custom (declare readiness, liveness and metrics).",
    )
    ports: RuntimePorts | None = Field(
        default=None, description="The ports it listens on (http 8000 when omitted)."
    )
    readiness: HttpEndpoint | None = Field(
        default=None,
        description="Ready when this answers 200 (v2: /v2/health/ready, openai: /health).",
    )
    liveness: HttpEndpoint | None = Field(
        default=None,
        description="Restarted when this fails (v2: /v2/health/live, openai: /health).",
    )
    metrics: MetricsEndpoint | None = Field(
        default=None, description="Where the server serves Prometheus metrics itself, if it does."
    )
    metrics_sidecar: bool = Field(
        default=True,
        description="Run the airt metrics sidecar on port 8002 (it re-exports `metrics` with pod "
        "and model labels, plus GPU telemetry). False requires `metrics`, then served on 8002 "
        "of the Service directly.",
    )
    model_mount_path: MountPath = Field(
        default="/models", description="Where the model volume is mounted in the container."
    )
    airt_worker_config: bool = Field(
        default=False,
        description="The container is the airt worker: it gets its whole configuration "
        "(batching, limits, tensors) as AIRT_WORKER_CONFIG.",
    )
    security_context: ContainerSecurity | None = Field(
        default=None, description="Changes to the restricted security context."
    )
    host_network: bool = Field(default=False, description="Refused when true (restricted).")
    host_pid: bool = Field(
        default=False, alias="hostPID", description="Refused when true (restricted)."
    )
    host_ipc: bool = Field(
        default=False, alias="hostIPC", description="Refused when true (restricted)."
    )
    volumes: list[RuntimeVolume] | None = Field(
        default=None,
        max_length=8,
        description="Extra volumes (scratch space, configuration).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    @property
    def http_port(self) -> int:
        return self.ports.http if self.ports else 8000

    @property
    def grpc_port(self) -> int | None:
        return self.ports.grpc if self.ports else None

"""The typed render context: everything the templates need, resolved, in one frozen value.

Built by reconcile/build.py from the parsed ModelDeployment, the resolved InferenceRuntime and
the operator settings; read by reconcile/render.py. One value instead of many arguments keeps
the renderer a pure function of its input and the templates free of logic about defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from airt_operator.reconcile.placement import GpuPlacement
from airt_operator.reconcile.runtime_template import ServingContainer

__all__ = ["Access", "GpuPlacement", "RenderContext"]


@dataclass(frozen=True)
class Access:
    """Who may call the model (NetworkPolicy ingress on 8000/8001)."""

    same_namespace: bool = True
    namespaces: tuple[str, ...] = ()
    pod_labels: tuple[tuple[str, str], ...] = ()
    all_namespaces: bool = False


@dataclass(frozen=True, kw_only=True)
class RenderContext:
    """One ModelDeployment, resolved: the single input of rendering. Built only by
    reconcile/build.py, so it repeats no default of the operator's settings."""

    name: str
    namespace: str
    uid: str
    generation: int
    # model
    model_uri: str
    served_name: str
    model_sha256: str | None
    credentials_secret: str | None
    #: The worker's whole configuration (airt_contract.worker.WorkerConfig) as JSON, built by
    #: reconcile/worker_config.py; the template passes it on without reading it. None when the
    #: runtime is not the airt worker.
    worker_config: str | None
    #: The model fetcher's (FetchConfig) likewise; None for a model on a volume.
    fetch_config: str | None
    # runtime
    runtime_name: str
    runtime_kind: str = "InferenceRuntime"
    worker_image: str
    #: The runtime's container template, expanded for this model (reconcile/runtime_template.py).
    serving: ServingContainer
    metrics_image: str
    fetcher_image: str
    accelerator: str
    runtime_env: tuple[tuple[str, str], ...] = ()
    #: The OTEL_* variables of spec.tracing (reconcile/build.py `tracing_env`); the runtime's
    #: own variables, rendered after them, may override single ones.
    tracing_env: tuple[tuple[str, str], ...] = ()
    #: The OTLP receiver's port, which the NetworkPolicy lets the pods reach; None: no tracing.
    tracing_port: int | None = None
    # shape
    replicas: int | None = 1  # None when an HPA owns the replica count
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    shm_size: str
    gpu: GpuPlacement | None = None
    autoscaling_min: int | None = None
    autoscaling_max: int | None = None
    autoscaling_target_cpu: int | None = None  # percent of the CPU request
    autoscaling_target_inflight: int | None = None  # in-flight requests per replica
    autoscaling_inflight_metric: str = ""
    access: Access = field(default_factory=Access)
    # cluster-level facts and settings
    monitoring_namespace: str
    service_monitor: bool = False
    storage_egress_ports: tuple[int, ...] = ()
    # Addresses the fetcher may not reach (the cluster's pod and service ranges, link-local
    # metadata endpoints); empty when the runtime declares its model store in-cluster.
    egress_except: tuple[str, ...] = ()
    model_volume_size: str
    tmp_size: str = "1Gi"
    drain_seconds: int
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def remote_model(self) -> bool:
        return not self.model_uri.startswith("pvc://")

    @property
    def child_name(self) -> str:
        return self.name

    @property
    def selector(self) -> dict[str, str]:
        return {"app.kubernetes.io/name": "airt-model", "airt.dev/modeldeployment": self.name}

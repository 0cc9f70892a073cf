"""Build the RenderContext from a parsed ModelDeployment, its resolved runtime and the settings.

Called by the reconciler between resolve and render. Pure: it merges the model's own choices
with the runtime's defaults and the operator's settings, derives the worker thread count from
the CPU limit, turns the GPU request into a placement and builds the worker's configuration
(reconcile/worker_config.py, only for a runtime that is the airt worker) and expands the
runtime's container template (reconcile/runtime_template.py).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from airt_operator.api import ModelDeployment
from airt_operator.api.modeldeployment import DEFAULT_CPU_UTILIZATION, INFLIGHT_METRIC, Tracing
from airt_operator.reconcile.context import Access, RenderContext
from airt_operator.reconcile.placement import GpuPlacement, gpu_placement, placement_mode
from airt_operator.reconcile.resolve import ResolvedRuntime
from airt_operator.reconcile.runtime_template import container_of, serving_container
from airt_operator.reconcile.serving import derive
from airt_operator.reconcile.worker_config import (
    PodFacts,
    config_json,
    fetch_config,
    worker_config,
)
from airt_operator.settings import OperatorSettings

_QUANTITY = re.compile(r"^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_STORAGE_PORTS = {"s3": (443,), "gs": (443,), "https": (443,), "hf": (443,), "oci": (443,)}


@dataclass(frozen=True)
class BuildSettings:
    """The slice of the operator's settings the context needs. The defaults live once, in
    OperatorSettings; the ones below are the fallbacks of a runtime that sets no resources."""

    metrics_image: str
    fetcher_image: str
    monitoring_namespace: str
    drain_seconds: int
    default_model_size: str
    egress_except: tuple[str, ...]
    default_cpu: str = "1"
    default_memory: str = "2Gi"
    default_shm: str = "1Gi"
    #: The operator's GPU placement setting: auto (the cluster decides), dra or devicePlugin.
    gpu_placement: str = "auto"

    @classmethod
    def from_settings(cls, settings: OperatorSettings) -> BuildSettings:
        return cls(
            gpu_placement=settings.gpu_placement,
            metrics_image=settings.metrics_image,
            fetcher_image=settings.fetcher_image,
            monitoring_namespace=settings.monitoring_namespace,
            drain_seconds=settings.drain_seconds,
            default_model_size=settings.default_model_size,
            egress_except=tuple(settings.egress_except_cidrs),
        )

    @classmethod
    def defaults(cls, **overrides: Any) -> BuildSettings:
        """The operator's defaults (not its environment), for tests and benchmarks."""
        return replace(cls.from_settings(OperatorSettings.model_construct()), **overrides)


_BYTES = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}  # fmt: skip


def tracing_env(tracing: Tracing, name: str, namespace: str) -> tuple[tuple[str, str], ...]:
    """spec.tracing as the OpenTelemetry SDK's standard variables: the base endpoint (the SDK
    adds /v1/traces for HTTP), the protocol, a parent-based ratio sampler (a caller's sampled
    traceparent is always honoured) and the resource that names the model."""
    return (
        ("OTEL_EXPORTER_OTLP_ENDPOINT", tracing.endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", tracing.protocol),
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", f"{tracing.sampling_percent / 100:g}"),
        ("OTEL_SERVICE_NAME", name),
        ("OTEL_RESOURCE_ATTRIBUTES", f"k8s.namespace.name={namespace},k8s.deployment.name={name}"),
    )


def tracing_port(tracing: Tracing) -> int:
    """The receiver's port: the one in the endpoint, else OTLP's default for the protocol."""
    authority = tracing.endpoint.split("://", 1)[1].split("/", 1)[0]
    if ":" in authority:
        return int(authority.rsplit(":", 1)[1])
    return 4317 if tracing.protocol == "grpc" else 4318


def quantity_bytes(quantity: int | str) -> int:
    """A memory or storage quantity in bytes ("20Gi" → 21474836480, 1000 → 1000)."""
    if isinstance(quantity, int):
        return quantity
    m = re.match(r"^([0-9.]+)(k|M|G|T|P|Ki|Mi|Gi|Ti|Pi)?$", quantity)
    if not m:
        raise ValueError(f"not a byte quantity: {quantity}")
    return int(float(m.group(1)) * _BYTES[m.group(2) or ""])


def cpu_cores(quantity: str) -> float:
    """A CPU quantity in cores ("500m" → 0.5, "2" → 2.0)."""
    m = _QUANTITY.match(quantity)
    if not m:
        raise ValueError(f"not a CPU quantity: {quantity!r}")
    value = float(m.group(1))
    return value / 1000 if m.group(2) == "m" else value


def threads_for(cpu_limit: str) -> int:
    """Worker threads from the CPU limit (never the node's core count): ceil, at least 1."""
    return max(1, math.ceil(cpu_cores(cpu_limit)))


def _gpu(
    md: ModelDeployment, runtime_mode: str | None, setting: str, dra: bool
) -> GpuPlacement | None:
    """The GPU placement, in the mode in effect (reconcile/placement.py); PlacementError when
    the device plugin is to place what only DRA can express."""
    gpu = md.spec.resources.gpu if md.spec.resources else None
    if gpu is None:
        return None
    return gpu_placement(gpu, placement_mode(gpu, runtime_mode, setting, dra))


def build_context(
    md: ModelDeployment,
    resolved: ResolvedRuntime,
    settings: BuildSettings,
    uid: str,
    generation: int,
    service_monitor: bool,
    dra_available: bool = False,
) -> RenderContext:
    """The render context; `dra_available` says whether the cluster has the NVIDIA
    DeviceClasses (GPU placement's `auto`). Raises PlacementError (reconcile/placement.py)."""
    spec = md.spec
    rt = resolved.runtime.spec
    name = md.metadata.name or ""
    defaults = rt.defaults.resources if rt.defaults and rt.defaults.resources else None
    res = spec.resources

    def pick(attr: str, fallback: str) -> str:
        own = getattr(res, attr, None) if res else None
        dflt = getattr(defaults, attr, None) if defaults else None
        return str(own or dflt or fallback)

    cpu = pick("cpu", settings.default_cpu)
    memory = pick("memory", settings.default_memory)
    b = spec.batching
    limits = derive(
        memory,
        b.max_batch_size if b else 0,
        spec.model.instances or 1,
        (b.max_queue_delay_microseconds or 0) if b else 0,
        spec.serving,
        b.max_queue_size if b else None,
        b.queue_timeout_microseconds if b else None,
    )
    acc = spec.access
    access = Access(
        same_namespace=not (acc and acc.namespaces) and not (acc and acc.all_namespaces),
        namespaces=tuple(acc.namespaces or ()) if acc else (),
        pod_labels=tuple(sorted((acc.pod_selector or {}).items())) if acc else (),
        all_namespaces=bool(acc and acc.all_namespaces),
    )
    model = spec.model
    gpu = _gpu(md, rt.gpu_placement, settings.gpu_placement, dra_available)
    served_name = model.name or name
    template = container_of(rt)
    serving = serving_container(template, model.uri, served_name)
    config = None
    if template.airt_worker_config:
        config = worker_config(
            spec,
            PodFacts(
                served_name=served_name,
                threads=threads_for(cpu),
                gpu_count=gpu.count if gpu else 0,
                fixed_gpu_count=gpu.fixed_count if gpu else True,
                drain_seconds=settings.drain_seconds,
                limits=limits,
            ),
        )
    a = spec.autoscaling
    target = a.target if a else None
    inflight = target.inflight_requests if target else None
    target_cpu = None
    if a and inflight is None:
        target_cpu = (target.cpu_utilization if target else None) or DEFAULT_CPU_UTILIZATION
    scheme = model.uri.split("://", 1)[0]
    policy = rt.policy
    model_size = (policy.max_model_size if policy else None) or settings.default_model_size
    fetch = fetch_config(spec, quantity_bytes(model_size))
    return RenderContext(
        name=name,
        namespace=md.metadata.namespace or "",
        uid=uid,
        generation=generation,
        model_uri=model.uri,
        served_name=served_name,
        model_sha256=model.sha256,
        worker_config=config_json(config) if config else None,
        fetch_config=config_json(fetch) if fetch else None,
        credentials_secret=model.credentials.name if model.credentials else None,
        runtime_name=resolved.name,
        runtime_kind=resolved.kind,
        worker_image=resolved.worker_image,
        serving=serving,
        metrics_image=(rt.images.metrics if rt.images else None) or settings.metrics_image,
        fetcher_image=(rt.images.model_fetch if rt.images else None) or settings.fetcher_image,
        accelerator=rt.accelerator,
        runtime_env=tuple((e.name, e.value) for e in (rt.defaults.env or []))
        if rt.defaults
        else (),
        tracing_env=tracing_env(spec.tracing, name, md.metadata.namespace or "")
        if spec.tracing
        else (),
        tracing_port=tracing_port(spec.tracing) if spec.tracing else None,
        replicas=spec.replicas,
        cpu_request=cpu,
        cpu_limit=cpu,
        memory_request=memory,
        memory_limit=memory,
        shm_size=pick("shm_size", settings.default_shm),
        gpu=gpu,
        autoscaling_min=a.min_replicas if a else None,
        autoscaling_max=a.max_replicas if a else None,
        autoscaling_target_cpu=target_cpu,
        autoscaling_target_inflight=inflight,
        autoscaling_inflight_metric=INFLIGHT_METRIC,
        access=access,
        monitoring_namespace=settings.monitoring_namespace,
        service_monitor=service_monitor,
        storage_egress_ports=_STORAGE_PORTS.get(scheme, ()),
        egress_except=() if policy and policy.in_cluster_model_store else settings.egress_except,
        model_volume_size=str(model_size),
        drain_seconds=settings.drain_seconds,
    )

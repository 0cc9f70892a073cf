"""OpenTelemetry traces of the operator's reconciles, on only when an OTLP endpoint is set.

Called by `main` once at start-up (`start_tracer`), which hands the tracer to the `Reconciler`;
without one the reconciler's `span` helper is a no-op. Configuration is the OpenTelemetry SDK's
standard environment (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL,
OTEL_TRACES_SAMPLER, OTEL_RESOURCE_ATTRIBUTES, ...), which the Helm chart's `tracing` values set.
The span tree of one reconcile (docs/observability.md):

    reconcile             k8s.namespace.name, airt.modeldeployment.name, airt.reconcile.result
    ├── resolve           the runtime chosen for the model
    ├── apply             the children written (airt.children.written)
    └── status            whether the status changed (airt.status.written)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

#: The standard variables that name an OTLP traces endpoint; one of them turns tracing on.
ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def tracing_enabled(env: Mapping[str, str] | None = None) -> bool:
    """An OTLP endpoint is set, the SDK is not disabled and the traces exporter is not `none`."""
    env = os.environ if env is None else env
    endpoint = any(env.get(k) for k in ENDPOINT_ENVS)
    disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    return endpoint and not disabled and env.get("OTEL_TRACES_EXPORTER", "otlp") != "none"


def start_tracer() -> tuple[Any, Any] | None:
    """(tracer, provider) exporting in batches over OTLP gRPC or HTTP, or None when off. The
    provider's `shutdown()` flushes what is buffered."""
    if not tracing_enabled():
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    )
    exporter: Any
    if protocol.startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        exporter = HttpExporter()
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        exporter = GrpcExporter()
    attrs = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "airt-operator"}
    provider = TracerProvider(resource=Resource.create(attrs))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    log.info("tracing reconciles: OTLP %s", protocol)
    return provider.get_tracer("airt_operator"), provider

"""OpenTelemetry traces of inference requests, on only when an OTLP endpoint is configured.

Called by the composition root (`server`), which asks `TraceConfig.from_env()` once at start-up.
When tracing is off (the default) nothing here is on the request path: the server builds the
plain batcher and transports, and no span, context variable or timestamp is touched per request.
When it is on, the server builds instead:

- `TracedRestApp`, an ASGI wrapper around the REST app, and `TracingInterceptor`, a gRPC server
  interceptor, which open a `RequestTrace` per ModelInfer / POST .../infer, read the W3C
  `traceparent` (and `tracestate`) from the HTTP headers or the gRPC metadata, and emit the spans
  when the answer has been written;
- `TracedBatcher`, which notes on the current `RequestTrace` when the request was submitted to
  the batcher and the batch it ran in.

Every span is emitted after the fact, with the timestamps the request collected on its way, so
the request path holds no open span objects, and a request whose parent says "not sampled" costs
one sampler decision. The span tree of one request:

    POST /v2/models/{model}/infer | inference.GRPCInferenceService/ModelInfer   (SERVER)
    ├── receive   read and decode the body, validate against the model
    ├── queue     in the batcher's queue                     airt.queue.time_ns
    ├── batch     the batch it ran in (shared timings)       airt.batch.size, .rows, .number
    │   └── model the model's own execution of that batch
    └── respond   statistics, encoding and writing the answer

The exporter, sampler and resource come from the standard OTEL_* variables (the operator sets
them from `spec.tracing`); see docs/observability.md.
"""

from __future__ import annotations

import contextvars
import logging
import os
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airt_worker.asgi import Message, Receive, Scope, Send
from airt_worker.batching import Answer, DynamicBatcher
from airt_worker.datatypes import Array

log = logging.getLogger(__name__)

#: The spans' instrumentation scope.
SCOPE = "airt_worker"

#: The standard variables that name an OTLP traces endpoint; one of them turns tracing on.
ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


@dataclass(frozen=True)
class TraceConfig:
    """Tracing as configured by the environment at start-up (fixed for the process's life)."""

    enabled: bool
    endpoint: str = ""
    protocol: str = "grpc"
    sampler: str = "parentbased_always_on"
    sampler_arg: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TraceConfig:
        """On when an OTLP endpoint is set, the SDK is not disabled and the traces exporter is
        not `none` (the OpenTelemetry specification's own switches)."""
        env = os.environ if env is None else env
        endpoint = next((env[k] for k in ENDPOINT_ENVS if env.get(k)), "")
        disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
        exporter = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "grpc"
        )
        return cls(
            enabled=bool(endpoint) and not disabled and exporter != "none",
            endpoint=endpoint,
            protocol=protocol,
            sampler=env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
            sampler_arg=env.get("OTEL_TRACES_SAMPLER_ARG", ""),
        )

    def settings(self) -> dict[str, Any]:
        """The v2 trace extension's settings document (Triton's keys; values are strings), so
        `GET /v2/trace/setting` and the gRPC TraceSetting RPC report what really happens."""
        rate = "0"
        if self.enabled:
            rate = "1"
            if self.sampler.endswith("traceidratio"):
                # Triton's trace_rate is "one in N"; a ratio sampler traces 1/ratio on average
                try:
                    ratio = float(self.sampler_arg or "1")
                    rate = str(round(1 / ratio)) if ratio > 0 else "0"
                except ValueError:
                    rate = "1"
            elif self.sampler.endswith("always_off"):
                rate = "0"
        return {
            "trace_mode": "opentelemetry",
            "trace_level": ["TIMESTAMPS"] if self.enabled else ["OFF"],
            "trace_rate": rate,
            "trace_count": "-1",
            "log_frequency": "0",
            "trace_file": "",
            "opentelemetry_endpoint": self.endpoint,
            "opentelemetry_protocol": self.protocol if self.enabled else "",
            "opentelemetry_sampler": self.sampler if self.enabled else "",
        }


def check_update(config: TraceConfig, requested: Mapping[str, Any]) -> None:
    """Accept a trace-setting update only when it changes nothing: the settings come from the
    environment at start-up, and the request path was built for them then."""
    from airt_worker.errors import UnsupportedError

    current = config.settings()
    for key, value in requested.items():
        if value is None:
            continue
        # HTTP sends strings or lists, gRPC always lists: compare as lists of strings
        want = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        have = current.get(key)
        if have is None or want != (have if isinstance(have, list) else [have]):
            raise UnsupportedError(
                f"trace setting {key!r} cannot be changed at run time: tracing is configured at "
                "start from the OTEL_* environment (the ModelDeployment's spec.tracing)"
            )


# --------------------------------------------------------------------------- per request


class RequestTrace:
    """The timestamps (monotonic ns) one traced request collects on its way."""

    __slots__ = ("answer", "answered_ns", "carrier", "received_ns", "submitted_ns")

    def __init__(self, carrier: dict[str, str], received_ns: int) -> None:
        self.carrier = carrier
        self.received_ns = received_ns
        self.submitted_ns = 0
        self.answered_ns = 0
        self.answer: Answer | None = None


#: The request being served by the current task; set only by the traced transports.
CURRENT: contextvars.ContextVar[RequestTrace | None] = contextvars.ContextVar(
    "airt_request_trace", default=None
)


class TracedBatcher(DynamicBatcher):
    """The dynamic batcher, noting on the current `RequestTrace` when a request was submitted,
    when its answer came and which batch it ran in. Built instead of `DynamicBatcher` only when
    tracing is on."""

    async def submit(
        self,
        inputs: list[Array],
        rows: int,
        key: Hashable,
        enqueued_ns: int,
        deadline_ns: int = 0,
    ) -> Answer:
        rt = CURRENT.get()
        if rt is None:
            return await super().submit(inputs, rows, key, enqueued_ns, deadline_ns)
        rt.submitted_ns = time.monotonic_ns()
        answer = await super().submit(inputs, rows, key, enqueued_ns, deadline_ns)
        rt.answered_ns = time.monotonic_ns()
        rt.answer = answer
        return answer


class Emitter:
    """Turns a finished `RequestTrace` into spans on the configured tracer provider."""

    def __init__(self, model_name: str, model_version: str, provider: Any = None) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._trace = trace
        self._tracer = (provider or trace.get_tracer_provider()).get_tracer(SCOPE)
        self._propagator = TraceContextTextMapPropagator()
        self._model = {"airt.model.name": model_name, "airt.model.version": model_version}

    def emit(
        self,
        rt: RequestTrace,
        name: str,
        attributes: dict[str, Any],
        error: str | None,
        done_ns: int,
    ) -> None:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        trace = self._trace
        # monotonic -> epoch, once per request: the spans' own clock is wall time
        shift = time.time_ns() - time.monotonic_ns()
        parent = self._propagator.extract(rt.carrier)
        root = self._tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={**self._model, **attributes},
            start_time=rt.received_ns + shift,
        )
        if not root.is_recording():  # not sampled: nothing more to build
            root.end(end_time=done_ns + shift)
            return
        ctx = trace.set_span_in_context(root)
        a = rt.answer
        submitted = rt.submitted_ns or done_ns

        def child(
            span_name: str, start: int, end: int, attrs: dict[str, Any] | None = None, c: Any = ctx
        ) -> Any:
            span = self._tracer.start_span(
                span_name, context=c, attributes=attrs, start_time=start + shift
            )
            span.end(end_time=max(end, start) + shift)
            return span

        child("receive", rt.received_ns, submitted)
        if a is not None:
            b = a.batch
            queue_ns = max(b.dispatched_ns - submitted, 0)
            root.set_attribute("airt.queue.time_ns", queue_ns)
            root.set_attribute("airt.batch.size", b.requests)
            child("queue", submitted, b.dispatched_ns, {"airt.queue.time_ns": queue_ns})
            batch_attrs = {
                "airt.batch.number": b.number,
                "airt.batch.size": b.requests,
                "airt.batch.rows": b.rows,
            }
            batch = self._tracer.start_span(
                "batch", context=ctx, attributes=batch_attrs, start_time=b.dispatched_ns + shift
            )
            child("model", b.model_start_ns, b.model_end_ns, None, trace.set_span_in_context(batch))
            batch.end(end_time=max(rt.answered_ns, b.dispatched_ns) + shift)
            child("respond", rt.answered_ns, done_ns)
        elif rt.submitted_ns:  # queued, then failed or cancelled before an answer
            child("queue", submitted, done_ns)
        if error is not None:
            root.set_status(Status(StatusCode.ERROR, error))
        root.end(end_time=done_ns + shift)


# ------------------------------------------------------------------------------ transports


def _header_carrier(headers: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    carrier: dict[str, str] = {}
    for k, v in headers:  # ASGI header names are lowercase
        if k == b"traceparent" or k == b"tracestate":
            carrier[k.decode("latin-1")] = v.decode("latin-1")
    return carrier


class TracedRestApp:
    """The REST app with a span tree per POST .../infer; every other route passes through."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], emitter: Emitter):
        self.app = app
        self.emitter = emitter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].endswith("/infer")
        ):
            await self.app(scope, receive, send)
            return
        rt = RequestTrace(_header_carrier(scope["headers"]), time.monotonic_ns())
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        token = CURRENT.set(rt)
        error: str | None = None
        try:
            await self.app(scope, receive, watch)
        except BaseException as e:
            error = type(e).__name__
            raise
        finally:
            CURRENT.reset(token)
            # a 4xx is the client's error, not the server span's (OpenTelemetry's HTTP rules)
            if error is None and (status >= 500 or status == 0):
                error = f"HTTP {status}" if status else "no response"
            model = scope["path"].split("/")[3] if scope["path"].count("/") >= 4 else ""
            attrs = {
                "http.request.method": "POST",
                "url.path": scope["path"],
                "http.response.status_code": status,
            }
            self._emit(rt, f"POST /v2/models/{model}/infer", attrs, error)

    def _emit(self, rt: RequestTrace, name: str, attrs: dict[str, Any], error: str | None) -> None:
        try:
            self.emitter.emit(rt, name, attrs, error, time.monotonic_ns())
        except Exception:  # tracing never fails a request
            log.exception("could not record the request's spans")


MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


def tracing_interceptor(emitter: Emitter) -> Any:
    """A grpc.aio server interceptor with a span tree per ModelInfer call (other RPCs, the
    stream included, pass through untouched)."""
    import grpc

    class TracingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
        async def intercept_service(
            self, continuation: Callable[[Any], Awaitable[Any]], details: Any
        ) -> Any:
            handler = await continuation(details)
            if details.method != MODEL_INFER or handler is None:
                return handler
            # the worker registers ModelInfer stream-unary (admitted before its message is read,
            # grpc_service); a unary registration is traced the same way
            behavior = handler.unary_unary or handler.stream_unary
            if behavior is None:
                return handler
            make = (
                grpc.unary_unary_rpc_method_handler
                if handler.unary_unary is not None
                else grpc.stream_unary_rpc_method_handler
            )
            carrier = {
                k: v
                for k, v in (details.invocation_metadata or ())
                if k in ("traceparent", "tracestate") and isinstance(v, str)
            }

            async def traced(request: Any, context: Any) -> Any:
                rt = RequestTrace(carrier, time.monotonic_ns())
                token = CURRENT.set(rt)
                error: str | None = None
                code = "OK"
                try:
                    return await behavior(request, context)
                except BaseException as e:
                    got = context.code() if hasattr(context, "code") else None
                    code = got.name if got is not None else "UNKNOWN"
                    error = f"{code}: {context.details() if hasattr(context, 'details') else e}"
                    raise
                finally:
                    CURRENT.reset(token)
                    attrs = {
                        "rpc.system": "grpc",
                        "rpc.service": "inference.GRPCInferenceService",
                        "rpc.method": "ModelInfer",
                        "rpc.grpc.status_code": code,
                    }
                    try:
                        emitter.emit(
                            rt,
                            "inference.GRPCInferenceService/ModelInfer",
                            attrs,
                            error,
                            time.monotonic_ns(),
                        )
                    except Exception:  # tracing never fails a request
                        log.exception("could not record the request's spans")

            return make(
                traced,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

    return TracingInterceptor()


# ----------------------------------------------------------------------------- the provider


def start_provider(config: TraceConfig, service_name: str) -> Any:
    """The SDK's tracer provider with a batching OTLP exporter (gRPC or HTTP/protobuf, as
    configured), installed as the global one. The SDK itself reads the rest of the standard
    variables: headers, timeouts, sampler, resource attributes, batch sizes."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if config.protocol.startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        exporter: Any = HttpExporter()
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        exporter = GrpcExporter()
    # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win over this default (Resource.create)
    attrs = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attrs))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info(
        "tracing on: OTLP %s to %s, sampler %s", config.protocol, config.endpoint, config.sampler
    )
    return provider

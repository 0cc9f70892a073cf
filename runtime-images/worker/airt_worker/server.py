"""The composition root: settings -> model runner -> batcher -> data plane -> transports.

Called by `main`. Starts the HTTP, gRPC and metrics listeners first (live at once, ready only
after the model is loaded and a warm-up inference succeeded), loads the model in a worker thread,
then serves until SIGTERM/SIGINT. A model that cannot be loaded or warmed up ends the process
with exit 1 after `ModelLoadFailed: <message>` is written to the termination-message file, so the
kubelet restarts it and the operator reports the reason instead of a pod that never turns ready.
Drain: readiness turns false, the listeners stop accepting and let accepted requests finish
(HTTP: uvicorn's graceful shutdown; gRPC: `stop(grace)`), the batcher runs everything still
queued, then the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Generator
from typing import Any

import uvicorn

from airt_worker.batching import BatchPolicy, DynamicBatcher
from airt_worker.dataplane import DataPlane
from airt_worker.errors import (
    MODEL_LOAD_FAILED,
    ModelLoadError,
    termination_line,
    termination_reason,
    write_termination_message,
)
from airt_worker.grpc_service import build_server
from airt_worker.limits import HeaderLimits, MemoryBudget, limited_protocol
from airt_worker.metrics import MetricsApp, Nvml, WorkerCollector
from airt_worker.offload import Offload
from airt_worker.rest import RestApp
from airt_worker.runner import ModelRunner
from airt_worker.settings import WorkerSettings
from airt_worker.tracing import TraceConfig

log = logging.getLogger("airt_worker")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the composition root owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _http_server(
    app: object,
    host: str,
    port: int,
    drain_s: float,
    log_level: str,
    header_limits: HeaderLimits | None = None,
    max_connections: int | None = None,
) -> _Server:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        loop="none",
        http=limited_protocol(header_limits) if header_limits is not None else "httptools",
        limit_concurrency=max_connections,
        lifespan="off",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=int(drain_s) or 1,
        backlog=4096,
        timeout_keep_alive=75,
    )
    return _Server(config)


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket, so a taken port fails here with a clear message and exit 1."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(f"{host}:{port}: {e.strerror or e}") from None
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def _load(settings: WorkerSettings) -> ModelRunner:
    t0 = time.monotonic()
    runner = ModelRunner(settings)
    if settings.warmup:
        # The cold-start benchmark splits loading from warming up at this line.
        log.info("model loaded in %.2fs; warming up", time.monotonic() - t0)
        runner.warmup()
    log.info(
        "model %r v%s (%s) loaded on %s in %.1fs; inputs %s; outputs %s",
        runner.spec.name,
        runner.spec.version,
        settings.format,
        ", ".join(str(d) for d in runner.devices),
        time.monotonic() - t0,
        [(t.name, t.datatype, list(t.dims)) for t in runner.spec.inputs],
        [(t.name, t.datatype, list(t.dims)) for t in runner.spec.outputs],
    )
    return runner


def _report_load_failure(settings: WorkerSettings, exc: BaseException, message: str) -> None:
    """Leave `ModelLoadFailed: <message>` where the kubelet reads the termination message; the
    process then exits 1, so the kubelet restarts it and the operator shows the reason."""
    reason = termination_reason(exc, MODEL_LOAD_FAILED)
    write_termination_message(settings.termination_log, termination_line(reason, message))


async def serve(settings: WorkerSettings) -> int:
    """Run the worker until a signal; return the process exit code."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    plane = DataPlane(settings.model_name, settings.model_version)
    level = "warning" if settings.log_level in ("info", "debug") else settings.log_level
    drain = settings.drain_timeout_seconds
    # one budget for both transports: the memory requests in progress hold together
    budget = MemoryBudget(settings.max_inflight_bytes)
    codec = Offload()
    # Tracing is decided here, once: when off, the plain batcher and transports serve and no
    # request pays for it; when on, traced wrappers are built instead (see `tracing`).
    trace_config = TraceConfig.from_env()
    provider: Any = None
    emitter = None
    if trace_config.enabled:
        from airt_worker.tracing import Emitter, start_provider

        provider = start_provider(trace_config, "airt-worker")
        emitter = Emitter(settings.model_name, settings.model_version, provider)
    rest = RestApp(
        plane,
        settings.max_request_bytes,
        settings.response_compression_min_bytes,
        max_json_bytes=settings.max_json_bytes,
        body_timeout_s=settings.body_timeout_seconds,
        budget=budget,
        codec=codec,
        trace=trace_config,
    )
    app: Any = rest
    interceptors: list[Any] = []
    if emitter is not None:
        from airt_worker.tracing import TracedRestApp, tracing_interceptor

        app = TracedRestApp(rest, emitter)
        interceptors.append(tracing_interceptor(emitter))
    http = _http_server(
        app,
        settings.host,
        settings.http_port,
        drain,
        level,
        HeaderLimits(
            settings.max_header_bytes, settings.max_headers, settings.header_timeout_seconds
        ),
        settings.max_connections,
    )
    # telemetry for the GPUs that get a model copy: instance i runs on GPU i % device_count
    gpus = min(settings.instance_count, settings.device_count or settings.instance_count)
    nvml = Nvml(device_count=gpus) if settings.device == "cuda" else None
    metrics = _http_server(
        MetricsApp(WorkerCollector(plane, nvml)),
        settings.metrics_host,
        settings.metrics_port,
        1.0,
        level,
    )
    try:
        http_socket = _bind(settings.host, settings.http_port)
        metrics_socket = _bind(settings.metrics_host, settings.metrics_port)
        grpc_server, grpc_port = build_server(
            plane,
            settings.host,
            settings.grpc_port,
            settings.grpc_max_message_bytes,
            max_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
            budget=budget,
            codec=codec,
            trace=trace_config,
            interceptors=interceptors,
        )
    except OSError as e:
        log.error("cannot listen: %s", e)
        return 1
    await grpc_server.start()
    http_task = asyncio.create_task(http.serve(sockets=[http_socket]), name="http")
    metrics_task = asyncio.create_task(metrics.serve(sockets=[metrics_socket]), name="metrics")
    log.info(
        "listening: http %s:%d, grpc %s:%d, metrics %s:%d",
        settings.host,
        http_socket.getsockname()[1],
        settings.host,
        grpc_port,
        settings.metrics_host,
        metrics_socket.getsockname()[1],
    )

    batcher: DynamicBatcher | None = None
    load = loop.run_in_executor(None, _load, settings)
    stop_wait = asyncio.ensure_future(stop.wait())
    waiters: list[asyncio.Future[Any]] = [load, stop_wait]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if load.done():
        try:
            runner = load.result()
        except ModelLoadError as e:
            log.error("cannot serve the model: %s", e)
            plane.mark_failed(str(e))
            _report_load_failure(settings, e, str(e))
            stop.set()
            code = 1
        except Exception as e:
            log.exception("model load failed")
            plane.mark_failed(f"model load failed: {e}")
            _report_load_failure(settings, e, f"model load failed: {e}")
            stop.set()
            code = 1
        else:
            b = settings.batching
            policy = BatchPolicy(
                max_batch_size=b.max_batch_size,
                preferred_batch_sizes=tuple(b.preferred_batch_sizes),
                max_queue_delay_ns=b.max_queue_delay_microseconds * 1000,
                max_queue_size=b.max_queue_size,
                default_timeout_ns=b.default_timeout_microseconds * 1000,
            )
            batcher_class = DynamicBatcher
            if emitter is not None:
                from airt_worker.tracing import TracedBatcher

                batcher_class = TracedBatcher
            batcher = batcher_class(
                runner,
                policy,
                settings.instance_count,
                on_batch=plane.on_batch,
                execution_timeout_ns=int(settings.execution_timeout_seconds * 1e9),
                output_names=[t.name for t in runner.spec.outputs],
            )
            batcher.start()
            plane.attach(runner.spec, batcher)
            plane.mark_ready()
            log.info("ready")
    await stop_wait

    # drain: not ready, stop accepting, finish what was accepted (the batcher flushes its queue
    # at once instead of waiting for fuller batches), then stop the listeners
    log.info("draining (up to %.0fs)", drain)
    plane.draining = True
    http.should_exit = True
    closing = [grpc_server.stop(drain), http_task]
    if batcher is not None:
        closing.append(asyncio.wait_for(batcher.close(), drain))
    for result in await asyncio.gather(*closing, return_exceptions=True):
        if isinstance(result, TimeoutError):
            log.error("drain timeout: %d requests still pending", batcher.pending if batcher else 0)
            code = code or 1
    metrics.should_exit = True
    await asyncio.gather(metrics_task, return_exceptions=True)
    if not load.done():
        load.cancel()
    codec.close()
    if provider is not None:
        provider.shutdown()  # exports the spans still buffered
    st = plane.stats
    log.info("stopped after %d successful and %d failed requests", st.success.count, st.fail.count)
    if batcher is not None and batcher.running:
        # A model thread still running after the drain (stuck, or just slower than the drain
        # period) can be neither stopped nor joined, and the interpreter would wait for it at
        # exit: leave now, inside the termination grace period.
        log.error(
            "exiting with %d model instances still running (%d stuck past the execution timeout)",
            batcher.running,
            len(batcher.stuck),
        )
        logging.shutdown()
        sys.stderr.flush()
        os._exit(code or 1)
    return code

"""Prometheus metrics with Triton's exact names, served on a localhost-only port.

Built by the composition root (`server`); the metrics sidecar scrapes
`http://127.0.0.1:<metrics_port>/metrics` and re-exposes it. The collector writes every family
out explicitly in the Prometheus text format (prometheus_client's Counter and its exposition would
rename series to `*_total` and add `*_created`, breaking Triton dashboards). Model figures come
from the data plane's statistics at scrape time; GPU figures are read through NVML by this
process — the one that holds the GPU — when the model runs on CUDA.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airt_worker.asgi import Receive, Scope, Send
from airt_worker.dataplane import DataPlane
from airt_worker.stats import DURATION_BUCKETS_S

log = logging.getLogger(__name__)

#: Upper bounds of `airt_batch_size` histogram buckets (rows per model execution).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")


@dataclass(slots=True)
class Family:
    """One metric family: its samples are (suffix, labels, value); suffix '' = the name itself."""

    name: str
    doc: str
    type: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def add(self, labels: dict[str, str], value: float, suffix: str = "") -> Family:
        self.samples.append((suffix, labels, value))
        return self


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(v: float) -> str:
    if math.isfinite(v) and v == int(v) and abs(v) < 2**53:
        return str(int(v))
    return repr(float(v))


def render(families: Iterator[Family]) -> bytes:
    """Prometheus text exposition (format 0.0.4) of `families`, names exactly as given."""
    out: list[str] = []
    for f in families:
        out.append(f"# HELP {f.name} {f.doc}\n# TYPE {f.name} {f.type}\n")
        for suffix, labels, value in f.samples:
            if labels:
                ls = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                out.append(f"{f.name}{suffix}{{{ls}}} {_number(value)}\n")
            else:
                out.append(f"{f.name}{suffix} {_number(value)}\n")
    return "".join(out).encode()


class Nvml:
    """GPU telemetry through pynvml for the first `device_count` GPUs this process sees (those
    its model instances run on), one series per GPU labelled by `gpu_uuid` as Triton does;
    `available` is False when NVML or the GPUs are missing."""

    def __init__(self, device_count: int = 1) -> None:
        self.available = False
        self._nvml: Any = None
        #: (NVML handle, GPU UUID) per monitored GPU
        self._gpus: list[tuple[Any, str]] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            for index in range(min(device_count, pynvml.nvmlDeviceGetCount())):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                uuid = pynvml.nvmlDeviceGetUUID(handle)
                self._gpus.append((handle, uuid.decode() if isinstance(uuid, bytes) else str(uuid)))
            self.available = bool(self._gpus)
            if not self._gpus:
                log.warning("GPU telemetry unavailable: NVML sees no GPU")
        except Exception as e:  # no driver, no device, no library: telemetry off, serving on
            log.warning("GPU telemetry unavailable: %s", e)

    def collect(self) -> Iterator[Family]:
        if not self.available:
            return
        n = self._nvml
        readings: list[tuple[str, str, str, Any, float]] = [
            (
                "nv_gpu_utilization",
                "GPU utilization rate [0.0 - 1.0)",
                "gauge",
                lambda h: n.nvmlDeviceGetUtilizationRates(h).gpu,
                0.01,
            ),
            (
                "nv_gpu_memory_total_bytes",
                "GPU total memory, in bytes",
                "gauge",
                lambda h: n.nvmlDeviceGetMemoryInfo(h).total,
                1.0,
            ),
            (
                "nv_gpu_memory_used_bytes",
                "GPU used memory, in bytes",
                "gauge",
                lambda h: n.nvmlDeviceGetMemoryInfo(h).used,
                1.0,
            ),
            (
                "nv_gpu_power_usage",
                "GPU power usage in watts",
                "gauge",
                lambda h: n.nvmlDeviceGetPowerUsage(h),
                0.001,
            ),
            (
                "nv_gpu_power_limit",
                "GPU power management limit in watts",
                "gauge",
                lambda h: n.nvmlDeviceGetPowerManagementLimit(h),
                0.001,
            ),
            (
                "nv_energy_consumption",
                "GPU energy consumption in joules since the driver loaded",
                "counter",
                lambda h: n.nvmlDeviceGetTotalEnergyConsumption(h),
                0.001,
            ),
        ]
        for name, doc, typ, read, scale in readings:
            family = Family(name, doc, typ)
            for handle, uuid in self._gpus:
                try:
                    value = float(read(handle)) * scale
                except Exception:  # a reading this GPU does not support
                    continue
                family.add({"gpu_uuid": uuid}, value)
            if family.samples:
                yield family


class CpuReader:
    """System CPU utilization (between scrapes) and memory from /proc, like Triton's nv_cpu_*."""

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = None

    def collect(self) -> Iterator[Family]:
        try:
            first = Path("/proc/stat").read_text().split("\n", 1)[0]
            fields = [int(x) for x in first.split()[1:]]
            idle, total = fields[3] + fields[4], sum(fields[:8])
            util = 0.0
            if self._last is not None and total > self._last[1]:
                util = 1.0 - (idle - self._last[0]) / (total - self._last[1])
            self._last = (idle, total)
            info: dict[str, int] = {}
            for line in Path("/proc/meminfo").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    info[key] = int(rest.split()[0]) * 1024
        except (OSError, ValueError, IndexError):
            return
        mem_total = info.get("MemTotal", 0)
        yield Family("nv_cpu_utilization", "CPU utilization rate [0.0 - 1.0]", "gauge").add(
            {}, util
        )
        yield Family("nv_cpu_memory_total_bytes", "CPU total memory (RAM), in bytes", "gauge").add(
            {}, mem_total
        )
        yield Family("nv_cpu_memory_used_bytes", "CPU used memory (RAM), in bytes", "gauge").add(
            {}, mem_total - info.get("MemAvailable", 0)
        )


class WorkerCollector:
    """Collects the model, batching, GPU and CPU families at scrape time."""

    def __init__(self, plane: DataPlane, nvml: Nvml | None) -> None:
        self.plane = plane
        self.nvml = nvml
        self.cpu = CpuReader()

    def collect(self) -> Iterator[Family]:
        s = self.plane.stats
        lv = {"model": s.name, "version": s.version}

        def counter(name: str, doc: str, value: float) -> Family:
            return Family(name, doc, "counter").add(lv, value)

        yield counter(
            "nv_inference_request_success",
            "Number of successful inference requests, all batch sizes",
            s.success.count,
        )
        fail = Family(
            "nv_inference_request_failure",
            "Number of failed inference requests, all batch sizes",
            "counter",
        )
        for reason in FAILURE_REASONS:
            fail.add({**lv, "reason": reason}, s.failures.get(reason, 0))
        yield fail
        kinds = Family(
            "airt_request_failure",
            "Failed or refused inference requests by precise reason (rejections before "
            "validation included)",
            "counter",
        )
        for kind, n in sorted(s.failure_kinds.items()):
            kinds.add({**lv, "reason": kind}, n)
        yield kinds
        yield counter(
            "airt_model_execution_failure",
            "Model executions that raised (each fails its whole batch, once)",
            s.execution_failures,
        )
        yield counter(
            "nv_inference_count",
            "Number of inferences performed (rows; does not include cached requests)",
            s.inference_count,
        )
        yield counter(
            "nv_inference_exec_count",
            "Number of model executions performed (batches)",
            s.execution_count,
        )
        yield counter(
            "nv_inference_request_duration_us",
            "Cumulative inference request duration in microseconds",
            (s.success.ns + s.fail.ns) // 1000,
        )
        yield counter(
            "nv_inference_queue_duration_us",
            "Cumulative inference queuing duration in microseconds",
            s.queue.ns // 1000,
        )
        yield counter(
            "nv_inference_compute_input_duration_us",
            "Cumulative compute input duration in microseconds",
            s.compute_input.ns // 1000,
        )
        yield counter(
            "nv_inference_compute_infer_duration_us",
            "Cumulative compute inference duration in microseconds",
            s.compute_infer.ns // 1000,
        )
        yield counter(
            "nv_inference_compute_output_duration_us",
            "Cumulative inference compute output duration in microseconds",
            s.compute_output.ns // 1000,
        )
        batcher = self.plane.batcher
        yield Family(
            "nv_inference_pending_request_count",
            "Instantaneous number of pending requests awaiting execution per-model",
            "gauge",
        ).add(lv, batcher.pending if batcher is not None else 0)
        yield counter(
            "airt_model_execution_timeout",
            "Batches that ran past the execution timeout",
            batcher.execution_timeouts if batcher is not None else 0,
        )
        yield Family(
            "airt_model_instances_stuck",
            "Model instances still running a batch past the execution timeout (liveness fails "
            "while this is above 0)",
            "gauge",
        ).add(lv, len(batcher.stuck) if batcher is not None else 0)
        hist = Family(
            "airt_batch_size", "Rows per model execution (dynamic batch size)", "histogram"
        )
        for bound in BATCH_BUCKETS:
            count = sum(n for rows, n in s.batch_rows.items() if rows <= bound)
            hist.add({**lv, "le": str(bound)}, count, "_bucket")
        hist.add({**lv, "le": "+Inf"}, s.execution_count, "_bucket")
        hist.add(lv, s.inference_count, "_sum")
        hist.add(lv, s.execution_count, "_count")
        yield hist
        latency = Family(
            "airt_request_duration_seconds",
            "End-to-end inference request duration, arrival to response, in seconds",
            "histogram",
        )
        seen = 0
        for upper, n in zip(DURATION_BUCKETS_S, s.duration_buckets, strict=False):
            seen += n
            latency.add({**lv, "le": repr(upper)}, seen, "_bucket")
        total = s.success.count + s.fail.count
        latency.add({**lv, "le": "+Inf"}, total, "_bucket")
        latency.add(lv, (s.success.ns + s.fail.ns) / 1e9, "_sum")
        latency.add(lv, total, "_count")
        yield latency
        gpu_ok = self.nvml is not None and self.nvml.available
        yield Family(
            "airt_gpu_telemetry_available",
            "1 when the nv_gpu_* families are read through NVML, else 0",
            "gauge",
        ).add({}, 1.0 if gpu_ok else 0.0)
        if self.nvml is not None:
            yield from self.nvml.collect()
        yield from self.cpu.collect()


class MetricsApp:
    """ASGI app answering GET /metrics with the collector's text exposition."""

    def __init__(self, collector: WorkerCollector) -> None:
        self.collector = collector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] != "/metrics":
            status, body, ctype = 404, b"not found: scrape /metrics\n", b"text/plain"
        else:
            status, ctype = 200, b"text/plain; version=0.0.4; charset=utf-8"
            body = render(self.collector.collect())
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

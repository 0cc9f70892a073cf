"""Per-model statistics from real measurements, in the shapes the v2 statistics API wants.

Written by the data plane (one call per finished request, always on the event loop thread, so no
locks) and read by the statistics endpoints and the metrics collector. Durations are monotonic
nanoseconds; `last_inference` is wall-clock milliseconds since the epoch as Triton reports it.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Upper bounds (seconds) of the request-duration histogram buckets.
DURATION_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_BUCKET_NS = tuple(int(b * 1e9) for b in DURATION_BUCKETS_S)


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def doc(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class BatchStat:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class ModelStats:
    """Triton's ModelStatistics for one model version, plus failure reasons for metrics."""

    name: str
    version: str
    last_inference_ms: int = 0
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    cache_hit: Duration = field(default_factory=Duration)
    cache_miss: Duration = field(default_factory=Duration)
    batches: dict[int, BatchStat] = field(default_factory=dict)
    #: rows per executed batch -> number of such batches (for the batch-size histogram)
    batch_rows: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    #: failures by precise kind (INVALID_INPUT, TOO_LARGE, QUEUE_FULL, EXECUTION_TIMEOUT, ...)
    failure_kinds: Counter[str] = field(default_factory=Counter)
    #: model executions that raised (each failed its whole batch once)
    execution_failures: int = 0
    #: per-bucket (non-cumulative) counts of request durations, success and failure alike;
    #: the last slot counts requests slower than the largest bound
    duration_buckets: list[int] = field(default_factory=lambda: [0] * (len(_BUCKET_NS) + 1))

    def _observe(self, total_ns: int) -> None:
        self.duration_buckets[bisect.bisect_left(_BUCKET_NS, total_ns)] += 1

    def record_success(
        self, total_ns: int, queue_ns: int, input_ns: int, infer_ns: int, output_ns: int
    ) -> None:
        self.success.add(total_ns)
        self._observe(total_ns)
        self.queue.add(queue_ns)
        self.compute_input.add(input_ns)
        self.compute_infer.add(infer_ns)
        self.compute_output.add(output_ns)
        self.last_inference_ms = time.time_ns() // 1_000_000

    def record_failure(self, total_ns: int, reason: str, kind: str = "OTHER") -> None:
        self.fail.add(total_ns)
        self._observe(total_ns)
        self.failures[reason] += 1
        self.failure_kinds[kind] += 1
        self.last_inference_ms = time.time_ns() // 1_000_000

    def record_batch(
        self, requests: int, rows: int, input_ns: int, infer_ns: int, output_ns: int
    ) -> None:
        """One model execution of `requests` requests totalling `rows` rows."""
        self.execution_count += 1
        self.inference_count += rows
        self.batch_rows[rows] += 1
        b = self.batches.get(rows)
        if b is None:
            b = self.batches[rows] = BatchStat()
        b.compute_input.add(input_ns)
        b.compute_infer.add(infer_ns)
        b.compute_output.add(output_ns)

    def doc(self) -> dict[str, Any]:
        """The v2 statistics entry (JSON form of ModelStatistics)."""
        return {
            "name": self.name,
            "version": self.version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.doc(),
                "fail": self.fail.doc(),
                "queue": self.queue.doc(),
                "compute_input": self.compute_input.doc(),
                "compute_infer": self.compute_infer.doc(),
                "compute_output": self.compute_output.doc(),
                "cache_hit": self.cache_hit.doc(),
                "cache_miss": self.cache_miss.doc(),
            },
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": b.compute_input.doc(),
                    "compute_infer": b.compute_infer.doc(),
                    "compute_output": b.compute_output.doc(),
                }
                for size, b in sorted(self.batches.items())
            ],
            "memory_usage": [],
        }

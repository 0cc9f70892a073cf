"""Derive the worker's serving limits from a ModelDeployment's memory limit and batching.

Called by `reconcile/build.py`; pure. The worker's own defaults are safe for a process run by
hand; in a pod the limits must fit the pod, so the operator renders them from the container's
memory limit (docs/reliability.md documents the formula), and any value the ModelDeployment sets
in `spec.serving` or `spec.batching` wins:

- in-flight budget = memory limit / 4 (the model, torch and the interpreter keep the rest);
- largest request (HTTP body, gRPC message, decoded tensors) = budget / 4, between 1 MiB and
  64 MiB, so at least four requests of the largest size are in progress at once;
- JSON part of a request = largest request / 8 (parsed JSON takes ~16 times its text);
- queue size = 4 x maxBatchSize x instances, at least 16 (a few batches' worth per instance);
- queue timeout = 10 s + maxQueueDelayMicroseconds;
- execution timeout = 60 s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airt_operator.api import Serving

MiB = 1 << 20
_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_MEMORY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(k|M|G|T|Ki|Mi|Gi|Ti)?$")

#: Bounds of the derived request limit.
MIN_REQUEST_BYTES = 1 * MiB
MAX_REQUEST_BYTES = 64 * MiB
#: Execution timeout when the ModelDeployment sets none.
DEFAULT_EXECUTION_TIMEOUT_S = 60
#: Queue timeout beyond the batching delay when the ModelDeployment sets none.
BASE_QUEUE_TIMEOUT_US = 10_000_000


@dataclass(frozen=True)
class ServingLimits:
    """What the worker is told (its settings of the same names)."""

    max_request_bytes: int
    max_json_bytes: int
    grpc_max_message_bytes: int
    max_inflight_bytes: int
    max_queue_size: int
    queue_timeout_us: int
    execution_timeout_s: int


def memory_bytes(quantity: str) -> int:
    """A memory quantity in bytes ("2Gi" -> 2147483648, "500M" -> 500000000)."""
    m = _MEMORY.match(quantity.strip())
    if not m:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2) or ""])


def derive(
    memory_limit: str,
    max_batch_size: int,
    instances: int,
    max_queue_delay_us: int,
    serving: Serving | None,
    max_queue_size: int | None,
    queue_timeout_us: int | None,
) -> ServingLimits:
    """The limits for one worker container (see the module docstring for the formula)."""
    budget = memory_bytes(memory_limit) // 4
    if serving is not None and serving.max_inflight_bytes is not None:
        budget = serving.max_inflight_bytes
    request = min(max(budget // 4, MIN_REQUEST_BYTES), MAX_REQUEST_BYTES)
    if serving is not None and serving.max_request_bytes is not None:
        request = serving.max_request_bytes
    timeout = DEFAULT_EXECUTION_TIMEOUT_S
    if serving is not None and serving.execution_timeout_seconds is not None:
        timeout = serving.execution_timeout_seconds
    return ServingLimits(
        max_request_bytes=request,
        max_json_bytes=max(request // 8, MIN_REQUEST_BYTES),
        grpc_max_message_bytes=request,
        max_inflight_bytes=max(budget, request),
        max_queue_size=max_queue_size or max(16, 4 * max(max_batch_size, 1) * instances),
        queue_timeout_us=queue_timeout_us or BASE_QUEUE_TIMEOUT_US + max_queue_delay_us,
        execution_timeout_s=timeout,
    )

"""The worker's serving limits derived from the pod's memory and batching, and their overrides."""

from __future__ import annotations

import pytest
from opbuild import context, example, worker_config

from airt_operator.api import Serving
from airt_operator.reconcile.render import render
from airt_operator.reconcile.serving import derive, memory_bytes

MiB = 1 << 20


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [("2Gi", 2 << 30), ("512Mi", 512 * MiB), ("1G", 10**9), ("1.5Gi", 3 << 29), ("1024", 1024)],
)
def test_memory_quantities(quantity: str, expected: int) -> None:
    assert memory_bytes(quantity) == expected


def test_limits_fit_the_pod() -> None:
    two = derive("2Gi", 32, 1, 500, None, None, None)
    assert two.max_inflight_bytes == 512 * MiB
    assert two.max_request_bytes == two.grpc_max_message_bytes == 64 * MiB
    assert two.max_json_bytes == 8 * MiB
    assert two.max_queue_size == 128
    assert two.queue_timeout_us == 10_000_500
    assert two.execution_timeout_s == 60
    small = derive("512Mi", 0, 2, 0, None, None, None)
    assert small.max_inflight_bytes == 128 * MiB
    assert small.max_request_bytes == 32 * MiB  # four of the largest fit in the budget
    assert small.max_queue_size == 16


def test_the_model_deployment_overrides_every_derived_limit() -> None:
    serving = Serving(
        max_request_bytes=4 * MiB, max_inflight_bytes=100 * MiB, execution_timeout_seconds=0
    )
    got = derive("2Gi", 8, 1, 0, serving, 3, 5_000)
    assert (got.max_request_bytes, got.grpc_max_message_bytes) == (4 * MiB, 4 * MiB)
    assert got.max_inflight_bytes == 100 * MiB
    assert got.execution_timeout_s == 0
    assert (got.max_queue_size, got.queue_timeout_us) == (3, 5_000)


def test_rendered_worker_config_carries_the_limits() -> None:
    md = example("mlp-cpu")
    memory = md.spec.resources.memory if md.spec.resources else None
    assert memory is not None
    config = worker_config(render(context(md)))
    limits = derive(memory, 32, md.spec.model.instances or 1, 2000, None, 256, None)
    assert config.max_request_bytes == limits.max_request_bytes
    assert config.max_json_bytes == limits.max_json_bytes
    assert config.grpc_max_message_bytes == limits.grpc_max_message_bytes
    assert config.max_inflight_bytes == limits.max_inflight_bytes
    assert config.execution_timeout_seconds == 60
    assert config.batching.max_queue_size == 256  # the example's own
    assert config.batching.default_timeout_microseconds == 10_000_000 + 2000

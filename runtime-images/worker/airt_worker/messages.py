"""Transport-neutral inference messages exchanged between the transports and the data plane.

The REST and gRPC codecs decode wire requests into `InferRequest` (tensors already numpy arrays
of their declared shape) and encode `InferResponse` back; the data plane never sees wire formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airt_worker.datatypes import Array


@dataclass(slots=True)
class Tensor:
    """A named tensor; `data` has exactly `shape` (BYTES: object array of bytes, BF16: uint16)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Array


@dataclass(slots=True)
class InferRequest:
    model_name: str
    model_version: str
    id: str
    inputs: list[Tensor]
    #: Names of the outputs to return, in order; None = every output in model order.
    outputs: list[str] | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    #: monotonic_ns when the transport received the request (statistics start here).
    received_ns: int = 0


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str
    id: str
    outputs: list[Tensor]

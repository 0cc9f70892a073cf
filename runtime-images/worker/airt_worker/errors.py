"""Transport-neutral domain errors of the worker.

Raised by the data plane, the codecs, the batcher and the model runner; mapped exactly once per
transport (the HTTP status table in `rest`, the gRPC code table in `grpc_service`). These classes
never import a web or RPC framework. Every message names what was wrong, so a client can fix it.
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base of every error a client may see; `reason` feeds the failure metrics."""

    reason = "OTHER"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(InferenceError):
    """The request can never succeed as sent (HTTP 400, gRPC INVALID_ARGUMENT)."""


class NotFoundError(InferenceError):
    """Unknown model, version or tensor name (HTTP 404, gRPC NOT_FOUND)."""


class UnavailableError(InferenceError):
    """Try again later: queue full, timed out in queue, not ready, draining (503, UNAVAILABLE)."""

    reason = "REJECTED"


class UnsupportedError(InferenceError):
    """A protocol feature this worker does not implement (HTTP 501, gRPC UNIMPLEMENTED)."""


class PayloadTooLargeError(InferenceError):
    """The request body exceeds the configured limit (HTTP 413, gRPC RESOURCE_EXHAUSTED)."""


class ModelError(InferenceError):
    """The model itself raised while running a batch (HTTP 500, gRPC INTERNAL)."""

    reason = "BACKEND"


class ModelLoadError(Exception):
    """The model file cannot be served as configured; the worker exits 1 with this message.

    Not an InferenceError: it never reaches a client, it stops the process at start.
    """

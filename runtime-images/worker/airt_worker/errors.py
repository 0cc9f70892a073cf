"""Transport-neutral domain errors of the worker.

Raised by the data plane, the codecs, the batcher and the model runner; mapped exactly once per
transport (the HTTP status table in `rest`, the gRPC code table in `grpc_service`). These classes
never import a web or RPC framework. Every message names what was wrong, so a client can fix it.

The errors that stop a container (the model cannot be fetched, verified or loaded) are mapped here,
once, to the reason of the one-line termination message `airt-worker fetch` and `airt-worker serve`
leave for the operator (`termination_reason`, `termination_line`, `write_termination_message`).
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base of every error a client may see.

    `reason` is Triton's failure reason (`nv_inference_request_failure`); `kind` names the
    rejection precisely (`airt_request_failure`), so dashboards can tell a too-large body from a
    malformed one.
    """

    reason = "OTHER"
    kind = "OTHER"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(InferenceError):
    """The request can never succeed as sent (HTTP 400, gRPC INVALID_ARGUMENT)."""

    kind = "INVALID_INPUT"


class NotFoundError(InferenceError):
    """Unknown model, version or tensor name (HTTP 404, gRPC NOT_FOUND)."""

    kind = "NOT_FOUND"


class UnavailableError(InferenceError):
    """Try again later: queue full, timed out in queue, not ready, draining (503, UNAVAILABLE)."""

    reason = "REJECTED"
    kind = "UNAVAILABLE"

    def __init__(self, message: str, kind: str = "UNAVAILABLE") -> None:
        super().__init__(message)
        self.kind = kind


class RequestTimeoutError(InferenceError):
    """The client stopped sending its request body (HTTP 408; the connection is closed)."""

    kind = "REQUEST_TIMEOUT"


class CanceledError(InferenceError):
    """The client went away before its answer; only counted, never sent."""

    reason = "CANCELED"
    kind = "CANCELED"


class UnsupportedError(InferenceError):
    """A protocol feature this worker does not implement (HTTP 501, gRPC UNIMPLEMENTED)."""

    kind = "UNSUPPORTED"


class PayloadTooLargeError(InferenceError):
    """The request body exceeds the configured limit (HTTP 413, gRPC RESOURCE_EXHAUSTED)."""

    kind = "TOO_LARGE"


class ModelError(InferenceError):
    """The model itself raised while running a batch (HTTP 500, gRPC INTERNAL)."""

    reason = "BACKEND"
    kind = "MODEL_ERROR"


class ExecutionTimeoutError(UnavailableError):
    """A batch ran past the execution timeout (HTTP 503, gRPC UNAVAILABLE); the instance that
    runs it counts as stuck until it returns, and liveness fails meanwhile."""

    reason = "BACKEND"

    def __init__(self, message: str) -> None:
        super().__init__(message, "EXECUTION_TIMEOUT")


class ModelLoadError(Exception):
    """The model file cannot be served as configured; the worker exits 1 with this message.

    Not an InferenceError: it never reaches a client, it stops the process at start.
    """


# --- termination messages: what a container tells the operator when it stops -----------------
# Kubernetes copies the file named by `terminationMessagePath` (default /dev/termination-log)
# into the pod's container status; the operator reads `<Reason>: <message>` from it and shows it
# as a condition. The reasons are the operator's condition reasons, spelled the same.

MODEL_LOAD_FAILED = "ModelLoadFailed"
MODEL_FETCH_FAILED = "ModelFetchFailed"
MODEL_DIGEST_MISMATCH = "ModelDigestMismatch"
# Kubernetes keeps at most 4096 bytes of a message; one line of 1 KiB says enough.
TERMINATION_MESSAGE_MAX_BYTES = 1024


class DigestMismatchError(ModelLoadError):
    """The model's bytes do not hash to the sha256 the ModelDeployment pins (raised by `airt
    fetch` before placing them; a ModelLoadError, so it stops `airt-worker serve` the same way)."""


def termination_reason(exc: BaseException, default: str) -> str:
    """The condition reason a failure to place or load the model is reported with: the one
    mapping from these error types to the operator's reasons; `default` for any other error
    (ModelFetchFailed in `airt-worker fetch`, ModelLoadFailed in `airt-worker serve`)."""
    if isinstance(exc, DigestMismatchError):
        return MODEL_DIGEST_MISMATCH
    if isinstance(exc, ModelLoadError):
        return MODEL_LOAD_FAILED
    return default


def termination_line(reason: str, message: str) -> str:
    """`<reason>: <message>` as one line (newlines folded), at most 1 KiB of UTF-8."""
    text = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    line = f"{reason}: {text}" if text else reason
    raw = line.encode()
    if len(raw) <= TERMINATION_MESSAGE_MAX_BYTES:
        return line
    cut = raw[: TERMINATION_MESSAGE_MAX_BYTES - len(b"...")]
    return cut.decode(errors="ignore") + "..."


def write_termination_message(path: str | None, line: str) -> bool:
    """Write `line` to the termination-message file; False when it cannot be written (outside
    Kubernetes /dev/termination-log does not exist, and that must not turn into a second error)."""
    if not path:
        return False
    try:
        with open(path, "w", encoding="utf-8") as f:  # noqa: PTH123 - a device file, not a Path
            f.write(line + "\n")
    except OSError:
        return False
    return True

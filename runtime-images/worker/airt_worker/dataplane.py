"""The transport-neutral data plane: health, metadata, config, statistics and inference.

The REST (`rest`) and gRPC (`grpc_service`) adapters only translate wire messages and call these
methods; domain errors raised here are mapped to statuses once per transport. Inference requests
are validated one by one against the model's spec before they reach the batcher, so one bad
request never fails the others of its batch. Built by the composition root (`server`), which
attaches the model runner and batcher once the model is loaded and warmed up.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Any

from airt_worker import __version__
from airt_worker.batching import BatchReport, DynamicBatcher
from airt_worker.datatypes import Array
from airt_worker.errors import (
    CanceledError,
    InferenceError,
    InvalidInputError,
    ModelError,
    NotFoundError,
    UnavailableError,
    UnsupportedError,
)
from airt_worker.messages import InferRequest, InferResponse, Tensor
from airt_worker.modelspec import ModelSpec
from airt_worker.stats import ModelStats

#: One line per inference request at debug level (`log_level: debug`), with the request's id
#: (the client's v2 `id`, else a number of this process), its outcome and its time; failed
#: model executions are logged at error by the batcher whatever the level.
request_log = logging.getLogger("airt_worker.requests")
_sequence = itertools.count(1)


SERVER_NAME = "airt"
#: Only what is implemented in full (see docs/worker-protocol.md).
EXTENSIONS = ["binary_tensor_data", "statistics", "model_configuration"]


class DataPlane:
    """Serves one model, named `name` at `version`; the model arrives later via `attach`."""

    def __init__(self, name: str, version: str) -> None:
        self.name = name
        self.version = version
        self.stats = ModelStats(name=name, version=version)
        self.spec: ModelSpec | None = None
        self.batcher: DynamicBatcher | None = None
        self.state = "LOADING"
        self.reason = "loading and warming up"
        self.draining = False

    def attach(self, spec: ModelSpec, batcher: DynamicBatcher) -> None:
        self.spec = spec
        self.batcher = batcher

    def mark_ready(self) -> None:
        self.state, self.reason = "READY", ""

    def mark_failed(self, reason: str) -> None:
        self.state, self.reason = "UNAVAILABLE", reason

    # ---------------------------------------------------------------------------- health

    def live(self) -> bool:
        """False while a model instance is stuck past the execution timeout: the kubelet's
        liveness probe then restarts the container, the only way to stop a hung model."""
        return self.batcher is None or not self.batcher.stuck

    def ready(self) -> bool:
        return self.state == "READY" and not self.draining

    def model_ready(self, name: str, version: str) -> bool:
        self._check_model(name, version)
        return self.ready()

    # -------------------------------------------------------------------------- metadata

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}

    def model_metadata(self, name: str, version: str) -> dict[str, Any]:
        return self._loaded(name, version).metadata()

    def model_config(self, name: str, version: str) -> dict[str, Any]:
        return self._loaded(name, version).config()

    def statistics(self, name: str, version: str) -> dict[str, Any]:
        if name:
            self._check_model(name, version)
        return {"model_stats": [self.stats.doc()]}

    def repository_index(self, ready_only: bool = False) -> list[dict[str, str]]:
        if ready_only and self.state != "READY":
            return []
        entry = {"name": self.name, "version": self.version, "state": self.state}
        entry["reason"] = self.reason
        return [entry]

    def load(self, name: str) -> None:
        """The one model is loaded at start; loading it again is a no-op, others are unknown."""
        if name != self.name:
            raise NotFoundError(
                f"model {name!r} is not in this worker's repository (it serves {self.name!r})"
            )
        if self.state != "READY":
            raise UnavailableError(f"model {name!r} is {self.state.lower()}: {self.reason}")

    def unload(self, name: str) -> None:
        self._check_model(name, "")
        raise UnsupportedError(
            "this worker serves exactly one model, fixed at start; scale its ModelDeployment "
            "to zero replicas instead of unloading it"
        )

    def _check_model(self, name: str, version: str) -> None:
        if name != self.name:
            raise NotFoundError(f"unknown model {name!r}: this worker serves {self.name!r}")
        if version and version != self.version:
            raise NotFoundError(
                f"unknown version {version!r} of model {name!r}: served version is {self.version}"
            )

    def _loaded(self, name: str, version: str) -> ModelSpec:
        self._check_model(name, version)
        if self.spec is None:
            raise UnavailableError(f"model {name!r} is {self.state.lower()}: {self.reason}")
        return self.spec

    # ------------------------------------------------------------------------- inference

    async def infer(self, req: InferRequest) -> InferResponse:
        t0 = req.received_ns or time.monotonic_ns()
        self._check_model(req.model_name, req.model_version)
        spec, batcher = self.spec, self.batcher
        if spec is None or batcher is None or self.state != "READY":
            raise UnavailableError(f"model {self.name!r} is not ready: {self.reason or self.state}")
        try:
            arrays, rows, key = validate(spec, req)
            answer = await batcher.submit(arrays, rows, key, t0, _deadline(req, t0))
        except InferenceError as e:
            self.stats.record_failure(time.monotonic_ns() - t0, e.reason, e.kind)
            if request_log.isEnabledFor(logging.DEBUG):
                self._log_request(req, t0, e.reason, e.message)
            raise
        except asyncio.CancelledError:  # the client went away (REST disconnect, gRPC cancel)
            c = CanceledError("canceled")
            self.stats.record_failure(time.monotonic_ns() - t0, c.reason, c.kind)
            if request_log.isEnabledFor(logging.DEBUG):
                self._log_request(req, t0, c.reason, c.message)
            raise
        if request_log.isEnabledFor(logging.DEBUG):
            self._log_request(req, t0, "OK", f"{rows} rows, queued {answer.queue_ns // 1000} us")
        self.stats.record_success(
            time.monotonic_ns() - t0,
            answer.queue_ns,
            answer.compute_input_ns,
            answer.compute_infer_ns,
            answer.compute_output_ns,
        )
        outputs = answer.outputs
        specs = spec.outputs
        if req.outputs is None:
            chosen = [
                Tensor(s.name, s.datatype, o.shape, o) for s, o in zip(specs, outputs, strict=True)
            ]
        else:
            index = {s.name: i for i, s in enumerate(specs)}
            chosen = []
            for name in req.outputs:
                i = index[name]
                chosen.append(Tensor(name, specs[i].datatype, outputs[i].shape, outputs[i]))
        return InferResponse(self.name, self.version, req.id, chosen)

    def record_rejection(self, error: InferenceError, received_ns: int) -> None:
        """Count a request a transport refused before it reached `infer` (malformed, too large,
        unknown model, unsupported encoding, busy), so every rejection shows in the metrics."""
        self.stats.record_failure(time.monotonic_ns() - received_ns, error.reason, error.kind)
        if request_log.isEnabledFor(logging.DEBUG):
            request_log.debug(
                "request #%d refused: %s (%s) after %d us",
                next(_sequence),
                error.reason,
                error.message,
                (time.monotonic_ns() - received_ns) // 1000,
            )

    def _log_request(self, req: InferRequest, t0: int, outcome: str, detail: str) -> None:
        request_log.debug(
            "request %s model %s: %s (%s) in %d us",
            req.id or f"#{next(_sequence)}",
            req.model_name,
            outcome,
            detail,
            (time.monotonic_ns() - t0) // 1000,
        )

    def on_batch(self, report: BatchReport) -> None:
        """Batcher callback: account one model execution (a failed one only as a failure)."""
        if report.error is not None:
            if isinstance(report.error, ModelError):
                self.stats.execution_failures += 1
            return
        self.stats.record_batch(
            report.requests,
            report.rows,
            report.compute_input_ns,
            report.compute_infer_ns,
            report.compute_output_ns,
        )


def _deadline(req: InferRequest, t0: int) -> int:
    timeout = req.parameters.get("timeout")
    if timeout is None:
        return 0
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
        raise InvalidInputError(
            f"parameter 'timeout' must be a non-negative integer (µs), not {timeout!r}"
        )
    return t0 + timeout * 1000 if timeout else 0


def validate(spec: ModelSpec, req: InferRequest) -> tuple[list[Array], int, tuple[Any, ...]]:
    """Check `req` against `spec`.

    Returns its input arrays in spec order, its batch rows and its shape key (non-batch dims).
    """
    mb = spec.max_batch_size
    by_name: dict[str, Tensor] = {}
    for t in req.inputs:
        if t.name in by_name:
            raise InvalidInputError(f"input {t.name!r} appears more than once")
        by_name[t.name] = t
    arrays: list[Array] = []
    key: list[tuple[int, ...]] = []
    rows = 0
    for s in spec.inputs:
        given = by_name.get(s.name)
        if given is None:
            raise InvalidInputError(
                f"missing input {s.name!r}: model {spec.name!r} expects "
                f"{', '.join(repr(x.name) for x in spec.inputs)}"
            )
        if given.datatype != s.datatype:
            raise InvalidInputError(
                f"input {s.name!r}: datatype {given.datatype} does not match "
                f"the model's {s.datatype}"
            )
        shape = given.shape
        expected = s.full_shape(mb)
        if len(shape) != len(expected):
            raise InvalidInputError(
                f"input {s.name!r}: shape {list(shape)} has {len(shape)} dimensions, the model "
                f"expects {len(expected)} ({expected}, -1 = any)"
            )
        dims = shape[1:] if mb > 0 else shape
        if any(d != e and e != -1 for d, e in zip(dims, s.dims, strict=True)):
            raise InvalidInputError(
                f"input {s.name!r}: shape {list(shape)} does not match the model's {expected} "
                "(-1 = any)"
            )
        if mb > 0:
            r = shape[0]
            if r < 1 or r > mb:
                raise InvalidInputError(
                    f"input {s.name!r}: batch size {r} is outside 1..{mb} (max_batch_size)"
                )
            if rows and r != rows:
                raise InvalidInputError(
                    f"input {s.name!r}: batch size {r} differs from the other inputs' {rows}"
                )
            rows = r
        arrays.append(given.data)
        key.append(dims)
    if len(by_name) != len(spec.inputs):
        known = {s.name for s in spec.inputs}
        extra = sorted(set(by_name) - known)
        raise InvalidInputError(f"unexpected input(s) {extra} for model {spec.name!r}")
    if req.outputs is not None:
        names = {s.name for s in spec.outputs}
        for name in req.outputs:
            if name not in names:
                raise InvalidInputError(
                    f"unexpected inference output {name!r} for model {spec.name!r}; it has "
                    f"{', '.join(sorted(names))}"
                )
    return arrays, rows or 1, tuple(key)

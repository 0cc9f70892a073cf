"""The gRPC transport: `inference.GRPCInferenceService` on `grpc.aio`, over the data plane.

Built by the composition root (`server`). Uses the generated stubs shipped in the tritonclient
wheel. Requests are translated into transport-neutral messages and back; answers always carry
`raw_output_contents` aligned with `outputs` (tritonclient decodes nothing else), inputs are
accepted raw or as typed `contents`. Domain errors map to status codes once, in `CODES`;
ModelStreamInfer reports per-request failures inside the stream and keeps going.

Calls in progress are bounded here, not by grpc.aio's `maximum_concurrent_rpcs`: that one
acquires an `asyncio.Condition` before every call and creates a task when each ends, which cost
a quarter of the small-model throughput. ModelInfer is registered as stream-unary (the same
bytes on the wire as unary) so that its handler runs before its message is read: a call over the
limit is refused with RESOURCE_EXHAUSTED before grpc-core receives its message, and the count is
released in a `finally` that runs however the call ends (a message over the size limit, a
cancelled client).
"""

# The servicer's method names are the RPC names the generated stubs dispatch to.
# ruff: noqa: N802

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from airt_worker.dataplane import DataPlane
from airt_worker.datatypes import NUMPY_DTYPES, check_datatype, element_count, from_raw, to_raw
from airt_worker.errors import (
    InferenceError,
    InvalidInputError,
    ModelError,
    NotFoundError,
    PayloadTooLargeError,
    UnavailableError,
    UnsupportedError,
)
from airt_worker.limits import MemoryBudget
from airt_worker.messages import InferRequest, InferResponse, Tensor
from airt_worker.offload import Offload
from airt_worker.tracing import TraceConfig, check_update

log = logging.getLogger(__name__)

#: The one mapping from domain errors to gRPC status codes.
CODES: dict[type[InferenceError], grpc.StatusCode] = {
    InvalidInputError: grpc.StatusCode.INVALID_ARGUMENT,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    UnavailableError: grpc.StatusCode.UNAVAILABLE,
    UnsupportedError: grpc.StatusCode.UNIMPLEMENTED,
    PayloadTooLargeError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ModelError: grpc.StatusCode.INTERNAL,
}

# typed `contents` field per datatype (tritonclient never sends these; other clients may)
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

T = TypeVar("T")


def code_of(e: InferenceError) -> grpc.StatusCode:
    for cls in type(e).__mro__:
        if cls in CODES:
            return CODES[cls]
    return grpc.StatusCode.INTERNAL


def _param_value(p: Any) -> Any:
    which = p.WhichOneof("parameter_choice")
    return getattr(p, which) if which else None


def request_size(msg: Any) -> int:
    """Bytes of tensor data a ModelInferRequest carries (raw contents; typed contents are
    estimated at 8 bytes an element), to reserve before decoding."""
    raw = msg.raw_input_contents
    if raw:
        # typed contents beside raw ones are refused by decode_request before they are decoded
        return sum(map(len, raw))
    size = 0
    for inp in msg.inputs:
        if inp.HasField("contents"):
            field = _CONTENTS.get(inp.datatype)
            if field is not None:
                values = getattr(inp.contents, field)
                size += len(values) * 8 + (sum(map(len, values)) if inp.datatype == "BYTES" else 0)
    return size


def decode_request(msg: Any, received_ns: int, limit: int | None = None) -> InferRequest:
    """ModelInferRequest -> InferRequest (tensors checked against their declared shape; no
    tensor's decoded size may exceed `limit`)."""
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise InvalidInputError(
            f"raw_input_contents has {len(raw)} entries but there are {len(msg.inputs)} inputs"
        )
    inputs: list[Tensor] = []
    for i, inp in enumerate(msg.inputs):
        where = f"input {inp.name!r}"
        check_datatype(inp.datatype, where)
        shape = tuple(inp.shape)
        has_contents = inp.HasField("contents")
        if raw:
            if has_contents:
                raise InvalidInputError(f"{where}: send raw_input_contents or contents, not both")
            data = from_raw(raw[i], inp.datatype, shape, where, limit)
        elif has_contents:
            data = _from_contents(inp, shape, where)
        else:
            raise InvalidInputError(
                f"{where} has no data (neither raw_input_contents nor contents)"
            )
        inputs.append(Tensor(inp.name, inp.datatype, shape, data))
    params = {k: _param_value(v) for k, v in msg.parameters.items()}
    for out in msg.outputs:
        if "classification" in out.parameters:
            raise UnsupportedError("the classification extension is not supported")
    outputs = [o.name for o in msg.outputs] if msg.outputs else None
    request = InferRequest(msg.model_name, msg.model_version, msg.id, inputs, outputs, params)
    request.received_ns = received_ns
    return request


def _from_contents(inp: Any, shape: tuple[int, ...], where: str) -> Any:
    field = _CONTENTS.get(inp.datatype)
    if field is None:
        raise InvalidInputError(f"{where}: {inp.datatype} must be sent in raw_input_contents")
    values = getattr(inp.contents, field)
    count = element_count(shape, where)
    if len(values) != count:
        raise InvalidInputError(
            f"{where}: contents has {len(values)} elements, "
            f"expected {count} for shape {list(shape)}"
        )
    if inp.datatype == "BYTES":
        return np.array(list(values), dtype=np.object_).reshape(shape)
    return np.array(values, dtype=NUMPY_DTYPES[inp.datatype]).reshape(shape)


def encode_response(resp: InferResponse) -> Any:
    return service_pb2.ModelInferResponse(
        model_name=resp.model_name,
        model_version=resp.model_version,
        id=resp.id,
        outputs=[
            service_pb2.ModelInferResponse.InferOutputTensor(
                name=t.name, datatype=t.datatype, shape=list(t.shape)
            )
            for t in resp.outputs
        ],
        raw_output_contents=[to_raw(t.data, t.datatype) for t in resp.outputs],
    )


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """Every RPC of `inference.GRPCInferenceService`, delegating to one data plane."""

    def __init__(
        self,
        plane: DataPlane,
        max_message_bytes: int | None = None,
        budget: MemoryBudget | None = None,
        codec: Offload | None = None,
        max_calls: int | None = None,
        trace: TraceConfig | None = None,
    ) -> None:
        self.plane = plane
        self.trace = trace or TraceConfig(enabled=False)
        self.limit = max_message_bytes
        self.max_calls = max_calls if max_calls is not None else 1 << 62
        self.calls = 0  # inference calls in progress (ModelInfer, ModelStreamInfer streams)
        self.budget = budget or MemoryBudget(1 << 62)
        self.codec = codec or Offload()

    async def _infer(self, msg: Any, received: int) -> Any:
        """Decode, infer and encode one request; large ones are decoded and encoded on the codec
        threads. The decoded tensors' memory is reserved first; rejections are counted."""
        accepted = False
        held = 0
        try:
            size = request_size(msg)
            self.budget.reserve(size, "the request")
            held = size
            if size >= self.codec.threshold:
                request = await self.codec.run(decode_request, msg, received, self.limit)
            else:
                request = decode_request(msg, received, self.limit)
            accepted = True
            response = await self.plane.infer(request)
            out_bytes = 0
            for t in response.outputs:  # a loop, not sum() over a generator: every request
                out_bytes += t.data.nbytes
            if out_bytes >= self.codec.threshold:
                return await self.codec.run(encode_response, response)
            return encode_response(response)
        except InferenceError as e:
            if not accepted:
                self.plane.record_rejection(e, received)
            raise
        finally:
            self.budget.release(held)

    async def _call(self, context: Any, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await fn()
        except InferenceError as e:
            await context.abort(code_of(e), e.message)
        except Exception as e:
            log.exception("unexpected error in a gRPC call")
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {e}")
        raise AssertionError("unreachable")  # abort() always raises

    async def _sync(self, context: Any, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()

        return await self._call(context, run)

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerLiveResponse(live=self.plane.live())

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerReadyResponse(ready=self.plane.ready())

    async def ModelReady(self, request: Any, context: Any) -> Any:
        ready = await self._sync(
            context, lambda: self.plane.model_ready(request.name, request.version)
        )
        return service_pb2.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return service_pb2.ServerMetadataResponse(**self.plane.server_metadata())

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        doc = await self._sync(
            context, lambda: self.plane.model_metadata(request.name, request.version)
        )
        tm = service_pb2.ModelMetadataResponse.TensorMetadata
        return service_pb2.ModelMetadataResponse(
            name=doc["name"],
            versions=doc["versions"],
            platform=doc["platform"],
            inputs=[tm(**t) for t in doc["inputs"]],
            outputs=[tm(**t) for t in doc["outputs"]],
        )

    async def ModelConfig(self, request: Any, context: Any) -> Any:
        cfg = await self._sync(
            context, lambda: self.plane.model_config(request.name, request.version)
        )
        config = json_format.ParseDict(cfg, model_config_pb2.ModelConfig())
        return service_pb2.ModelConfigResponse(config=config)

    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        doc = await self._sync(
            context, lambda: self.plane.statistics(request.name, request.version)
        )
        return json_format.ParseDict(doc, service_pb2.ModelStatisticsResponse())

    async def RepositoryIndex(self, request: Any, context: Any) -> Any:
        entries = self.plane.repository_index(request.ready)
        idx = service_pb2.RepositoryIndexResponse.ModelIndex
        return service_pb2.RepositoryIndexResponse(models=[idx(**e) for e in entries])

    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        await self._sync(context, lambda: self.plane.load(request.model_name))
        return service_pb2.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        await self._sync(context, lambda: self.plane.unload(request.model_name))
        return service_pb2.RepositoryModelUnloadResponse()

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        """The unary form, for callers in-process; the server registers `ModelInferCall`."""
        received = time.monotonic_ns()
        # _infer is the awaitable itself: no wrapping coroutine per call
        return await self._call(context, functools.partial(self._infer, request, received))

    async def _refuse(self, context: Any) -> None:
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"more than {self.max_calls} inference calls in progress "
            "(the worker's grpc_max_concurrent_rpcs)",
        )

    async def ModelInferCall(self, requests: AsyncIterator[Any], context: Any) -> Any:
        """ModelInfer as registered: the call is admitted before its one message is read."""
        if self.calls >= self.max_calls:
            await self._refuse(context)
        self.calls += 1
        try:
            try:
                request = await anext(aiter(requests))
            except StopAsyncIteration:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no ModelInferRequest sent")
            received = time.monotonic_ns()
            return await self._call(context, functools.partial(self._infer, request, received))
        finally:
            self.calls -= 1

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        """Requests of one stream run concurrently (so they can batch); answers keep their order.
        A stream counts as one call in progress."""
        if self.calls >= self.max_calls:
            await self._refuse(context)
        self.calls += 1
        try:
            async with contextlib.aclosing(self._stream(request_iterator)) as answers:
                async for answer in answers:
                    yield answer
        finally:
            self.calls -= 1

    async def _stream(self, request_iterator: AsyncIterator[Any]) -> AsyncGenerator[Any]:
        answers: asyncio.Queue[asyncio.Task[Any] | None] = asyncio.Queue()

        async def one(msg: Any, received: int) -> Any:
            try:
                resp = await self._infer(msg, received)
                return service_pb2.ModelStreamInferResponse(infer_response=resp)
            except InferenceError as e:
                return service_pb2.ModelStreamInferResponse(
                    error_message=e.message,
                    infer_response=service_pb2.ModelInferResponse(
                        model_name=msg.model_name, model_version=msg.model_version, id=msg.id
                    ),
                )
            except Exception as e:
                log.exception("unexpected error in a stream request")
                return service_pb2.ModelStreamInferResponse(error_message=f"internal error: {e}")

        async def reader() -> None:
            try:
                async for msg in request_iterator:
                    answers.put_nowait(asyncio.ensure_future(one(msg, time.monotonic_ns())))
            finally:
                answers.put_nowait(None)

        read_task = asyncio.ensure_future(reader())
        try:
            while (task := await answers.get()) is not None:
                yield await task
        finally:
            read_task.cancel()

    async def SystemSharedMemoryStatus(self, request: Any, context: Any) -> Any:
        return service_pb2.SystemSharedMemoryStatusResponse()

    async def SystemSharedMemoryRegister(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "system shared memory is not supported")

    async def SystemSharedMemoryUnregister(self, request: Any, context: Any) -> Any:
        return service_pb2.SystemSharedMemoryUnregisterResponse()

    async def CudaSharedMemoryStatus(self, request: Any, context: Any) -> Any:
        return service_pb2.CudaSharedMemoryStatusResponse()

    async def CudaSharedMemoryRegister(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "CUDA shared memory is not supported")

    async def CudaSharedMemoryUnregister(self, request: Any, context: Any) -> Any:
        return service_pb2.CudaSharedMemoryUnregisterResponse()

    async def TraceSetting(self, request: Any, context: Any) -> Any:
        """Reports the tracing this worker really does; an update must change nothing."""

        def settings() -> Any:
            if request.model_name:
                self.plane.model_ready(request.model_name, "")  # checks the name
            requested = {k: list(v.value) or None for k, v in request.settings.items()}
            check_update(self.trace, requested)
            resp = service_pb2.TraceSettingResponse()
            for key, value in self.trace.settings().items():
                resp.settings[key].value.extend(value if isinstance(value, list) else [value])
            return resp

        return await self._sync(context, settings)

    async def LogSettings(self, request: Any, context: Any) -> Any:
        return service_pb2.LogSettingsResponse()


SERVICE = "inference.GRPCInferenceService"


class _Capture:
    """Stands in for a server to collect the generated stubs' method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.handlers = dict(handlers)


def _method_handlers(servicer: InferenceServicer) -> dict[str, Any]:
    """The generated stubs' handler of every RPC (their (de)serializers), bound to servicer."""
    capture = _Capture()
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, capture)
    if "ModelInfer" not in capture.handlers:  # a stub generation without registered handlers
        raise RuntimeError("the tritonclient gRPC stubs did not register their method handlers")
    return capture.handlers


def build_server(
    plane: DataPlane,
    host: str,
    port: int,
    max_message_bytes: int,
    *,
    max_concurrent_rpcs: int | None = None,
    budget: MemoryBudget | None = None,
    codec: Offload | None = None,
    trace: TraceConfig | None = None,
    interceptors: Sequence[Any] = (),
) -> tuple[grpc.aio.Server, int]:
    """The gRPC server bound to host:port (not started) and the port it got.

    A message over `max_message_bytes` is refused by gRPC itself (RESOURCE_EXHAUSTED) before it
    is buffered; beyond `max_concurrent_rpcs` inference calls in progress new ones are refused
    the same way, before their message is read (module docstring).
    """
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
        # only when tracing is on (`tracing`): an interceptor costs every call
        interceptors=list(interceptors) or None,
    )
    servicer = InferenceServicer(
        plane, max_message_bytes, budget, codec, max_calls=max_concurrent_rpcs, trace=trace
    )
    handlers = _method_handlers(servicer)
    handlers["ModelInfer"] = grpc.stream_unary_rpc_method_handler(
        servicer.ModelInferCall,
        request_deserializer=service_pb2.ModelInferRequest.FromString,
        response_serializer=service_pb2.ModelInferResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as e:  # grpc reports a taken port as RuntimeError
        raise OSError(f"{host}:{port} (grpc): {e}") from None
    if bound == 0:
        raise OSError(f"{host}:{port} (grpc): cannot bind")
    return server, bound

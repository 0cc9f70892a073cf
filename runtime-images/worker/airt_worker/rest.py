"""The REST transport: a small hand-written ASGI app for the v2 HTTP endpoints, run by uvicorn.

Built by the composition root (`server`) over the data plane. Hand-written rather than Starlette
or FastAPI because the protocol needs byte-level control that frameworks get in the way of — the
raw body regardless of Content-Type (the sync tritonclient sends none), compression only on
/infer and never br (a blanket GZip middleware breaks tritonclient.http.aio), a body limit
enforced while reading — and because per-request framework overhead (routing tables, request
objects, middleware stacks) is measurable next to a sub-millisecond model call. Routing is a
split of the path. Domain errors map to HTTP statuses once, in `STATUS`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson

from airt_worker.asgi import Message, Receive, Scope, Send
from airt_worker.dataplane import DataPlane
from airt_worker.errors import (
    InferenceError,
    InvalidInputError,
    ModelError,
    NotFoundError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UnavailableError,
    UnsupportedError,
)
from airt_worker.limits import BODY_COMPLETE_KEY, CONNECTION_KEY, ConnectionWatch, MemoryBudget
from airt_worker.messages import InferRequest, InferResponse
from airt_worker.offload import Offload
from airt_worker.rest_codec import (
    DecodeLimits,
    OutputChoice,
    UnsupportedEncodingError,
    choose_response_encoding,
    compress,
    decode_request,
    decompress,
    encode_response,
)
from airt_worker.tracing import TraceConfig, check_update

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The one mapping from domain errors to HTTP statuses (Triton's choices).
STATUS: dict[type[InferenceError], int] = {
    InvalidInputError: 400,
    NotFoundError: 404,
    UnavailableError: 503,
    UnsupportedError: 501,
    PayloadTooLargeError: 413,
    RequestTimeoutError: 408,
    UnsupportedEncodingError: 415,
    ModelError: 500,
}

_JSON = [(b"content-type", b"application/json")]
_EMPTY_OBJECT = b"{}"


def status_of(e: InferenceError) -> int:
    for cls in type(e).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


class RestApp:
    """ASGI application for every v2 HTTP endpoint of one data plane."""

    def __init__(
        self,
        plane: DataPlane,
        max_request_bytes: int,
        compress_min_bytes: int,
        *,
        max_json_bytes: int | None = None,
        body_timeout_s: float = 5.0,
        budget: MemoryBudget | None = None,
        codec: Offload | None = None,
        trace: TraceConfig | None = None,
    ) -> None:
        self.plane = plane
        self.trace = trace or TraceConfig(enabled=False)
        self.max_request_bytes = max_request_bytes
        self.compress_min_bytes = compress_min_bytes
        self.limits = DecodeLimits(max_request_bytes, max_json_bytes)
        self.body_timeout_s = body_timeout_s
        self.budget = budget or MemoryBudget(1 << 62)
        self.codec = codec or Offload()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        received = time.monotonic_ns()
        method: str = scope["method"]
        path: str = scope["path"]
        try:
            if method == "POST" and path.endswith("/infer"):
                await self._infer(scope, receive, send, received)
                return
            status, body = await self._route(method, path, scope, receive)
        except InferenceError as e:
            status, body = status_of(e), orjson.dumps({"error": e.message})
        except Exception as e:  # never leak a traceback as an empty 500
            log.exception("unexpected error on %s %s", method, path)
            status, body = 500, orjson.dumps({"error": f"internal error: {e}"})
        await _respond(send, status, body, _JSON)

    # ------------------------------------------------------------------------------ infer

    async def _infer(self, scope: Scope, receive: Receive, send: Send, received: int) -> None:
        parts = path_parts(scope["path"])
        held = 0  # bytes of the memory budget this request holds
        accepted = False  # handed to the data plane, which counts its own failures
        close = True  # answer with `connection: close` until the whole body has been read
        try:
            model, version = _model_path(parts, "infer")
            headers = _headers(scope)
            declared = _declared_length(headers.get("content-length"))
            if declared > self.max_request_bytes:
                if declared <= self.max_request_bytes * DRAIN_FACTOR:
                    # near the limit: read and drop the body (no memory held, the body timeout
                    # applies) so the client reads the 413 instead of a reset connection
                    await self._read_body(receive, keep=False, limit=declared)
                    close = False
                raise PayloadTooLargeError(
                    f"request body of {declared} bytes exceeds the limit of "
                    f"{self.max_request_bytes} bytes (max_request_bytes)"
                )
            try:
                self.budget.reserve(declared, "the request body")
            except UnavailableError:
                # busy: read and drop the body (no memory held, the body timeout applies), so
                # the client reads the 503 instead of a reset connection
                await self._read_body(receive, keep=False)
                close = False
                raise
            held = declared
            body = await self._read_body(receive, complete=BODY_COMPLETE_KEY in scope)
            close = False
            if len(body) > held:  # chunked bodies: reserve what actually came
                self.budget.reserve(len(body) - held, "the request body")
                held = len(body)
            encoding = headers.get("content-encoding", "")
            header_len = _header_length(headers.get("inference-header-content-length"))
            _check_json_size(len(body), header_len, self.limits.max_json_bytes)
            if encoding or len(body) >= self.codec.threshold:
                # decompressing and decoding a large body runs off the event loop, which keeps
                # answering health checks and small requests meanwhile
                extra = _decode_cost(len(body), header_len, bool(encoding), self.max_request_bytes)
                self.budget.reserve(extra, "decoding the request")
                held += extra
                request, choice = await self.codec.run(
                    _decode, body, encoding, header_len, model, version, self.limits
                )
            else:  # small and not compressed: decoded here, at once
                request, choice = decode_request(body, header_len, model, version, self.limits)
            del body
            request.received_ns = received
            accepted = True
            conn: ConnectionWatch | None = scope.get(CONNECTION_KEY)
            if conn is None:
                response = await _cancel_on_disconnect(self.plane.infer(request), receive)
            else:
                # Served by our protocol, the connection cancels this task if it is lost while
                # the request is queued or running (one attribute, no task or callback per
                # request); the queue then drops the request at once.
                task = asyncio.current_task()
                conn.watched = task
                try:
                    response = await self.plane.infer(request)
                except asyncio.CancelledError:
                    if conn.watch_cancelled and task is not None:  # not the server's shutdown
                        task.uncancel()
                        raise ClientGoneError from None
                    raise
                finally:
                    conn.watched = None
            if _response_size(response) >= self.codec.threshold:
                payload, json_len = await self.codec.run(encode_response, response, choice)
            else:
                payload, json_len = encode_response(response, choice)
        except InferenceError as e:
            if not accepted:
                self.plane.record_rejection(e, received)
            extra_headers = [*_JSON, (b"connection", b"close")] if close else _JSON
            await _respond(send, status_of(e), orjson.dumps({"error": e.message}), extra_headers)
            return
        except ClientGoneError:  # nobody to answer (counted as CANCELED by the data plane)
            return
        except Exception as e:
            log.exception("unexpected error in /infer")
            await _respond(send, 500, orjson.dumps({"error": f"internal error: {e}"}), _JSON)
            return
        finally:
            self.budget.release(held)
        out_headers: list[tuple[bytes, bytes]]
        if json_len is None:
            out_headers = [(b"content-type", b"application/json")]
        else:
            out_headers = [
                (b"content-type", b"application/octet-stream"),
                (b"Inference-Header-Content-Length", str(json_len).encode()),
            ]
        if len(payload) >= self.compress_min_bytes:
            enc = choose_response_encoding(headers.get("accept-encoding", ""))
            if enc is not None:
                if len(payload) >= self.codec.threshold:
                    payload = await self.codec.run(compress, payload, enc)
                else:
                    payload = compress(payload, enc)
                out_headers.append((b"Content-Encoding", enc.encode()))
        await _respond(send, 200, payload, out_headers)

    async def _read_body(
        self,
        receive: Receive,
        keep: bool = True,
        limit: int | None = None,
        complete: bool = False,
    ) -> bytes | bytearray:
        """The whole body, at most `max_request_bytes` (dropped as it comes unless `keep`); a
        pause longer than the body timeout ends the request with 408 (the connection is then
        closed). Chunks are appended to one buffer, never joined at the end, so a body takes
        its own size in memory and no more.

        `complete`: the protocol has already parsed the whole body (`BODY_COMPLETE_KEY`), so
        one `receive()` returns it at once and the deadline, which could not fire, is skipped.
        """
        limit = self.max_request_bytes if limit is None else limit
        first: Message | None = None
        if complete:
            first = await receive()
            if first["type"] == "http.request" and not first.get("more_body", False):
                whole: bytes = first.get("body", b"")
                if len(whole) <= limit:
                    return whole if keep else b""
        buf = bytearray()
        size = 0
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.body_timeout_s) as deadline:
                while True:
                    message, first = first or await receive(), None
                    if message["type"] == "http.disconnect":
                        raise InvalidInputError(
                            "the client disconnected before sending the whole body"
                        )
                    chunk: bytes = message.get("body", b"")
                    more = message.get("more_body", False)
                    if not more and not size and len(chunk) <= limit:
                        return chunk if keep else b""  # the whole body in one message
                    if chunk:
                        size += len(chunk)
                        if size > limit:
                            raise PayloadTooLargeError(
                                f"request body exceeds the limit of {limit} bytes "
                                "(max_request_bytes)"
                            )
                        if keep:
                            buf += chunk
                    if not more:
                        break
                    deadline.reschedule(loop.time() + self.body_timeout_s)
        except TimeoutError:
            raise RequestTimeoutError(
                f"the request body stalled: nothing received for {self.body_timeout_s:g}s "
                f"after {size} bytes (body_timeout_seconds)"
            ) from None
        return buf

    # ---------------------------------------------------------------------- other routes

    async def _route(
        self, method: str, path: str, scope: Scope, receive: Receive
    ) -> tuple[int, bytes]:
        plane = self.plane
        parts = path_parts(path)
        if not parts or parts[0] != "v2":
            raise NotFoundError(f"no such endpoint: {method} {path}")
        rest = parts[1:]
        if not rest:
            return _get(method, path, lambda: plane.server_metadata())
        head = rest[0]
        if head == "health" and len(rest) == 2 and method == "GET":
            ok = (
                plane.live() if rest[1] == "live" else plane.ready() if rest[1] == "ready" else None
            )
            if ok is None:
                raise NotFoundError(f"no such endpoint: {method} {path}")
            if not ok:
                raise UnavailableError(
                    "the server is not ready" if rest[1] == "ready" else "not live"
                )
            return 200, b""
        if head == "models":
            if rest[1:] == ["stats"]:
                return _get(method, path, lambda: plane.statistics("", ""))
            model, version, action = _split_model(rest[1:], path)
            if action == "":
                return _get(method, path, lambda: plane.model_metadata(model, version))
            if action == "ready":
                if method != "GET":
                    raise NotFoundError(f"no such endpoint: {method} {path}")
                if not plane.model_ready(model, version):
                    raise UnavailableError(
                        f"model {model!r} is not ready: {plane.reason or 'draining'}"
                    )
                return 200, b""
            if action == "config":
                return _get(method, path, lambda: plane.model_config(model, version))
            if action == "stats":
                return _get(method, path, lambda: plane.statistics(model, version))
            if action == "trace/setting":
                plane.model_ready(model, version)  # checks the name
                return await self._trace_setting(method, path, receive)
            raise NotFoundError(f"no such endpoint: {method} {path}")
        if head == "repository" and method == "POST":
            if rest[1:] == ["index"]:
                body = await _read_small(receive)
                ready_only = False
                if body.strip():
                    try:
                        doc = orjson.loads(body)
                    except orjson.JSONDecodeError as e:
                        raise InvalidInputError(
                            f"malformed JSON in the index request: {e}"
                        ) from None
                    ready_only = bool(isinstance(doc, dict) and doc.get("ready"))
                return 200, orjson.dumps(plane.repository_index(ready_only))
            if len(rest) == 4 and rest[1] == "models" and rest[3] in ("load", "unload"):
                await _read_small(receive)
                (plane.load if rest[3] == "load" else plane.unload)(rest[2])
                return 200, b""
        if head == "trace" and rest[1:] == ["setting"]:
            return await self._trace_setting(method, path, receive)
        if head == "logging" and rest[1:] in ([], ["setting"]):
            return 200, _EMPTY_OBJECT
        if head in ("systemsharedmemory", "cudasharedmemory"):
            if rest[-1] == "status":
                return 200, b"[]"
            if rest[-1] == "unregister":
                return 200, b""
            raise UnsupportedError(f"{head} is not supported: send tensors in the request body")
        raise NotFoundError(f"no such endpoint: {method} {path}")

    async def _trace_setting(self, method: str, path: str, receive: Receive) -> tuple[int, bytes]:
        """The v2 trace extension: GET reports the tracing this worker really does; POST
        accepts only what changes nothing (tracing is fixed at start, see `tracing`)."""
        if method == "POST":
            body = await _read_small(receive)
            try:
                doc = orjson.loads(body) if body.strip() else {}
            except orjson.JSONDecodeError as e:
                raise InvalidInputError(f"malformed JSON in the trace settings: {e}") from None
            if not isinstance(doc, dict):
                raise InvalidInputError("the trace settings must be a JSON object")
            check_update(self.trace, doc)
        elif method != "GET":
            raise NotFoundError(f"no such endpoint: {method} {path}")
        return 200, orjson.dumps(self.trace.settings())


def path_parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


def _split_model(parts: list[str], path: str) -> tuple[str, str, str]:
    """models/{m}[/versions/{v}][/action...] -> (m, v, action)."""
    if not parts:
        raise NotFoundError(f"no such endpoint: {path}")
    model = parts[0]
    version = ""
    rest = parts[1:]
    if len(rest) >= 2 and rest[0] == "versions":
        version = rest[1]
        if not version.isdigit():
            raise InvalidInputError(f"model version {version!r} in {path} is not a number")
        rest = rest[2:]
    return model, version, "/".join(rest)


def _model_path(parts: list[str], action: str) -> tuple[str, str]:
    if len(parts) < 3 or parts[0] != "v2" or parts[1] != "models":
        raise NotFoundError(f"no such endpoint: /{'/'.join(parts)}")
    model, version, act = _split_model(parts[2:], "/" + "/".join(parts))
    if act != action:
        raise NotFoundError(f"no such endpoint: /{'/'.join(parts)}")
    return model, version


def _get(method: str, path: str, fn: Callable[[], Any]) -> tuple[int, bytes]:
    if method != "GET":
        raise NotFoundError(f"no such endpoint: {method} {path}")
    return 200, orjson.dumps(fn())


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _header_length(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise InvalidInputError(
            f"Inference-Header-Content-Length {value!r} is not an integer"
        ) from None


async def _read_small(receive: Receive, limit: int = 1 << 20) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


#: A body declared larger than the limit, but at most this many times the limit, is read and
#: dropped before the 413 (so the client reads it); a larger one is refused without reading and
#: the connection closed (a declared 100 GB body must not keep a connection busy for hours).
DRAIN_FACTOR = 4


def _declared_length(value: str | None) -> int:
    """The Content-Length (0 when absent: chunked bodies are limited as they arrive)."""
    if value is None:
        return 0
    if not value.isdigit():
        raise InvalidInputError(f"Content-Length {value!r} is not a number")
    return int(value)


#: Memory a parsed JSON document takes per byte of its text (Python objects for numbers and
#: lists); a measured upper bound for number arrays, the worst case of an /infer body.
JSON_EXPANSION = 16
#: Inflated size per compressed byte assumed when reserving memory for a compressed body.
COMPRESSION_ESTIMATE = 16


def _decode_cost(body_len: int, header_len: int | None, compressed: bool, limit: int) -> int:
    """Memory decoding a body may take beyond the body itself, reserved before decoding."""
    if compressed:
        # The inflated size is unknown until inflated: reserve a typical ratio, at most the
        # limit. A body that inflates further is still capped at `limit`, and only the two codec
        # threads inflate, so what an estimate misses is bounded by two requests.
        return min(limit, body_len * COMPRESSION_ESTIMATE) * 2
    json_len = body_len if header_len is None else min(max(header_len, 0), body_len)
    return json_len * JSON_EXPANSION + (body_len - json_len)


def _check_json_size(body_len: int, header_len: int | None, limit: int | None) -> None:
    """Refuse an oversized JSON part before its decoding is reserved or started (413)."""
    json_len = body_len if header_len is None else header_len
    if limit is not None and json_len > limit:
        raise PayloadTooLargeError(
            f"the JSON part of the request is {json_len} bytes, more than the limit of {limit} "
            "bytes (max_json_bytes): send large tensors as binary data"
        )


def _decode(
    body: bytes | bytearray,
    encoding: str,
    header_len: int | None,
    model: str,
    version: str,
    limits: DecodeLimits,
) -> tuple[InferRequest, OutputChoice]:
    if encoding:
        assert limits.max_tensor_bytes is not None
        body = decompress(body, encoding, limits.max_tensor_bytes)
    return decode_request(body, header_len, model, version, limits)


def _response_size(response: InferResponse) -> int:
    size = 0
    for t in response.outputs:  # a loop, not sum() over a generator: runs for every request
        size += t.data.nbytes
    return size


class ClientGoneError(Exception):
    """The client disconnected while its request was queued or running."""


async def _cancel_on_disconnect(work: Awaitable[T], receive: Receive) -> T:
    """Await `work`, cancelling it when the client disconnects first (uvicorn answers a
    `receive()` after the whole body only when the connection goes away): the fallback for a
    protocol other than ours, which watches without a task (`ConnectionWatch`). A cancelled
    request still queued leaves the queue; one already running finishes, its answer dropped.
    The watch cancels the current task rather than running `work` in a task of its own."""
    task = asyncio.current_task()
    assert task is not None
    finished = False
    disconnected = False

    def gone(watch: asyncio.Future[Message]) -> None:
        nonlocal disconnected
        if not finished and not watch.cancelled():
            disconnected = True
            task.cancel()

    watch: asyncio.Future[Message] = asyncio.ensure_future(receive())
    watch.add_done_callback(gone)
    try:
        return await work
    except asyncio.CancelledError:
        if disconnected:  # our own cancellation: not the server's shutdown
            task.uncancel()
            raise ClientGoneError from None
        raise
    finally:
        finished = True
        watch.cancel()


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})

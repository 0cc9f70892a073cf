"""Admission limits of the transports: a shared memory budget and HTTP header/read deadlines.

`MemoryBudget` is reserved by the REST and gRPC adapters before a request's body is read or
decoded and released when its answer is sent, so the memory all requests in progress hold is
bounded whatever the clients send; a request that does not fit is answered 503 / UNAVAILABLE at
once. `LimitedHttpToolsProtocol` is uvicorn's httptools protocol with what httptools lacks: a
limit on the size and count of request headers (431) and a deadline for sending them (408). It is
a subclass rather than a proxy in front of the worker because the header bytes must be counted
as they arrive, before httptools buffers a header of any size; uvicorn keeps every other part.
It also serves the REST app (`rest`) per connection rather than per request, through the scope:
it marks a request whose whole body is already parsed (`BODY_COMPLETE_KEY`: read without a
deadline) and cancels the one task the app watches when the connection is lost
(`CONNECTION_KEY`, a `ConnectionWatch`). Built by the composition root (`server`).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from airt_worker.errors import PayloadTooLargeError, UnavailableError

#: Scope key of the request's connection (a `ConnectionWatch`), set by our protocol only.
CONNECTION_KEY = "airt.connection"
#: Scope key set to True once the request's whole body has been parsed: the app's next
#: `receive()` then returns at once with all of it, so no body deadline is needed to read it.
BODY_COMPLETE_KEY = "airt.body_complete"


class ConnectionWatch(Protocol):
    """What the REST app may ask of the connection a request came on.

    One slot per connection instead of a callback list or a task per request: uvicorn runs a
    connection's requests one after another, so at most one of them waits for the model.
    """

    #: The task to cancel if the connection is lost (the app sets it while the request is
    #: queued or running, and clears it after).
    watched: asyncio.Task[Any] | None
    #: Set when the connection was lost while a task was watched, and that task cancelled.
    watch_cancelled: bool


class MemoryBudget:
    """Bytes that requests in progress may hold together; used on the event loop only."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def reserve(self, nbytes: int, what: str) -> None:
        """Take `nbytes`, or raise UnavailableError (busy: the client may retry later) or
        PayloadTooLargeError (more than the whole budget: it never fits)."""
        if nbytes <= 0:
            return
        if nbytes > self.limit:  # could never fit: retrying would not help
            raise PayloadTooLargeError(
                f"{what} needs {nbytes} bytes, more than all requests in progress may hold "
                f"together ({self.limit} bytes, max_inflight_bytes)"
            )
        if self.used + nbytes > self.limit:
            raise UnavailableError(
                f"the worker is busy: {what} needs {nbytes} bytes and requests in progress hold "
                f"{self.used} of {self.limit} (max_inflight_bytes); retry later",
                "BUSY",
            )
        self.used += nbytes

    def release(self, nbytes: int) -> None:
        if nbytes > 0:  # comparisons, not max(): this runs for every request
            used = self.used - nbytes
            self.used = used if used > 0 else 0


class HeaderLimits:
    """The header limits one HTTP server applies (set by the composition root)."""

    def __init__(self, max_bytes: int, max_count: int, timeout_s: float) -> None:
        self.max_bytes = max_bytes
        self.max_count = max_count
        self.timeout_s = timeout_s


class _RejectedError(Exception):
    """Raised from a parser callback to stop parsing a request already answered."""


def limited_protocol(limits: HeaderLimits) -> type[asyncio.Protocol]:
    """An httptools protocol class bound to `limits` (uvicorn instantiates it per connection)."""

    class _Protocol(LimitedHttpToolsProtocol):
        header_limits = limits

    return _Protocol


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus header size, count and time limits."""

    header_limits = HeaderLimits(32 * 1024, 100, 10.0)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_headers = True
        self._header_bytes = 0
        self._header_started = 0.0
        self._answered = False
        self._header_timer: asyncio.TimerHandle | None = None
        #: `ConnectionWatch`: the app's task to cancel when the connection is lost, so a REST
        #: client's disconnect reaches its request without a task per request waiting for it
        self.watched: asyncio.Task[Any] | None = None
        self.watch_cancelled = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_started = self.loop.time()
        self._header_timer = self.loop.call_later(self.header_limits.timeout_s, self._tick)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        task, self.watched = self.watched, None
        if task is not None:
            self.watch_cancelled = True
            task.cancel()
        super().connection_lost(exc)

    def _tick(self) -> None:
        """One timer per connection, not per request: it fires every header timeout and answers
        408 if the current request's headers have been awaited that long. Idle keep-alive time
        between requests does not count (that is uvicorn's timeout_keep_alive)."""
        self._header_timer = None
        if self._answered or self.transport.is_closing():
            return
        timeout = self.header_limits.timeout_s
        waited = self.loop.time() - self._header_started
        if self._in_headers and waited >= timeout:
            self._answer(408, "the request headers were not received in time")
            return
        left = timeout - waited if self._in_headers else timeout
        self._header_timer = self.loop.call_later(left, self._tick)

    def _answer(self, status: int, message: str) -> None:
        if self._answered or self.transport.is_closing():
            return
        self._answered = True
        body = f'{{"error": "{message}"}}'.encode()
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return
        super().data_received(data)
        # Counted after parsing, so a chunk that completes the headers and carries body bytes
        # is never mistaken for large headers; httptools holds at most one read beyond the limit.
        if self._in_headers and not self._answered:
            self._header_bytes += len(data)
            if self._header_bytes > self.header_limits.max_bytes:
                self._answer(
                    431,
                    f"request line and headers exceed {self.header_limits.max_bytes} bytes "
                    "(max_header_bytes)",
                )

    def send_400_response(self, msg: str) -> None:
        if not self._answered:  # a _RejectedError from a callback: the answer is already written
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_headers:  # the next request on a keep-alive connection
            self._in_headers = True
            self._header_bytes = 0
            self._header_started = self.loop.time()

    def on_header(self, name: bytes, value: bytes) -> None:
        # uvicorn's on_header, inlined rather than called through super(): this runs once per
        # header of every request. The count is checked before the header is kept, so 200,000
        # tiny headers in one read stop at the limit instead of being parsed into a list first.
        headers = self.headers
        if len(headers) >= self.header_limits.max_count:
            self._answer(
                431, f"more than {self.header_limits.max_count} request headers (max_headers)"
            )
            raise _RejectedError
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self.scope[CONNECTION_KEY] = self  # type: ignore[literal-required]
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self.cycle is not None and not self.cycle.more_body:
            # self.scope and self.cycle are still this message's (uvicorn makes new ones per
            # message), and the whole body now waits in the cycle for one receive()
            self.scope[BODY_COMPLETE_KEY] = True  # type: ignore[literal-required]

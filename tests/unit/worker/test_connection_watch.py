"""The per-connection mechanisms of the worker's HTTP protocol (`limits.LimitedHttpToolsProtocol`).

They replace per-request machinery on the hot path, so these pin what the REST app relies on:
the scope says when the whole body has already been parsed (the app then reads it without a
deadline), a lost connection cancels the one task the app watches (no task or callback list per
request), and the header count is enforced by the protocol's own `on_header` (uvicorn's, inlined).
Driven through a real uvicorn server on a loopback port, with raw sockets as clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from airt_worker.limits import (
    BODY_COMPLETE_KEY,
    CONNECTION_KEY,
    ConnectionWatch,
    HeaderLimits,
    limited_protocol,
)

MAX_HEADERS = 20


class _App:
    """Records what each request saw; /hang waits, watched, until its connection is lost."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.cancelled = asyncio.Event()
        self.watch_cancelled = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        conn: ConnectionWatch | None = scope.get(CONNECTION_KEY)
        if scope["path"] == "/hang":
            assert conn is not None
            conn.watched = asyncio.current_task()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.watch_cancelled = conn.watch_cancelled
                self.cancelled.set()
                raise
            finally:
                conn.watched = None
        complete = BODY_COMPLETE_KEY in scope
        message = await receive()
        self.seen.append(
            {
                "complete": complete,
                "body": message.get("body", b""),
                "more_body": message.get("more_body", False),
                "headers": list(scope["headers"]),
                "has_connection": conn is not None,
            }
        )
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture
async def served() -> AsyncIterator[tuple[_App, int]]:
    app = _App()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        loop="none",
        http=limited_protocol(HeaderLimits(16 * 1024, MAX_HEADERS, 10.0)),
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    # the socket already listens: clients may connect before the server task first runs
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield app, port
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _exchange(port: int, *parts: bytes, pause: float = 0.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for part in parts:
        writer.write(part)
        await writer.drain()
        if pause:
            await asyncio.sleep(pause)
    answer = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return answer


def _post(body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST /infer HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n%s\r\n" % (len(body), extra)
    ) + body


async def test_a_body_parsed_with_its_headers_is_marked_complete(
    served: tuple[_App, int],
) -> None:
    app, port = served
    answer = await _exchange(port, _post(b"x" * 100))
    assert answer.startswith(b"HTTP/1.1 200")
    assert app.seen == [
        {
            "complete": True,
            "body": b"x" * 100,
            "more_body": False,
            "headers": [(b"host", b"x"), (b"content-length", b"100")],
            "has_connection": True,
        }
    ]


async def test_a_body_still_arriving_is_not_marked_complete(served: tuple[_App, int]) -> None:
    """Headers first, the body later: the app must read with its deadline."""
    app, port = served
    request = _post(b"y" * 10)
    head, body = request[:-10], request[-10:]
    answer = await _exchange(port, head, body, pause=0.2)
    assert answer.startswith(b"HTTP/1.1 200")
    assert app.seen[0]["complete"] is False
    assert app.seen[0]["body"] == b"y" * 10  # receive() waited for it


async def test_a_lost_connection_cancels_the_watched_task(served: tuple[_App, int]) -> None:
    app, port = served
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /hang HTTP/1.1\r\nhost: x\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await asyncio.wait_for(app.cancelled.wait(), 5)
    assert app.watch_cancelled


async def test_header_count_limit_and_uvicorn_header_semantics(
    served: tuple[_App, int],
) -> None:
    app, port = served
    at_limit = b"".join(b"x-h%d: v\r\n" % i for i in range(MAX_HEADERS - 3))
    answer = await _exchange(port, _post(b"", at_limit + b"Expect: 100-Continue\r\n"))
    # 100-continue recognised (names lowered, as uvicorn's on_header does), then answered
    assert b"200" in answer
    assert app.seen[0]["headers"][-1] == (b"expect", b"100-Continue")
    assert len(app.seen[0]["headers"]) == MAX_HEADERS
    over = b"".join(b"x-h%d: v\r\n" % i for i in range(MAX_HEADERS))
    answer = await _exchange(port, _post(b"", over))
    assert answer.startswith(b"HTTP/1.1 431")
    assert len(app.seen) == 1  # the refused request never reached the app

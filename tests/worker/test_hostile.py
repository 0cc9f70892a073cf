"""Hostile input against a worker at its production defaults (no test-only limits).

Huge declared shapes per datatype, 64 MB JSON and BYTES bodies, gRPC messages of 512 MB,
concurrent large bodies, header floods, stalled and oversized bodies, abandoned requests. Each
case asserts a client error (never a 500 / INTERNAL; 503 only where the in-flight memory budget
is full), that the worker still serves, and that its peak RSS (VmHWM from /proc) stays under
the bound its settings imply: the RSS at ready plus `max_inflight_bytes` plus one request.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import grpc
import orjson
import pytest
from test_errors import assert_still_serves, post
from tritonclient.grpc import service_pb2, service_pb2_grpc
from workerproc import Worker, spawn

from airt_worker.settings import WorkerSettings

pytestmark = pytest.mark.worker

MiB = 1 << 20
DEFAULTS = WorkerSettings(model_path=Path("m.pt"))
INFER = "/v2/models/mlp/infer"
DATATYPES = ["BOOL", "UINT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES"]
HUGE_SHAPES = [[200_000_000], [2**31, 2**31], [2**33]]


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} not in /proc/{pid}/status")


class Hostile:
    """The worker under attack and the memory bound it must stay under."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.ready_rss = _kib(worker.proc.pid, "VmRSS")
        self.bound = self.ready_rss + DEFAULTS.max_inflight_bytes + DEFAULTS.max_request_bytes

    def peak(self) -> int:
        return _kib(self.worker.proc.pid, "VmHWM")

    async def check(self) -> None:
        assert self.worker.proc.poll() is None, self.worker.log()
        await assert_still_serves(self.worker)
        with urllib_open(self.worker.base + "/v2/health/live") as status:
            assert status == 200
        peak = self.peak()
        assert peak <= self.bound, (
            f"peak RSS {peak / MiB:.0f} MiB over the bound {self.bound / MiB:.0f} MiB "
            f"(ready {self.ready_rss / MiB:.0f} MiB)"
        )


class urllib_open:  # noqa: N801 - reads like the context manager it wraps
    """GET a URL and yield its status (4xx/5xx included), with the kubelet's 1 s timeout."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> int:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(self.url, timeout=1) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture(scope="module")
def hostile(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    logs = tmp_path_factory.mktemp("hostile")
    worker = spawn("hostile", models / "mlp.pt", logs, config=models / "mlp.yaml")
    try:
        worker.wait_ready()
        yield Hostile(worker)
    finally:
        code = worker.stop()
    assert code == 0, worker.log()


def _json_input(datatype: str, shape: list[int], data: object) -> bytes:
    return orjson.dumps(
        {"inputs": [{"name": "features", "datatype": datatype, "shape": shape, "data": data}]}
    )


def _binary_input(datatype: str, shape: list[int], blob: bytes) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "datatype": datatype,
                    "shape": shape,
                    "parameters": {"binary_data_size": len(blob)},
                }
            ]
        }
    )
    return header + blob, {"Inference-Header-Content-Length": str(len(header))}


def _assert_client_error(status: int, body: bytes, allowed: tuple[int, ...] = ()) -> None:
    assert 400 <= status < 500 or status in allowed, (status, body[:300])
    assert status != 500, body[:300]


async def test_huge_shapes_every_datatype_rest(hostile: Hostile) -> None:
    for datatype in DATATYPES:
        for shape in HUGE_SHAPES:
            body, headers = _binary_input(datatype, shape, b"")
            status, _, payload = await post(hostile.worker, INFER, body, headers)
            assert status == 400, (datatype, shape, payload)
            if datatype not in ("FP16", "BF16"):
                status, _, payload = await post(
                    hostile.worker, INFER, _json_input(datatype, shape, [1])
                )
                assert status == 400, (datatype, shape, payload)
    await hostile.check()


def _grpc_stub(
    worker: Worker, limit: int = -1
) -> tuple[grpc.Channel, service_pb2_grpc.GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(
        worker.grpc,
        options=[
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
        ],
    )
    return channel, service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _grpc_request(datatype: str, shape: list[int], raw: bytes) -> service_pb2.ModelInferRequest:
    request = service_pb2.ModelInferRequest(model_name="mlp")
    request.inputs.add(name="features", datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return request


async def test_huge_shapes_every_datatype_grpc(hostile: Hostile) -> None:
    channel, stub = _grpc_stub(hostile.worker)
    with channel:
        for datatype in DATATYPES:
            for shape in HUGE_SHAPES:
                with pytest.raises(grpc.RpcError) as info:
                    stub.ModelInfer(_grpc_request(datatype, shape, b""), timeout=30)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (datatype, shape)
    await hostile.check()


async def test_grpc_message_of_512_mb_is_refused(hostile: Hostile) -> None:
    raw = bytes(512 * MiB)
    channel, stub = _grpc_stub(hostile.worker)
    with channel, pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(_grpc_request("FP32", [2 * MiB, 64], raw), timeout=60)
    del raw
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await hostile.check()


async def test_64_mb_json_and_bytes_bodies(hostile: Hostile) -> None:
    n = 64_000_000 // 4
    as_json = b'{"inputs":[{"name":"features","datatype":"FP32","shape":[%d],"data":[' % n
    as_json += b"0.5," * (n - 1) + b"0.5]}]}"
    status, _, payload = await post(hostile.worker, INFER, as_json)
    assert status == 413, payload[:300]
    # BYTES: 16 M elements of empty strings, framed (64 MB of length prefixes)
    body, headers = _binary_input("BYTES", [n], bytes(4 * n))
    status, _, payload = await post(hostile.worker, INFER, body, headers)
    assert status == 413, payload[:300]
    strings = orjson.dumps(["x" * 1000] * 64_000)
    status, _, payload = await post(
        hostile.worker, INFER, _json_input("BYTES", [64_000], None).replace(b"null", strings)
    )
    assert status == 413, payload[:300]
    await hostile.check()


async def test_concurrent_large_bodies(hostile: Hostile) -> None:
    rows = 60 * MiB // (64 * 4)
    body, headers = _binary_input("FP32", [rows, 64], bytes(rows * 64 * 4))
    results = await asyncio.gather(*(post(hostile.worker, INFER, body, headers) for _ in range(8)))
    for status, _, payload in results:
        # 400: the batch is larger than max_batch_size; 503: the memory budget is full
        _assert_client_error(status, payload, allowed=(503,))
    assert any(s == 400 for s, _, _ in results)
    await hostile.check()


def _raw_exchange(worker: Worker, chunks: Iterator[bytes], read_timeout: float = 20) -> bytes:
    """Send `chunks` on one connection (stopping if the server closes it) and read the answer."""
    with socket.create_connection(("127.0.0.1", worker.http_port), timeout=read_timeout) as s:
        try:
            for chunk in chunks:
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while data := s.recv(65536):
                answer += data
        except ConnectionResetError:
            pass
        return answer


def _status(answer: bytes) -> int | None:
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer[9:12])


async def test_header_floods(hostile: Hostile) -> None:
    def big_header() -> Iterator[bytes]:
        yield b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: "
        for _ in range(32):
            yield b"a" * MiB
        yield b"\r\n\r\n"

    def many_headers() -> Iterator[bytes]:
        yield b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n"
        for i in range(0, 200_000, 1000):
            yield b"".join(b"X-H%d: v\r\n" % j for j in range(i, i + 1000))
        yield b"\r\n"

    for flood in (big_header, many_headers):
        answer = await asyncio.to_thread(_raw_exchange, hostile.worker, flood())
        # 431, or a reset when the kernel drops the answer under the unread flood
        assert _status(answer) in (431, None), answer[:200]
    await hostile.check()


async def test_stalled_headers_get_408_and_the_connection_closes(hostile: Hostile) -> None:
    """A client that opens a connection and never finishes its headers (slowloris) holds it only
    for `header_timeout_seconds` (the production default, 10 s): then 408 and a closed socket,
    and the connection counts no more against `max_connections`."""

    def stalled_headers() -> Iterator[bytes]:
        yield b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: "  # and then nothing

    timeout = DEFAULTS.header_timeout_seconds
    assert timeout == 10
    # Read for longer than the deadline: recv returning means the server answered and closed.
    answer = await asyncio.to_thread(
        _raw_exchange, hostile.worker, stalled_headers(), read_timeout=timeout * 3
    )
    assert _status(answer) == 408, answer[:200]
    await hostile.check()


async def test_stalled_and_oversized_bodies(hostile: Hostile) -> None:
    head = b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"

    def stalled() -> Iterator[bytes]:
        yield head % 1000 + b'{"inputs":'  # and then nothing more

    answer = await asyncio.to_thread(_raw_exchange, hostile.worker, stalled())
    assert _status(answer) == 408, answer[:200]

    def declared_100_gb() -> Iterator[bytes]:
        yield head % (100 * 10**9) + b"x" * 1024

    answer = await asyncio.to_thread(_raw_exchange, hostile.worker, declared_100_gb())
    assert _status(answer) == 413, answer[:200]
    await hostile.check()


async def test_abandoned_requests_release_their_memory(hostile: Hostile) -> None:
    rows = 60 * MiB // (64 * 4)

    def abandoned() -> None:
        with socket.create_connection(("127.0.0.1", hostile.worker.http_port)) as s:
            s.sendall(
                b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                % (rows * 256 + 100)
            )
            s.sendall(bytes(8 * MiB))  # then go away mid-body

    for _ in range(10):
        await asyncio.to_thread(abandoned)
    # every abandoned body's reservation was returned: a budget-sized request is admitted
    body, headers = _binary_input("FP32", [rows, 64], bytes(rows * 256))

    async def admitted() -> bool:
        status, _, payload = await post(hostile.worker, INFER, body, headers)
        assert status in (400, 503), payload[:200]
        return status == 400

    deadline = time.monotonic() + 30
    while not await admitted():
        assert time.monotonic() < deadline, "abandoned requests kept their memory reservation"
        await asyncio.sleep(0.1)
    await hostile.check()


async def test_health_answers_while_large_bodies_decode(hostile: Hostile) -> None:
    """Liveness keeps answering within the kubelet's 1 s probe timeout while large gzip bodies
    inflate and decode (the bench measures the latency itself: docs/reliability.md)."""
    import gzip

    packed = gzip.compress(_json_input("FP32", [1, 64], [0.5] * 64) + b" " * (60 * MiB), 1)
    headers = {"Content-Encoding": "gzip"}
    load = asyncio.gather(*(post(hostile.worker, INFER, packed, headers) for _ in range(2)))
    async with aiohttp.ClientSession() as session:
        while not load.done():
            async with session.get(
                hostile.worker.base + "/v2/health/live", timeout=aiohttp.ClientTimeout(total=1)
            ) as r:
                assert r.status == 200
            await asyncio.sleep(0.02)
    for status, _, payload in await load:
        _assert_client_error(status, payload, allowed=(200, 503))
    await hostile.check()

"""Every kind of bad input gets the right HTTP status / gRPC code and a message naming the problem,
and the worker goes on serving; raw HTTP details (compression, headers) checked byte by byte."""

from __future__ import annotations

import asyncio
import gzip
import io
import zlib
from typing import Any

import aiohttp
import grpc
import numpy as np
import orjson
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http.aio as aiohttpclient
from multidict import CIMultiDict
from tritonclient.grpc import service_pb2, service_pb2_grpc
from workerproc import Worker

X = np.arange(64, dtype=np.float32).reshape(1, 64) / 64


def infer_body(
    x: np.ndarray = X, datatype: str = "FP32", size: int | None = None
) -> tuple[bytes, int]:
    raw = x.tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "datatype": datatype,
                    "shape": list(x.shape),
                    "parameters": {"binary_data_size": len(raw) if size is None else size},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    return header + raw, len(header)


@pytest.fixture(scope="module")
def mlp(workers: dict[str, Worker]) -> Worker:
    return workers["mlp"]


async def post(
    worker: Worker, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, CIMultiDict[str], bytes]:
    """POST raw bytes; headers come back case-insensitive (uvicorn sends lower-case names)."""
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        data: Any = io.BytesIO(body) if len(body) > 1 << 19 else body
        async with session.post(worker.base + path, data=data, headers=headers or {}) as r:
            return r.status, r.headers.copy(), await r.read()


async def assert_still_serves(worker: Worker) -> None:
    body, n = infer_body()
    status, headers, payload = await post(
        worker, "/v2/models/mlp/infer", body, {"Inference-Header-Content-Length": str(n)}
    )
    assert status == 200, payload
    header_len = int(headers["Inference-Header-Content-Length"])
    doc = orjson.loads(payload[:header_len])
    assert doc["outputs"][0]["parameters"]["binary_data_size"] == 40


def _headers(n: int) -> dict[str, str]:
    return {"Inference-Header-Content-Length": str(n)}


def _bad_cases() -> list[tuple[str, str, bytes, dict[str, str], int, str]]:
    good, n = infer_body()
    wrong_shape, n_ws = infer_body(np.zeros((1, 32), np.float32))
    wrong_dtype, n_wd = infer_body(np.zeros((1, 64), np.float64), "FP64")
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "datatype": "FP32",
                    "shape": [1, 64],
                    "parameters": {"binary_data_size": 100},
                }
            ]
        }
    )
    wrong_size = header + bytes(100)
    big = bytes((1 << 20) + 1)
    return [
        ("unknown model", "/v2/models/nope/infer", good, _headers(n), 404, "unknown model 'nope'"),
        ("wrong shape", "/v2/models/mlp/infer", wrong_shape, _headers(n_ws), 400, "shape [1, 32]"),
        ("wrong dtype", "/v2/models/mlp/infer", wrong_dtype, _headers(n_wd), 400, "FP64"),
        (
            "wrong byte size",
            "/v2/models/mlp/infer",
            wrong_size,
            _headers(len(header)),
            400,
            "got 100 bytes of data, expected 256",
        ),
        ("malformed JSON", "/v2/models/mlp/infer", b'{"inputs": [', {}, 400, "malformed JSON"),
        (
            "header length too big",
            "/v2/models/mlp/infer",
            good,
            _headers(len(good) + 1),
            400,
            "Inference-Header-Content-Length",
        ),
        (
            "header length negative",
            "/v2/models/mlp/infer",
            good,
            _headers(-1),
            400,
            "Inference-Header-Content-Length -1",
        ),
        (
            "header length not a number",
            "/v2/models/mlp/infer",
            good,
            {"Inference-Header-Content-Length": "ten"},
            400,
            "not an integer",
        ),
        ("oversized body", "/v2/models/mlp/infer", big, {}, 413, "exceeds the limit"),
        (
            "unknown encoding",
            "/v2/models/mlp/infer",
            good,
            {**_headers(n), "Content-Encoding": "br"},
            415,
            "unsupported Content-Encoding 'br'",
        ),
        (
            "corrupt gzip",
            "/v2/models/mlp/infer",
            b"not gzip",
            {"Content-Encoding": "gzip"},
            400,
            "not valid gzip",
        ),
        (
            "gzip bomb",
            "/v2/models/mlp/infer",
            gzip.compress(bytes(4 << 20)),
            {"Content-Encoding": "gzip"},
            413,
            "inflates beyond",
        ),
        (
            "missing input",
            "/v2/models/mlp/infer",
            b'{"inputs": [{"name": "other", "datatype": "FP32", "shape": [1], "data": [1]}]}',
            {},
            400,
            "missing input 'features'",
        ),
        (
            "unknown output",
            "/v2/models/mlp/infer",
            orjson.dumps(
                {
                    "inputs": [
                        {
                            "name": "features",
                            "datatype": "FP32",
                            "shape": [1, 64],
                            "data": [0.0] * 64,
                        }
                    ],
                    "outputs": [{"name": "nope"}],
                }
            ),
            {},
            400,
            "unexpected inference output 'nope'",
        ),
        (
            "batch too large",
            "/v2/models/mlp/infer",
            orjson.dumps(
                {
                    "inputs": [
                        {
                            "name": "features",
                            "datatype": "FP32",
                            "shape": [65, 64],
                            "data": [0.0] * 65 * 64,
                        }
                    ]
                }
            ),
            {},
            400,
            "batch size 65",
        ),
        (
            "unknown datatype",
            "/v2/models/mlp/infer",
            orjson.dumps(
                {
                    "inputs": [
                        {
                            "name": "features",
                            "datatype": "FP8",
                            "shape": [1, 64],
                            "data": [0.0] * 64,
                        }
                    ]
                }
            ),
            {},
            400,
            "unknown datatype 'FP8'",
        ),
        ("unknown endpoint", "/v2/nothing", b"", {}, 404, "no such endpoint"),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
async def test_http_bad_input(
    mlp: Worker, case: tuple[str, str, bytes, dict[str, str], int, str]
) -> None:
    _, path, body, headers, status, message = case
    got_status, got_headers, payload = await post(mlp, path, body, headers)
    assert got_status == status, payload
    assert got_headers["Content-Type"] == "application/json"
    error = orjson.loads(payload)["error"]
    assert message in error
    await assert_still_serves(mlp)


def _stub(worker: Worker) -> tuple[grpc.Channel, Any]:
    channel = grpc.insecure_channel(
        worker.grpc, options=[("grpc.max_send_message_length", 2**31 - 1)]
    )
    return channel, service_pb2_grpc.GRPCInferenceServiceStub(channel)


def _request(
    model: str = "mlp",
    shape: tuple[int, ...] = (1, 64),
    datatype: str = "FP32",
    raw: bytes | None = None,
) -> Any:
    tensor = service_pb2.ModelInferRequest.InferInputTensor(
        name="features", datatype=datatype, shape=list(shape)
    )
    data = X.tobytes() if raw is None else raw
    return service_pb2.ModelInferRequest(
        model_name=model, inputs=[tensor], raw_input_contents=[data]
    )


@pytest.mark.parametrize(
    ("name", "request_kwargs", "code", "message"),
    [
        ("unknown model", {"model": "nope"}, grpc.StatusCode.NOT_FOUND, "unknown model 'nope'"),
        ("unknown version", {}, grpc.StatusCode.NOT_FOUND, "unknown version '7'"),
        (
            "wrong shape",
            {"shape": (1, 32), "raw": bytes(128)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "shape [1, 32]",
        ),
        (
            "wrong dtype",
            {"datatype": "FP64", "raw": bytes(512)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "datatype FP64",
        ),
        (
            "wrong byte size",
            {"raw": bytes(100)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "got 100 bytes of data, expected 256",
        ),
        (
            "unknown datatype",
            {"datatype": "FP8"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown datatype 'FP8'",
        ),
        (
            "oversized message",
            {"shape": (1, 1 << 20), "raw": bytes(4 << 20)},
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "larger than max",
        ),
    ],
)
def test_grpc_bad_input(
    mlp: Worker, name: str, request_kwargs: dict[str, Any], code: grpc.StatusCode, message: str
) -> None:
    channel, stub = _stub(mlp)
    with channel:
        request = _request(**request_kwargs)
        if name == "unknown version":
            request.model_version = "7"
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request)
        assert info.value.code() == code
        assert message in (info.value.details() or "")
        response = stub.ModelInfer(_request())
        assert len(response.raw_output_contents) == 2


def test_grpc_unknown_model_metadata(mlp: Worker) -> None:
    client = grpcclient.InferenceServerClient(mlp.grpc)
    try:
        with pytest.raises(Exception, match="unknown model 'nope'"):
            client.get_model_metadata("nope")
        assert client.is_server_ready()
    finally:
        client.close()


async def test_bad_requests_never_fail_good_ones_in_a_batch(mlp: Worker) -> None:
    good, n = infer_body()
    bad, n_bad = infer_body(np.zeros((1, 32), np.float32))
    calls = [
        post(
            mlp,
            "/v2/models/mlp/infer",
            bad if i % 4 == 0 else good,
            _headers(n_bad if i % 4 == 0 else n),
        )
        for i in range(32)
    ]
    results = await asyncio.gather(*calls)
    statuses = [status for status, _, _ in results]
    assert statuses == [400 if i % 4 == 0 else 200 for i in range(32)]


async def test_response_compression_only_on_infer(mlp: Worker) -> None:
    x = np.ones((40, 64), np.float32)
    body, n = infer_body(x)
    for accept, expected in [("gzip, deflate, br", "gzip"), ("deflate", "deflate"), ("br", None)]:
        status, headers, payload = await post(
            mlp, "/v2/models/mlp/infer", body, {**_headers(n), "Accept-Encoding": accept}
        )
        assert status == 200
        assert headers.get("Content-Encoding") == expected
        if expected == "gzip":
            payload = gzip.decompress(payload)
        elif expected == "deflate":
            payload = zlib.decompress(payload)
        header_len = int(headers["Inference-Header-Content-Length"])
        doc = orjson.loads(payload[:header_len])
        sizes = [o["parameters"]["binary_data_size"] for o in doc["outputs"]]
        assert len(payload) == header_len + sum(sizes)
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(mlp.base + "/v2", headers={"Accept-Encoding": "gzip"}) as r:
            assert r.status == 200
            assert "Content-Encoding" not in r.headers
            assert orjson.loads(await r.read())["name"] == "airt"
        # the sync client sends no Content-Type; an empty index POST body is fine
        async with session.post(mlp.base + "/v2/repository/index") as r:
            assert r.status == 200
            assert isinstance(orjson.loads(await r.read()), list)


async def test_json_only_response_has_no_header(mlp: Worker) -> None:
    body = orjson.dumps(
        {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 64], "data": X.tolist()}]}
    )
    status, headers, payload = await post(mlp, "/v2/models/mlp/infer", body)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert "Inference-Header-Content-Length" not in headers
    doc = orjson.loads(payload)
    assert [o["name"] for o in doc["outputs"]] == ["logits", "probabilities"]
    assert len(doc["outputs"][0]["data"]) == 10


async def test_unsupported_features_answer_clearly(mlp: Worker) -> None:
    client = aiohttpclient.InferenceServerClient(mlp.http)
    try:
        with pytest.raises(Exception, match="serves exactly one model"):
            await client.unload_model("mlp")
        with pytest.raises(Exception, match="not in this worker's repository"):
            await client.load_model("other")
        assert await client.get_system_shared_memory_status() == []
        assert await client.is_model_ready("mlp")
    finally:
        await client.close()

"""BYTES, FP16 and BF16 over HTTP (binary, and JSON where allowed) and gRPC, versus in-process."""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException
from workerproc import Worker

TEXT = np.array([[b"hello"], [b"Wide \xc3\xa9 world"], [b""]], dtype=np.object_)


def strings_expected(reference: Any) -> tuple[list[bytes], list[list[int]]]:
    upper, lengths = reference("strings.pt")([x.decode() for x in TEXT.reshape(-1)])
    return [s.encode() for s in upper], lengths.tolist()


def halves_inputs(rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(rows)
    half = rng.standard_normal((rows, 8)).astype(np.float16)
    brain = rng.standard_normal((rows, 8)).astype(ml_dtypes.bfloat16)
    return half, brain


def halves_expected(reference: Any, half: np.ndarray, brain: np.ndarray) -> dict[str, np.ndarray]:
    b = torch.from_numpy(brain.view(np.uint16).astype(np.int16)).view(torch.bfloat16)
    with torch.inference_mode():
        out = reference("halves.pt2")(torch.from_numpy(half), b)
    return {
        "half_out": out["half_out"].numpy(),
        "brain_out": out["brain_out"].float().numpy(),
        "total": out["total"].numpy(),
    }


@pytest.mark.parametrize("binary", [True, False])
def test_bytes_http(workers: dict[str, Worker], reference: Any, binary: bool) -> None:
    client = httpclient.InferenceServerClient(workers["strings"].http)
    try:
        meta = client.get_model_metadata("strings")
        assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}]
        inp = httpclient.InferInput("text", list(TEXT.shape), "BYTES")
        inp.set_data_from_numpy(TEXT, binary_data=binary)
        outs = [
            httpclient.InferRequestedOutput("upper", binary_data=binary),
            httpclient.InferRequestedOutput("length", binary_data=binary),
        ]
        result = client.infer("strings", [inp], outputs=outs)
        upper = result.as_numpy("upper")
        assert upper.shape == (3, 1)
        got = [x if isinstance(x, bytes) else x.encode() for x in upper.reshape(-1)]
        want_upper, want_lengths = strings_expected(reference)
        assert got == want_upper
        assert got[0] == b"HELLO"
        np.testing.assert_array_equal(result.as_numpy("length"), want_lengths)
        assert client.get_model_config("strings")["input"][0]["data_type"] == "TYPE_STRING"
    finally:
        client.close()


def test_bytes_grpc(workers: dict[str, Worker], reference: Any) -> None:
    client = grpcclient.InferenceServerClient(workers["strings"].grpc)
    try:
        inp = grpcclient.InferInput("text", list(TEXT.shape), "BYTES")
        inp.set_data_from_numpy(TEXT)
        result = client.infer("strings", [inp])
        want_upper, want_lengths = strings_expected(reference)
        assert result.as_numpy("upper").reshape(-1).tolist() == want_upper
        np.testing.assert_array_equal(result.as_numpy("length"), want_lengths)
    finally:
        client.close()


def test_fp16_bf16_http(workers: dict[str, Worker], reference: Any) -> None:
    client = httpclient.InferenceServerClient(workers["halves"].http)
    try:
        meta = client.get_model_metadata("halves")
        assert meta["platform"] == "torch_export"
        assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
            ("half", "FP16"),
            ("brain", "BF16"),
        ]
        assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [
            ("half_out", "FP16"),
            ("brain_out", "BF16"),
            ("total", "FP32"),
        ]
        half, brain = halves_inputs(3)
        a = httpclient.InferInput("half", [3, 8], "FP16")
        a.set_data_from_numpy(half)
        b = httpclient.InferInput("brain", [3, 8], "BF16")
        b.set_data_from_numpy(brain)
        # FP16/BF16 outputs are binary even when JSON is asked for; FP32 honours JSON
        outs = [
            httpclient.InferRequestedOutput("half_out", binary_data=False),
            httpclient.InferRequestedOutput("brain_out"),
            httpclient.InferRequestedOutput("total", binary_data=False),
        ]
        result = client.infer("halves", [a, b], outputs=outs)
        want = halves_expected(reference, half, brain)
        np.testing.assert_array_equal(result.as_numpy("half_out"), want["half_out"])
        np.testing.assert_array_equal(
            result.as_numpy("brain_out").astype(np.float32), want["brain_out"]
        )
        np.testing.assert_allclose(result.as_numpy("total"), want["total"], rtol=1e-6)
        assert "data" in result.get_output("total")
    finally:
        client.close()


def test_fp16_json_rejected(workers: dict[str, Worker]) -> None:
    import urllib.error
    import urllib.request

    body = (
        b'{"inputs":[{"name":"half","datatype":"FP16","shape":[1,8],"data":[1,2,3,4,5,6,7,8]},'
        b'{"name":"brain","datatype":"BF16","shape":[1,8],"parameters":{"binary_data_size":16}}]}'
    )
    req = urllib.request.Request(
        f"{workers['halves'].base}/v2/models/halves/infer",
        data=body + bytes(16),
        headers={"Inference-Header-Content-Length": str(len(body))},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=30)
    assert info.value.code == 400
    assert "FP16 data must be sent as binary" in info.value.read().decode()


def test_fp16_bf16_grpc(workers: dict[str, Worker], reference: Any) -> None:
    client = grpcclient.InferenceServerClient(workers["halves"].grpc)
    try:
        half, brain = halves_inputs(2)
        a = grpcclient.InferInput("half", [2, 8], "FP16")
        a.set_data_from_numpy(half)
        b = grpcclient.InferInput("brain", [2, 8], "BF16")
        b.set_data_from_numpy(brain)
        result = client.infer("halves", [a, b])
        want = halves_expected(reference, half, brain)
        np.testing.assert_array_equal(result.as_numpy("half_out"), want["half_out"])
        np.testing.assert_array_equal(
            result.as_numpy("brain_out").astype(np.float32), want["brain_out"]
        )
        # a dtype mismatch names both datatypes
        wrong = grpcclient.InferInput("half", [2, 8], "FP32")
        wrong.set_data_from_numpy(half.astype(np.float32))
        with pytest.raises(InferenceServerException) as info:
            client.infer("halves", [wrong, b])
        assert "FP32" in str(info.value) and "FP16" in str(info.value)
    finally:
        client.close()


async def test_bytes_and_halves_over_aio_clients(
    workers: dict[str, Worker], reference: Any
) -> None:
    import tritonclient.grpc.aio as aiogrpcclient
    import tritonclient.http.aio as aiohttpclient

    want_upper, want_lengths = strings_expected(reference)
    half, brain = halves_inputs(4)
    want = halves_expected(reference, half, brain)

    http_strings = aiohttpclient.InferenceServerClient(workers["strings"].http)
    http_halves = aiohttpclient.InferenceServerClient(workers["halves"].http)
    try:
        text = aiohttpclient.InferInput("text", list(TEXT.shape), "BYTES")
        text.set_data_from_numpy(TEXT, binary_data=False)
        result = await http_strings.infer("strings", [text])
        assert [bytes(x) for x in result.as_numpy("upper").reshape(-1)] == want_upper
        a = aiohttpclient.InferInput("half", [4, 8], "FP16")
        a.set_data_from_numpy(half)
        b = aiohttpclient.InferInput("brain", [4, 8], "BF16")
        b.set_data_from_numpy(brain)
        result = await http_halves.infer(
            "halves", [a, b], outputs=[aiohttpclient.InferRequestedOutput("brain_out")]
        )
        assert result.as_numpy("half_out") is None
        np.testing.assert_array_equal(
            result.as_numpy("brain_out").astype(np.float32), want["brain_out"]
        )
    finally:
        await http_strings.close()
        await http_halves.close()

    grpc_halves = aiogrpcclient.InferenceServerClient(workers["halves"].grpc)
    try:
        a = aiogrpcclient.InferInput("half", [4, 8], "FP16")
        a.set_data_from_numpy(half)
        b = aiogrpcclient.InferInput("brain", [4, 8], "BF16")
        b.set_data_from_numpy(brain)

        async def requests() -> Any:
            for i in range(3):
                yield {"model_name": "halves", "inputs": [a, b], "request_id": str(i)}

        seen = 0
        async for result, error in grpc_halves.stream_infer(requests()):
            assert error is None
            np.testing.assert_array_equal(result.as_numpy("half_out"), want["half_out"])
            np.testing.assert_allclose(result.as_numpy("total"), want["total"], rtol=1e-6)
            seen += 1
        assert seen == 3
    finally:
        await grpc_halves.close()

    grpc_strings = aiogrpcclient.InferenceServerClient(workers["strings"].grpc)
    try:
        text = aiogrpcclient.InferInput("text", list(TEXT.shape), "BYTES")
        text.set_data_from_numpy(TEXT)
        result = await grpc_strings.infer("strings", [text])
        assert result.as_numpy("upper").reshape(-1).tolist() == want_upper
        np.testing.assert_array_equal(result.as_numpy("length"), want_lengths)
    finally:
        await grpc_strings.close()

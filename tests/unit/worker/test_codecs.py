"""Wire codecs: v2 datatypes, BYTES framing, the HTTP binary extension and compression."""

from __future__ import annotations

import gzip
import zlib

import numpy as np
import orjson
import pytest

from airt_worker.datatypes import (
    decode_bytes_elements,
    encode_bytes_elements,
    from_json_data,
    from_raw,
    to_raw,
)
from airt_worker.errors import InvalidInputError, PayloadTooLargeError, UnsupportedError
from airt_worker.messages import InferResponse, Tensor
from airt_worker.rest_codec import (
    OutputChoice,
    UnsupportedEncodingError,
    choose_response_encoding,
    decode_request,
    decompress,
    encode_response,
)


def test_bytes_roundtrip() -> None:
    arr = np.array([b"a", b"", "é".encode(), b"\x00\xff"], dtype=np.object_)
    raw = encode_bytes_elements(arr)
    assert raw[:5] == b"\x01\x00\x00\x00a"
    assert decode_bytes_elements(raw, 4, "x").tolist() == arr.tolist()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x05\x00\x00\x00ab", "claims 5 bytes"),
        (b"\x01\x00", "need at least 4 bytes of length prefixes"),
        (b"\x01\x00\x00\x00ab", "trailing bytes"),
    ],
)
def test_bytes_framing_errors(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        decode_bytes_elements(raw, 1, "input 'x'")


def test_from_raw_checks_size_and_is_a_view() -> None:
    data = np.arange(6, dtype=np.float32)
    arr = from_raw(data.tobytes(), "FP32", (2, 3), "input 'x'")
    assert arr.shape == (2, 3) and arr.dtype == np.float32
    with pytest.raises(InvalidInputError, match="got 24 bytes of data, expected 16"):
        from_raw(data.tobytes(), "FP32", (2, 2), "input 'x'")


def test_bf16_travels_as_raw_bits() -> None:
    bits = np.array([0x3F80, 0xC000], dtype=np.uint16)  # 1.0, -2.0
    arr = from_raw(bits.tobytes(), "BF16", (2,), "x")
    assert to_raw(arr, "BF16") == bits.tobytes()


def test_json_data_nested_and_flat() -> None:
    assert from_json_data([[1, 2], [3, 4]], "INT32", (2, 2), "x").tolist() == [[1, 2], [3, 4]]
    assert from_json_data([1, 2, 3, 4], "INT32", (2, 2), "x").shape == (2, 2)
    assert from_json_data(["ab", "c"], "BYTES", (2,), "x").tolist() == [b"ab", b"c"]
    with pytest.raises(InvalidInputError, match="got 3 data elements, expected 4"):
        from_json_data([1, 2, 3], "INT32", (2, 2), "x")
    with pytest.raises(InvalidInputError, match="must be sent as binary"):
        from_json_data([1.0], "FP16", (1,), "x")
    with pytest.raises(InvalidInputError, match="INT32 data must be JSON int values, got str"):
        from_json_data(["a"], "INT32", (1,), "x")


def framed(inputs: list[dict[str, object]], blobs: list[bytes]) -> tuple[bytes, int]:
    header = orjson.dumps({"inputs": inputs, "outputs": [{"name": "y", "parameters": {}}]})
    return header + b"".join(blobs), len(header)


def test_decode_binary_inputs_in_order() -> None:
    a = np.arange(4, dtype=np.float32)
    b = np.array([1, 2], dtype=np.int64)
    body, n = framed(
        [
            {
                "name": "a",
                "datatype": "FP32",
                "shape": [2, 2],
                "parameters": {"binary_data_size": 16},
            },
            {
                "name": "b",
                "datatype": "INT64",
                "shape": [2],
                "parameters": {"binary_data_size": 16},
            },
        ],
        [a.tobytes(), b.tobytes()],
    )
    request, choice = decode_request(body, n, "m", "")
    assert [t.name for t in request.inputs] == ["a", "b"]
    np.testing.assert_array_equal(request.inputs[0].data, a.reshape(2, 2))
    np.testing.assert_array_equal(request.inputs[1].data, b)
    assert request.outputs == ["y"]
    assert choice.per_output == {"y": None}


@pytest.mark.parametrize(
    ("header_length", "extra", "message"),
    [
        (-1, b"", "outside the body length"),
        (10**6, b"", "outside the body length"),
        (None, b"", "malformed JSON"),
        ("n", b"junk", "follow the JSON header"),
    ],
)
def test_decode_framing_errors(header_length: object, extra: bytes, message: str) -> None:
    body, n = framed(
        [{"name": "a", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}],
        [bytes(4)],
    )
    length = n if header_length == "n" else header_length
    with pytest.raises(InvalidInputError, match=message):
        decode_request(body + extra, length, "m", "")  # type: ignore[arg-type]


def test_classification_is_unsupported() -> None:
    body = orjson.dumps(
        {
            "inputs": [{"name": "a", "datatype": "INT32", "shape": [1], "data": [1]}],
            "outputs": [{"name": "y", "parameters": {"classification": 3}}],
        }
    )
    with pytest.raises(UnsupportedError, match="classification"):
        decode_request(body, None, "m", "")


def test_encode_mixed_binary_and_json() -> None:
    y = np.arange(3, dtype=np.float32)
    z = np.array([b"hi"], dtype=np.object_)
    h = np.ones(2, dtype=np.float16)
    response = InferResponse(
        "m",
        "1",
        "id-1",
        [Tensor("y", "FP32", (3,), y), Tensor("z", "BYTES", (1,), z), Tensor("h", "FP16", (2,), h)],
    )
    body, n = encode_response(response, OutputChoice({"y": True, "z": False, "h": False}, False))
    assert n is not None
    doc = orjson.loads(body[:n])
    assert doc["id"] == "id-1"
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": 12}
    assert doc["outputs"][1]["data"] == ["hi"]
    assert doc["outputs"][2]["parameters"] == {"binary_data_size": 4}  # FP16 is binary-only
    assert body[n:] == y.tobytes() + h.tobytes()
    json_only, none = encode_response(
        InferResponse("m", "1", "", [Tensor("y", "FP32", (3,), y)]), OutputChoice({}, False)
    )
    assert none is None and orjson.loads(json_only)["outputs"][0]["data"] == [0.0, 1.0, 2.0]


def test_decompress() -> None:
    data = b"x" * 1000
    assert decompress(gzip.compress(data), "gzip", 2000) == data
    assert decompress(zlib.compress(data), "deflate", 2000) == data
    assert decompress(data, "identity", 2000) == data
    with pytest.raises(UnsupportedEncodingError, match="'br'"):
        decompress(data, "br", 2000)
    with pytest.raises(PayloadTooLargeError, match="inflates beyond"):
        decompress(gzip.compress(data), "gzip", 100)
    with pytest.raises(InvalidInputError, match="not valid gzip"):
        decompress(b"nope", "gzip", 100)


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        ("gzip, deflate, br", "gzip"),
        ("deflate", "deflate"),
        ("br", None),
        ("gzip;q=0, deflate", "deflate"),
        ("", None),
    ],
)
def test_response_encoding_choice(header: str, chosen: str | None) -> None:
    assert choose_response_encoding(header) == chosen


def test_model_config_fits_the_grpc_message() -> None:
    from google.protobuf import json_format
    from tritonclient.grpc import model_config_pb2

    from airt_worker.modelspec import ModelSpec, TensorSpec

    spec = ModelSpec(
        name="m",
        version="3",
        platform="pytorch_libtorch",
        max_batch_size=8,
        inputs=(TensorSpec("x", "BYTES", (1,)),),
        outputs=(TensorSpec("y", "FP32", ()),),
        preferred_batch_sizes=(4, 8),
        max_queue_delay_microseconds=100,
        max_queue_size=16,
        default_timeout_microseconds=5000,
        instance_count=2,
        device="cuda",
    )
    config = json_format.ParseDict(spec.config(), model_config_pb2.ModelConfig())
    assert config.input[0].data_type == model_config_pb2.TYPE_STRING
    assert list(config.output[0].dims) == [1]  # never empty
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 16
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert list(config.version_policy.specific.versions) == [3]
    assert spec.metadata()["inputs"][0]["shape"] == [-1, 1]

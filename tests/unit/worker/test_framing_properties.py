"""Property tests of the binary framing and BYTES encoding: any bytes decode or are refused.

For arbitrary byte strings and declared shapes, the decoders either return the tensor those bytes
encode (re-encoding gives the same bytes back) or raise a client error (400 / 413), never another
exception and never an allocation sized by the declared shape alone.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airt_worker.datatypes import (
    ELEMENT_SIZES,
    decode_bytes_elements,
    encode_bytes_elements,
    from_raw,
    to_raw,
)
from airt_worker.errors import InvalidInputError, PayloadTooLargeError
from airt_worker.rest_codec import DecodeLimits, decode_request, decompress

pytestmark = pytest.mark.unit

CLIENT_ERRORS = (InvalidInputError, PayloadTooLargeError)
LIMIT = 1 << 20
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

shapes = st.lists(
    st.one_of(st.integers(0, 8), st.integers(2**20, 2**62)), min_size=0, max_size=4
).map(tuple)


@FAST
@given(raw=st.binary(max_size=256), count=st.one_of(st.integers(0, 64), st.integers(2**20, 2**63)))
def test_bytes_framing_decodes_exactly_or_refuses(raw: bytes, count: int) -> None:
    try:
        arr = decode_bytes_elements(raw, count, "x", LIMIT)
    except CLIENT_ERRORS:
        return
    assert arr.shape == (count,)
    assert encode_bytes_elements(arr) == raw


@FAST
@given(items=st.lists(st.binary(max_size=40), max_size=20))
def test_bytes_encoding_round_trips(items: list[bytes]) -> None:
    arr = np.empty(len(items), dtype=np.object_)
    arr[:] = items
    raw = encode_bytes_elements(arr)
    assert decode_bytes_elements(raw, len(items), "x", LIMIT).tolist() == items


@FAST
@given(
    raw=st.binary(max_size=128),
    datatype=st.sampled_from(sorted([*ELEMENT_SIZES, "BYTES"])),
    shape=shapes,
)
def test_raw_tensor_decodes_exactly_or_refuses(
    raw: bytes, datatype: str, shape: tuple[int]
) -> None:
    try:
        arr = from_raw(raw, datatype, shape, "x", LIMIT)
    except CLIENT_ERRORS:
        return
    assert arr.shape == shape
    assert to_raw(arr, datatype) == raw


@FAST
@given(
    blob=st.binary(max_size=96),
    datatype=st.sampled_from(["FP32", "INT64", "UINT8", "BYTES", "BOOL"]),
    shape=shapes,
    size=st.integers(-2, 120),
    header_extra=st.integers(-3, 3),
)
def test_binary_request_decodes_exactly_or_refuses(
    blob: bytes, datatype: str, shape: tuple[int], size: int, header_extra: int
) -> None:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": datatype,
                    "shape": list(shape),
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    )
    body = header + blob
    limits = DecodeLimits(max_tensor_bytes=LIMIT, max_json_bytes=LIMIT)
    try:
        request, _ = decode_request(body, len(header) + header_extra, "m", "", limits)
    except CLIENT_ERRORS:
        return
    (tensor,) = request.inputs
    assert header_extra == 0 and size == len(blob)
    assert tensor.shape == shape
    assert to_raw(tensor.data, datatype) == blob


@FAST
@given(body=st.binary(max_size=200), encoding=st.sampled_from(["gzip", "deflate"]))
def test_decompress_refuses_anything_but_one_whole_stream(body: bytes, encoding: str) -> None:
    try:
        out = decompress(body, encoding, LIMIT)
    except CLIENT_ERRORS:
        return
    import zlib

    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    d = zlib.decompressobj(wbits)
    assert d.decompress(body) == out and d.eof and not d.unused_data


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_trailing_data_after_a_compressed_body_is_refused(encoding: str) -> None:
    import gzip
    import zlib

    packed = gzip.compress(b"{}") if encoding == "gzip" else zlib.compress(b"{}")
    assert decompress(packed, encoding, LIMIT) == b"{}"
    with pytest.raises(InvalidInputError, match="trailing data"):
        decompress(packed + b"garbage", encoding, LIMIT)


@pytest.mark.parametrize(
    ("datatype", "data"),
    [("FP32", ["1.5"]), ("FP32", [True]), ("INT32", [1.5]), ("BOOL", [1]), ("INT64", [None])],
)
def test_json_numbers_only(datatype: str, data: list[object]) -> None:
    header = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": datatype, "shape": [1], "data": data}]}
    )
    with pytest.raises(InvalidInputError, match=f"{datatype} data must be JSON"):
        decode_request(header, None, "m", "")


@pytest.mark.parametrize("datatype", sorted([*ELEMENT_SIZES, "BYTES"]))
def test_huge_declared_shapes_are_client_errors(datatype: str) -> None:
    for shape in ([200_000_000], [2**31, 2**31], [2**33], [0, 2**62, 2**62]):
        _refused(shape, datatype)


def _refused(shape: list[int], datatype: str) -> None:
    binary = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": datatype,
                    "shape": shape,
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    )
    with pytest.raises(CLIENT_ERRORS):
        decode_request(binary + b"\0" * 8, len(binary), "m", "")
    if datatype not in ("FP16", "BF16"):
        as_json = orjson.dumps(
            {"inputs": [{"name": "x", "datatype": datatype, "shape": shape, "data": [1]}]}
        )
        with pytest.raises(CLIENT_ERRORS):
            decode_request(as_json, None, "m", "")

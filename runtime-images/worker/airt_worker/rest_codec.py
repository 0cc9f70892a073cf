"""HTTP wire format of v2 inference: JSON plus the binary tensor extension, and compression.

Called by the REST adapter (`rest`) for /infer bodies only. Decoding reads the JSON header
(`Inference-Header-Content-Length` bytes, or the whole body) and slices binary inputs from what
follows, in `inputs[]` order, without copying (numpy views of the body). Encoding writes the JSON
header with orjson and appends binary outputs in `outputs[]` order.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from airt_worker.datatypes import BINARY_ONLY, check_datatype, from_json_data, from_raw, to_raw
from airt_worker.errors import (
    InferenceError,
    InvalidInputError,
    PayloadTooLargeError,
    UnsupportedError,
)
from airt_worker.messages import InferRequest, InferResponse, Tensor


class UnsupportedEncodingError(InferenceError):
    """A Content-Encoding other than gzip, deflate or identity (HTTP 415)."""

    kind = "UNSUPPORTED_ENCODING"


@dataclass(slots=True)
class OutputChoice:
    """How the client wants each output: binary or JSON (None = follow the request default)."""

    per_output: dict[str, bool | None]
    default_binary: bool


def decompress(body: bytes | bytearray, encoding: str, limit: int) -> bytes | bytearray:
    """Undo `Content-Encoding` (gzip, or deflate = zlib) without inflating beyond `limit` bytes."""
    enc = encoding.strip().lower()
    if enc in ("", "identity"):
        return body
    if enc == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif enc == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise UnsupportedEncodingError(
            f"unsupported Content-Encoding {encoding!r}: send gzip, deflate or an uncompressed body"
        )
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as e:
        raise InvalidInputError(f"request body is not valid {enc} data: {e}") from None
    if len(out) > limit:
        raise PayloadTooLargeError(
            f"request body inflates beyond the limit of {limit} bytes (max_request_bytes)"
        )
    if not d.eof:
        raise InvalidInputError(f"request body is truncated {enc} data")
    if d.unused_data:
        raise InvalidInputError(
            f"request body has {len(d.unused_data)} bytes of trailing data after the {enc} stream"
        )
    return out


def choose_response_encoding(accept_encoding: str) -> str | None:
    """gzip or deflate if the client accepts one (never br), else None."""
    if not accept_encoding:
        return None
    accepted: set[str] = set()
    for part in accept_encoding.split(","):
        token, _, params = part.strip().partition(";")
        q = params.strip()
        if q.startswith("q=") and q[2:].strip() in {"0", "0.0", "0.00", "0.000"}:
            continue
        accepted.add(token.strip().lower())
    for enc in ("gzip", "deflate"):
        if enc in accepted:
            return enc
    return None


def compress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=1, mtime=0)
    return zlib.compress(body, 1)


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds checked while decoding, before anything is allocated from the client's numbers."""

    #: Largest decoded size of one request's tensors (bytes); larger is 413.
    max_tensor_bytes: int | None = None
    #: Largest JSON part of a request (bytes); parsed JSON costs ~16x its text, so it has its
    #: own, smaller limit; larger is 413.
    max_json_bytes: int | None = None


def decode_request(
    body: bytes | bytearray,
    header_length: int | None,
    model: str,
    version: str,
    limits: DecodeLimits = DecodeLimits(),
) -> tuple[InferRequest, OutputChoice]:
    """Parse an /infer body into a request plus the client's output format choice."""
    n = len(body)
    header: bytes | bytearray | memoryview
    if header_length is None:
        header, binary = body, memoryview(b"")
    else:
        if header_length < 0 or header_length > n:
            raise InvalidInputError(
                f"Inference-Header-Content-Length {header_length} is outside the body length "
                f"[0, {n}]"
            )
        view = memoryview(body)
        header, binary = view[:header_length], view[header_length:]
    if limits.max_json_bytes is not None and len(header) > limits.max_json_bytes:
        raise PayloadTooLargeError(
            f"the JSON part of the request is {len(header)} bytes, more than the limit of "
            f"{limits.max_json_bytes} bytes (max_json_bytes): send large tensors as binary data"
        )
    try:
        doc = orjson.loads(header)
    except orjson.JSONDecodeError as e:
        raise InvalidInputError(f"malformed JSON in the inference request: {e}") from None
    if not isinstance(doc, dict):
        raise InvalidInputError("the inference request must be a JSON object")
    params = _params(doc.get("parameters"), "request")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInputError("the inference request needs a non-empty 'inputs' list")
    inputs: list[Tensor] = []
    offset = 0
    for i, item in enumerate(raw_inputs):
        if not isinstance(item, dict):
            raise InvalidInputError(f"inputs[{i}] must be an object")
        name = item.get("name")
        if not isinstance(name, str):
            raise InvalidInputError(f"inputs[{i}] needs a string 'name'")
        where = f"input {name!r}"
        datatype = item.get("datatype")
        if not isinstance(datatype, str):
            raise InvalidInputError(f"{where} needs a string 'datatype'")
        check_datatype(datatype, where)
        shape_list = item.get("shape")
        if not isinstance(shape_list, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in shape_list
        ):
            raise InvalidInputError(f"{where} needs 'shape', a list of integers")
        shape = tuple(shape_list)
        if any(d < 0 for d in shape):
            raise InvalidInputError(f"{where}: shape {shape_list} has a negative dimension")
        iparams = _params(item.get("parameters"), where)
        size = iparams.get("binary_data_size")
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise InvalidInputError(f"{where}: binary_data_size must be a non-negative integer")
            if offset + size > len(binary):
                raise InvalidInputError(
                    f"{where}: binary_data_size {size} at offset {offset} runs past the "
                    f"{len(binary)} bytes of binary data after the JSON header"
                )
            data = from_raw(
                binary[offset : offset + size], datatype, shape, where, limits.max_tensor_bytes
            )
            offset += size
        elif "data" in item:
            data = from_json_data(item["data"], datatype, shape, where)
        else:
            raise InvalidInputError(f"{where} has neither 'data' nor parameters.binary_data_size")
        inputs.append(Tensor(name, datatype, shape, data))
    if offset != len(binary):
        raise InvalidInputError(
            f"{len(binary)} bytes of binary data follow the JSON header but the inputs' "
            f"binary_data_size add up to {offset}"
        )
    default_binary = params.get("binary_data_output", False)
    if not isinstance(default_binary, bool):
        raise InvalidInputError("parameter 'binary_data_output' must be a boolean")
    per_output: dict[str, bool | None] = {}
    names: list[str] | None = None
    raw_outputs = doc.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidInputError("'outputs' must be a list")
        names = []
        for i, item in enumerate(raw_outputs):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InvalidInputError(f"outputs[{i}] needs a string 'name'")
            oparams = _params(item.get("parameters"), f"output {item['name']!r}")
            if oparams.get("classification"):
                raise UnsupportedError("the classification extension is not supported")
            b = oparams.get("binary_data")
            if b is not None and not isinstance(b, bool):
                raise InvalidInputError(f"output {item['name']!r}: binary_data must be a boolean")
            names.append(item["name"])
            per_output[item["name"]] = b
    rid = doc.get("id", "")
    if not isinstance(rid, str):
        raise InvalidInputError("'id' must be a string")
    request = InferRequest(model, version, rid, inputs, names, params)
    return request, OutputChoice(per_output, default_binary)


def _params(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{where}: 'parameters' must be an object")
    return value


def encode_response(resp: InferResponse, choice: OutputChoice) -> tuple[bytes, int | None]:
    """The response body and, when binary outputs follow the JSON, the JSON's length."""
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for t in resp.outputs:
        binary = choice.per_output.get(t.name)
        if binary is None:
            binary = choice.default_binary
        if t.datatype in BINARY_ONLY:
            binary = True
        entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        if binary:
            raw = to_raw(t.data, t.datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        elif t.datatype == "BYTES":
            entry["data"] = [
                x.decode("utf-8", errors="replace") if isinstance(x, bytes) else str(x)
                for x in t.data.reshape(-1)
            ]
        else:
            entry["data"] = np.ascontiguousarray(t.data).reshape(-1)
        outputs.append(entry)
    doc: dict[str, Any] = {"model_name": resp.model_name, "model_version": resp.model_version}
    if resp.id:
        doc["id"] = resp.id
    doc["outputs"] = outputs
    header = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)

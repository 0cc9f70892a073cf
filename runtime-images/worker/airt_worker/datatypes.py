"""The v2 datatypes and their codecs: element sizes, numpy and torch types, BYTES framing.

Used by the REST and gRPC codecs (decode raw bytes and JSON data into numpy arrays, encode model
outputs back) and by the model runner (numpy <-> torch). numpy has no bfloat16, so BF16 tensors
travel through the worker as `uint16` arrays holding the raw bits, and the runner reinterprets
them as `torch.bfloat16` without a copy.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch

from airt_worker.errors import InvalidInputError, PayloadTooLargeError

Array = npt.NDArray[Any]

#: Bytes one BYTES element costs in memory beyond its payload: the object array's pointer (8)
#: plus a `bytes` object's header (33), rounded up for the allocator. Used to bound a request's
#: decoded size before any array is allocated.
BYTES_ELEMENT_OVERHEAD: Final = 48
#: Length prefix of one BYTES element in the binary framing.
BYTES_PREFIX: Final = 4

#: v2 datatype -> numpy dtype used inside the worker (BF16 as raw uint16 bits, BYTES as objects).
NUMPY_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BF16": np.dtype("<u2"),
    "BYTES": np.dtype(np.object_),
}

#: Element size in bytes of every fixed-size datatype (BYTES is variable).
ELEMENT_SIZES: Final[dict[str, int]] = {
    name: dt.itemsize for name, dt in NUMPY_DTYPES.items() if name != "BYTES"
}

TORCH_DTYPES: Final[dict[str, torch.dtype]] = {
    "BOOL": torch.bool,
    "UINT8": torch.uint8,
    "UINT16": torch.uint16,
    "UINT32": torch.uint32,
    "UINT64": torch.uint64,
    "INT8": torch.int8,
    "INT16": torch.int16,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "FP16": torch.float16,
    "FP32": torch.float32,
    "FP64": torch.float64,
    "BF16": torch.bfloat16,
}
FROM_TORCH: Final[dict[torch.dtype, str]] = {v: k for k, v in TORCH_DTYPES.items()}

#: Datatypes that travel only as binary data (JSON has no faithful representation).
BINARY_ONLY: Final[frozenset[str]] = frozenset({"FP16", "BF16"})

_U32 = struct.Struct("<I")


def check_datatype(datatype: str, where: str) -> None:
    """Raise InvalidInputError unless `datatype` is a v2 datatype name."""
    if datatype not in NUMPY_DTYPES:
        raise InvalidInputError(
            f"{where}: unknown datatype {datatype!r}; expected one of {', '.join(NUMPY_DTYPES)}"
        )


#: numpy refuses arrays whose nominal size reaches this, even with a zero dimension.
_MAX_NOMINAL = 2**62


def element_count(shape: tuple[int, ...] | list[int], where: str) -> int:
    """Number of elements of `shape`; negative or absurdly large dimensions are client errors.

    Python integers never overflow, so this costs nothing whatever the client declares; the
    nominal size (zero dimensions taken as 1) is bounded so numpy can reshape a view to it.
    """
    n = 1
    nominal = 1
    for d in shape:
        if d < 0:
            raise InvalidInputError(f"{where}: shape {list(shape)} has a negative dimension")
        n *= d
        nominal *= d or 1  # d >= 0 here; `or`, not max(): runs per dimension of every tensor
    if nominal * 8 >= _MAX_NOMINAL:
        raise InvalidInputError(f"{where}: shape {list(shape)} is too large for any tensor")
    return n


def check_decoded_size(nbytes: int, limit: int | None, where: str) -> None:
    """Refuse a tensor whose decoded form would exceed the per-request limit (HTTP 413)."""
    if limit is not None and nbytes > limit:
        raise PayloadTooLargeError(
            f"{where}: decoded, the data would take {nbytes} bytes, more than the per-request "
            f"limit of {limit} bytes (max_request_bytes)"
        )


def decode_bytes_elements(
    raw: bytes | memoryview, count: int, where: str, limit: int | None = None
) -> Array:
    """Split `<uint32 LE length><bytes>` framing into an object array of `count` bytes objects.

    The declared `count` is checked against the bytes present (every element needs at least its
    length prefix) and its decoded size against `limit` before the array is allocated, so a
    client's shape alone never makes the worker allocate.
    """
    buf = memoryview(raw)
    end = len(buf)
    if count * BYTES_PREFIX > end:
        raise InvalidInputError(
            f"{where}: {count} BYTES elements need at least {count * BYTES_PREFIX} bytes of "
            f"length prefixes but only {end} bytes of data were sent"
        )
    check_decoded_size(count * BYTES_ELEMENT_OVERHEAD + end, limit, where)
    out = np.empty(count, dtype=np.object_)
    pos = 0
    for i in range(count):
        if pos + 4 > end:
            raise InvalidInputError(
                f"{where}: BYTES data ends after {i} of {count} elements (truncated length prefix)"
            )
        (n,) = _U32.unpack_from(buf, pos)
        pos += 4
        if pos + n > end:
            raise InvalidInputError(
                f"{where}: BYTES element {i} claims {n} bytes but only {end - pos} remain"
            )
        out[i] = bytes(buf[pos : pos + n])
        pos += n
    if pos != end:
        raise InvalidInputError(
            f"{where}: BYTES data has {end - pos} trailing bytes after {count} elements"
        )
    return out


def encode_bytes_elements(arr: Array) -> bytes:
    """Frame every element of an object array as `<uint32 LE length><bytes>` in row-major order."""
    parts: list[bytes] = []
    for item in arr.reshape(-1):
        b = item if isinstance(item, bytes) else str(item).encode()
        parts.append(_U32.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def from_raw(
    raw: bytes | memoryview,
    datatype: str,
    shape: tuple[int, ...],
    where: str,
    limit: int | None = None,
) -> Array:
    """Decode one tensor's raw little-endian bytes into a numpy array of `shape`, checking size.

    Fixed-size tensors are views of `raw` (no copy) and only after their size matched; BYTES
    tensors are bounded by `decode_bytes_elements`.
    """
    count = element_count(shape, where)
    if datatype == "BYTES":
        return decode_bytes_elements(raw, count, where, limit).reshape(shape)
    dtype = NUMPY_DTYPES[datatype]
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InvalidInputError(
            f"{where}: got {len(raw)} bytes of data, expected {expected} "
            f"for shape {list(shape)} of {datatype}"
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def to_raw(arr: Array, datatype: str) -> bytes:
    """Encode a numpy array as the v2 raw little-endian, row-major bytes."""
    if datatype == "BYTES":
        return encode_bytes_elements(arr)
    return np.ascontiguousarray(arr).tobytes()


#: The JSON value types each datatype accepts: numbers only for numeric tensors (a string such
#: as "1.5" is refused, not parsed), booleans only for BOOL, integers only for integer types.
_JSON_TYPES: Final[dict[str, frozenset[type]]] = {
    "BOOL": frozenset({bool}),
    "FP32": frozenset({int, float}),
    "FP64": frozenset({int, float}),
    **{
        name: frozenset({int})
        for name in ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
    },
}


def from_json_data(data: Any, datatype: str, shape: tuple[int, ...], where: str) -> Array:
    """Decode JSON `data` (flat or nested, row-major) into a numpy array of `shape`.

    The element count comes from the data (whose size the JSON limit bounds) and must equal the
    shape's, so a declared shape never drives an allocation; element types are checked strictly.
    """
    if datatype in BINARY_ONLY:
        raise InvalidInputError(f"{where}: {datatype} data must be sent as binary, not JSON")
    count = element_count(shape, where)
    items = _flatten(data)
    if len(items) != count:
        raise InvalidInputError(
            f"{where}: got {len(items)} data elements, expected {count} for shape {list(shape)}"
        )
    if datatype == "BYTES":
        flat = np.empty(count, dtype=np.object_)
        flat[:] = [x.encode() if isinstance(x, str) else _as_bytes(x, where) for x in items]
        return flat.reshape(shape)
    allowed = _JSON_TYPES[datatype]
    found = set(map(type, items))
    if not found <= allowed:
        bad = sorted(t.__name__ for t in found - allowed)
        want = " or ".join(sorted(t.__name__ for t in allowed))
        raise InvalidInputError(
            f"{where}: {datatype} data must be JSON {want} values, got {', '.join(bad)}"
        )
    try:
        flat = np.asarray(items, dtype=NUMPY_DTYPES[datatype])
    except (ValueError, TypeError, OverflowError) as e:
        raise InvalidInputError(f"{where}: data is not a valid {datatype} array: {e}") from None
    return flat.reshape(shape)


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if list not in set(map(type, data)):  # already flat: the common case, checked in C
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _as_bytes(x: Any, where: str) -> bytes:
    if isinstance(x, bytes):
        return x
    raise InvalidInputError(
        f"{where}: BYTES elements in JSON must be strings, got {type(x).__name__}"
    )


def to_json_data(arr: Array, datatype: str) -> list[Any]:
    """Flatten an output array into a JSON-serialisable row-major list."""
    if datatype in BINARY_ONLY:
        raise InvalidInputError(f"{datatype} outputs can only be returned as binary data")
    if datatype == "BYTES":
        return [
            x.decode("utf-8", errors="replace") if isinstance(x, bytes) else str(x)
            for x in arr.reshape(-1)
        ]
    flat: list[Any] = arr.reshape(-1).tolist()
    return flat

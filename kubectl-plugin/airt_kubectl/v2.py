"""One Open Inference Protocol (KServe v2) request from `--input name=json-array` options, and
its answer as text.

Pure; called by `kubectl airt infer`, whose edge does the HTTP (kube.py's port-forward and
urllib). The datatype and shape come from the model's metadata (`GET /v2/models/<name>`) when
it has the input, so `features=[0.1, 0.2]` is sent as FP32 of the served shape; `name:INT64=...`
sets the datatype by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DATATYPES = frozenset(
    {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
     "FP16", "FP32", "FP64", "BYTES"}
)  # fmt: skip


class InputError(ValueError):
    """An --input option that cannot become a v2 tensor; the message says which and why."""


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str | None  # None: from the metadata, else guessed from the values
    shape: tuple[int, ...]
    data: list[Any]


def _flatten(value: Any, where: str) -> tuple[tuple[int, ...], list[Any]]:
    """Row-major data and the shape of a nested JSON array (which must be rectangular)."""
    if not isinstance(value, list):
        return (), [value]
    if not value:
        return (0,), []
    parts = [_flatten(v, where) for v in value]
    inner = parts[0][0]
    if any(p[0] != inner for p in parts):
        raise InputError(f"{where}: the array is not rectangular")
    return (len(value), *inner), [x for p in parts for x in p[1]]


def parse_input(option: str) -> Tensor:
    """`name=[...]` or `name:DATATYPE=[...]` → a tensor."""
    head, sep, body = option.partition("=")
    if not sep or not head:
        raise InputError(f"--input {option!r}: write name=json-array, e.g. x=[[1.0, 2.0]]")
    name, _, datatype = head.partition(":")
    if datatype and datatype.upper() not in DATATYPES:
        raise InputError(f"--input {name}: unknown datatype {datatype}")
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise InputError(f"--input {name}: not JSON: {exc}") from None
    shape, data = _flatten(value, f"--input {name}")
    return Tensor(name, datatype.upper() or None, shape, data)


def _guess(data: Sequence[Any]) -> str:
    if all(isinstance(x, bool) for x in data):
        return "BOOL"
    if all(isinstance(x, int) and not isinstance(x, bool) for x in data):
        return "INT64"
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in data):
        return "FP32"
    return "BYTES"


def _served_shape(t: Tensor, meta: Mapping[str, Any] | None) -> tuple[int, ...]:
    """The user's shape, with a batch dimension of 1 added when the model's metadata has one
    more dimension than given and the data fills it (`[0.1, 0.2]` for a `[-1, 2]` input)."""
    dims = [int(d) for d in (meta or {}).get("shape") or []]
    if dims and len(dims) == len(t.shape) + 1 and dims[0] == -1:
        return (1, *t.shape)
    return t.shape


def request_body(tensors: Sequence[Tensor], metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The JSON body of `POST /v2/models/<name>/infer`."""
    served = {str(i.get("name")): i for i in (metadata or {}).get("inputs") or []}
    inputs = []
    for t in tensors:
        meta = served.get(t.name)
        if served and meta is None:
            raise InputError(
                f"the model has no input {t.name!r}; it has {', '.join(sorted(served))}"
            )
        datatype = t.datatype or (
            str(meta["datatype"]) if meta and meta.get("datatype") else _guess(t.data)
        )
        inputs.append(
            {
                "name": t.name,
                "datatype": datatype,
                "shape": list(_served_shape(t, meta)),
                "data": t.data,
            }
        )
    return {"inputs": inputs}


def outputs_text(response: Mapping[str, Any], limit: int = 32) -> str:
    """One line per output: name, datatype, shape and the first `limit` values."""
    lines = []
    for out in response.get("outputs") or []:
        data = list(out.get("data") or [])
        shown = ", ".join(json.dumps(x) for x in data[:limit])
        more = f", ... ({len(data)} values)" if len(data) > limit else ""
        lines.append(f"{out.get('name')} {out.get('datatype')} {out.get('shape')}: [{shown}{more}]")
    return "\n".join(lines) or "(no outputs)"

"""What a model file says about its interface: input names, datatypes and shapes.

Called by the model runner while loading. TorchScript records only `forward`'s argument names and
types (Tensor or List[str]); torch.export programs record names, dtypes and symbolic shapes of
inputs and outputs. `merge_inputs` completes that with the configured inputs (settings), which win.
"""

from __future__ import annotations

from typing import Any

from airt_worker.datatypes import FROM_TORCH
from airt_worker.errors import ModelLoadError
from airt_worker.modelspec import TensorSpec
from airt_worker.settings import TensorConfig, WorkerSettings

#: (datatype, dims without batch) as far as known
Described = tuple[str | None, tuple[int, ...] | None]


def script_inputs(module: Any) -> tuple[list[str], list[bool]]:
    """forward()'s argument names, and for each whether it is a List[str] (BYTES) argument."""
    try:
        args = module.forward.schema.arguments[1:]
    except AttributeError as e:
        raise ModelLoadError(f"the TorchScript module has no usable forward(): {e}") from e
    names = [a.name for a in args]
    kinds = [str(a.type) for a in args]
    for n, k in zip(names, kinds, strict=True):
        if k not in {"Tensor", "List[str]"}:
            raise ModelLoadError(
                f"forward argument {n!r} has type {k}; supported: Tensor, List[str]"
            )
    return names, [k == "List[str]" for k in kinds]


def export_signature(
    program: Any, s: WorkerSettings
) -> tuple[
    list[str],
    dict[str, Described],
    list[tuple[str | int, str | None, tuple[int, ...] | None]],
]:
    """Input names with (datatype, dims), and per output (key, datatype, dims), from a program.

    Output keys are the dict keys when the program returns a dict, else positions.
    """
    mb = s.batching.max_batch_size
    user_inputs = list(program.graph_signature.user_inputs)
    vals = {n.name: n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder"}
    inputs: dict[str, Described] = {}
    for name in user_inputs:
        inputs[name] = _describe(vals.get(name), mb, f"input {name!r}")
        if mb > 0:
            _check_batch_dim(vals.get(name), program.range_constraints, mb, f"input {name!r}")
    out_node = next(n for n in program.graph.nodes if n.op == "output")
    out_vals = [a.meta.get("val") if hasattr(a, "meta") else None for a in out_node.args[0]]
    out_spec = program.call_spec.out_spec
    keys: list[str | int] = list(range(len(out_vals)))
    if out_spec is not None and out_spec.type is dict:
        keys = [str(k) for k in out_spec.context]
    outputs = [(k, *_describe(v, mb, f"output {k!r}")) for k, v in zip(keys, out_vals, strict=True)]
    return user_inputs, inputs, outputs


def _check_batch_dim(val: Any, ranges: Any, mb: int, where: str) -> None:
    """The program must accept every batch size up to max_batch_size on its first dimension."""
    if val is None or not getattr(val, "shape", None):
        return
    first = val.shape[0]
    hint = (
        "export it with a dynamic batch dimension (torch.export.Dim) or set "
        "batching.max_batch_size 0"
    )
    if isinstance(first, int):
        if first != 1 or mb != 1:
            raise ModelLoadError(
                f"{where}: the program's first dimension is fixed at {first} but "
                f"max_batch_size is {mb}; {hint}"
            )
        return
    bounds = ranges.get(getattr(getattr(first, "node", None), "expr", None))
    if bounds is not None:
        try:
            upper = float(bounds.upper)
        except (TypeError, ValueError):
            return
        if upper < mb:
            raise ModelLoadError(
                f"{where}: the program accepts batches of at most {int(upper)} rows but "
                f"max_batch_size is {mb}; export with a larger Dim max or lower max_batch_size"
            )


def _describe(val: Any, mb: int, where: str) -> tuple[str | None, tuple[int, ...] | None]:
    if val is None or not hasattr(val, "shape"):
        return None, None
    dt = FROM_TORCH.get(val.dtype)
    if dt is None:
        raise ModelLoadError(f"{where}: unsupported dtype {val.dtype}")
    dims = [d if isinstance(d, int) else -1 for d in val.shape]
    if mb > 0:
        if not dims:
            raise ModelLoadError(f"{where}: a scalar has no batch dimension; set max_batch_size 0")
        dims = dims[1:]
    return dt, tuple(dims)


def merge_inputs(
    names: list[str],
    inferred: dict[str, Described],
    configured: list[TensorConfig],
    fmt: str,
) -> tuple[list[TensorSpec], list[int]]:
    """Specs in configured order (else forward's), and each one's position in forward()."""
    if configured and len(configured) != len(names):
        raise ModelLoadError(
            f"inputs: {len(configured)} configured but forward() takes {len(names)} "
            f"({', '.join(names)})"
        )
    by_name = all(c.name in names for c in configured) if configured else True
    result: list[TensorSpec] = []
    entries = configured if configured else [TensorConfig(name=n) for n in names]
    for i, cfg in enumerate(entries):
        source = cfg.name if by_name else names[i]
        dt, dims = inferred.get(source, (None, None))
        datatype = cfg.datatype or dt
        shape = tuple(cfg.dims) if cfg.dims is not None else dims
        if datatype == "BYTES" and shape is None:
            shape = (1,)
        if datatype is None or shape is None:
            raise ModelLoadError(
                f"input {cfg.name!r}: {fmt} files do not record input dtypes and shapes; "
                "set inputs[].datatype and dims (without the batch dimension)"
            )
        result.append(TensorSpec(cfg.name, datatype, shape))
    positions = [names.index(t.name) for t in result] if by_name else list(range(len(result)))
    return result, positions

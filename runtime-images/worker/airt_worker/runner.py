"""The model runner: loads a TorchScript or torch.export file and runs batches of requests on it.

Built by the composition root (`server.build`), which hands `ModelRunner.execute` to the dynamic
batcher as the callable each model instance runs in its own thread. Loading verifies the sha256
first and never unpickles: TorchScript goes through `torch.jit.load`, torch.export programs through
`torch.export.load`. The interface (`ModelSpec`) is inferred from the file where it can be (input
names from `forward`'s signature or the export signature; export dtypes and shapes from the
program; TorchScript outputs from a probe run) and completed by the configured inputs/outputs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from airt_worker.batching import Pending
from airt_worker.datatypes import FROM_TORCH, NUMPY_DTYPES, TORCH_DTYPES, Array
from airt_worker.errors import DigestMismatchError, InferenceError, ModelError, ModelLoadError
from airt_worker.introspect import export_signature, merge_inputs, script_inputs
from airt_worker.modelspec import ModelSpec, TensorSpec
from airt_worker.settings import TensorConfig, WorkerSettings

log = logging.getLogger(__name__)

# Inputs decoded with np.frombuffer are read-only views of the request body; the model only
# reads them (inference_mode), so torch's warning about non-writable arrays is noise.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

_CAST = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_PLATFORMS = {"torchscript": "pytorch_libtorch", "torch-export": "torch_export"}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class ModelRunner:
    """One loaded model plus the knowledge of how to feed it batches."""

    def __init__(self, settings: WorkerSettings) -> None:
        self._settings = settings
        path = settings.model_path
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist")
        if settings.model_sha256 is not None:
            actual = sha256_of(path)
            if actual != settings.model_sha256:
                raise DigestMismatchError(
                    f"sha256 mismatch for {path}: expected {settings.model_sha256}, got {actual}"
                )
        if settings.device == "cuda":
            if not torch.cuda.is_available():
                raise ModelLoadError("device is cuda but torch sees no CUDA device")
            self.device = torch.device("cuda", 0)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        self._threads = settings.effective_threads()
        torch.set_num_threads(self._threads)
        # OpenMP keeps the thread count per OS thread: each instance thread sets it on first use
        self._thread_ready = threading.local()
        self._cast = _CAST.get(settings.dtype)
        self._streams: list[Any] = []
        self._list_inputs: list[bool] = []
        self._forward_pos: list[int] = []
        self._output_keys: list[str | int] = []
        self._output_is_list: list[bool] = []
        self.module: Any = None
        self.spec: ModelSpec = self._load(path)
        if self.device.type == "cuda":
            self._streams = [
                torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
                for _ in range(settings.instance_count)
            ]

    # ----------------------------------------------------------------------- loading and spec

    def _load(self, path: Path) -> ModelSpec:
        s = self._settings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            if s.format == "torchscript":
                module = torch.jit.load(  # type: ignore[no-untyped-call]
                    str(path), map_location=self.device
                )
                module.eval()
                names, list_inputs = script_inputs(module)
                inferred_in: dict[str, tuple[str | None, tuple[int, ...] | None]] = {
                    n: (("BYTES", None) if is_list else (None, None))
                    for n, is_list in zip(names, list_inputs, strict=True)
                }
                inferred_out: list[tuple[str | int, str | None, tuple[int, ...] | None]] = []
            else:
                # torch.export.load falls back to torch.load(weights_only=False) — a full
                # unpickle — for some archive entries; never for a model file we serve.
                os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
                try:
                    program = torch.export.load(str(path))
                except Exception as e:
                    raise ModelLoadError(f"cannot load torch.export program {path}: {e}") from e
                names, inferred_in, inferred_out = export_signature(program, s)
                list_inputs = [False] * len(names)
                module = program.module().to(self.device)
        if self._cast is not None:
            module = module.to(self._cast)
        self.module = module
        inputs, positions = merge_inputs(names, inferred_in, s.inputs, s.format)
        self._forward_pos = positions
        self._list_inputs = [list_inputs[p] for p in positions]
        mb = s.batching.max_batch_size
        spec = ModelSpec(
            name=s.model_name,
            version=s.model_version,
            platform=_PLATFORMS[s.format],
            max_batch_size=mb,
            inputs=tuple(inputs),
            outputs=(),
            preferred_batch_sizes=tuple(s.batching.preferred_batch_sizes),
            max_queue_delay_microseconds=s.batching.max_queue_delay_microseconds,
            max_queue_size=s.batching.max_queue_size,
            default_timeout_microseconds=s.batching.default_timeout_microseconds,
            instance_count=s.instance_count,
            device=self.device.type,
        )
        self.spec = spec
        outputs = self._infer_outputs(spec, inferred_out)
        return ModelSpec(**{**_fields(spec), "outputs": tuple(outputs)})

    def _infer_outputs(
        self,
        spec: ModelSpec,
        inferred: list[tuple[str | int, str | None, tuple[int, ...] | None]],
    ) -> list[TensorSpec]:
        configured = self._settings.outputs
        complete = bool(configured) and all(
            c.datatype is not None and c.dims is not None for c in configured
        )
        if complete and not inferred:  # fully configured: no probe run needed
            inferred = [(c.name, c.datatype, tuple(c.dims or ())) for c in configured]
        elif not inferred or any(dt is None or dims is None for _, dt, dims in inferred):
            inferred = self._probe_outputs(spec, configured)
        if configured and len(configured) != len(inferred):
            raise ModelLoadError(
                f"outputs: {len(configured)} configured but the model returns {len(inferred)}"
            )
        result: list[TensorSpec] = []
        keys: list[str | int] = []
        for i, (key, dt, dims) in enumerate(inferred):
            cfg = configured[i] if configured else None
            if cfg is not None and isinstance(key, str):  # dict outputs: match by name if possible
                match = [c for c in configured if c.name == key]
                cfg = match[0] if match else cfg
            name = (
                cfg.name if cfg is not None else (key if isinstance(key, str) else f"output__{i}")
            )
            datatype = (cfg.datatype if cfg is not None else None) or dt
            out_dims = cfg.dims if cfg is not None and cfg.dims is not None else dims
            if datatype is None or out_dims is None:
                raise ModelLoadError(f"output {name!r}: set its datatype and dims in outputs[]")
            result.append(TensorSpec(name, datatype, tuple(out_dims)))
            keys.append(key)
        self._output_keys = keys
        self._output_is_list = [t.datatype == "BYTES" for t in result]
        return result

    def _probe_outputs(
        self, spec: ModelSpec, configured: list[TensorConfig]
    ) -> list[tuple[str | int, str | None, tuple[int, ...] | None]]:
        """Run the model on zeros twice (variable dims 1, then 2) to learn its outputs."""
        mb = spec.max_batch_size
        runs = []
        for size in (1, 2) if mb != 1 else (1,):
            rows = min(size, mb) if mb > 0 else 0
            try:
                runs.append(self._raw_outputs(self.sample_inputs(spec, rows, size)))
            except Exception as e:
                raise ModelLoadError(
                    f"could not infer the outputs by a probe run on zeros ({short(e)}); "
                    "set outputs[].name, datatype and dims"
                ) from e
        first = runs[0]
        result: list[tuple[str | int, str | None, tuple[int, ...] | None]] = []
        for key, value in first:
            if isinstance(value, list):
                result.append((key, "BYTES", (1,) if mb > 0 else (-1,)))
                continue
            shapes = [dict(r)[key].shape for r in runs]
            dims = [d if all(s[j] == d for s in shapes) else -1 for j, d in enumerate(shapes[0])]
            if mb > 0:
                dims = dims[1:]
            dt = FROM_TORCH.get(value.dtype)
            if dt is None:
                raise ModelLoadError(f"output {key!r} has unsupported dtype {value.dtype}")
            result.append((key, dt, tuple(dims)))
        return result

    def sample_inputs(self, spec: ModelSpec, rows: int, var: int = 1) -> list[Array]:
        """Zero inputs in spec order for warm-up and probes (`rows` 0 = no batch dimension)."""
        arrays: list[Array] = []
        for t in spec.inputs:
            shape = ([rows] if spec.max_batch_size > 0 else []) + [
                var if d == -1 else d for d in t.dims
            ]
            if t.datatype == "BYTES":
                arr = np.full(shape, b"0", dtype=np.object_)
            else:
                arr = np.zeros(shape, dtype=NUMPY_DTYPES[t.datatype])
            arrays.append(arr)
        return arrays

    # ----------------------------------------------------------------------------- execution

    def _to_model(self, arrays: Sequence[Array]) -> list[Any]:
        args: list[Any] = [None] * len(arrays)
        for i, arr in enumerate(arrays):
            if self._list_inputs[i]:
                args[i] = [
                    x.decode("utf-8", errors="replace") if isinstance(x, bytes) else str(x)
                    for x in arr.reshape(-1)
                ]
                continue
            if arr.dtype == np.object_:
                raise ModelError(f"input {self.spec.inputs[i].name!r}: BYTES needs List[str]")
            t = torch.from_numpy(arr)
            if self.spec.inputs[i].datatype == "BF16":
                t = t.view(torch.bfloat16)
            if self.device.type != "cpu":
                t = t.to(self.device, non_blocking=True)
            if self._cast is not None and t.is_floating_point():
                t = t.to(self._cast)
            args[i] = t
        # forward takes its arguments in its own order; spec order may differ (config order)
        ordered: list[Any] = [None] * len(args)
        for i, a in enumerate(args):
            ordered[self._forward_pos[i]] = a
        return ordered

    def _raw_outputs(self, arrays: Sequence[Array]) -> list[tuple[str | int, Any]]:
        args = self._to_model(arrays)
        with torch.inference_mode():
            out = self.module(*args)
        return _normalise(out)

    def _from_model(self, out: list[tuple[str | int, Any]]) -> list[Array]:
        values = dict(out)
        arrays: list[Array] = []
        for i, (key, spec) in enumerate(zip(self._output_keys, self.spec.outputs, strict=True)):
            v = values.get(key)
            if v is None and i < len(out):  # configured names differ from the model's: by position
                v = out[i][1]
            if v is None:
                raise ModelError(f"the model did not return output {key!r}")
            if isinstance(v, list):
                arrays.append(np.array([s.encode() for s in v], dtype=np.object_))
                continue
            want = TORCH_DTYPES[spec.datatype]
            t = v.detach()
            if t.dtype != want:
                t = t.to(want)
            t = t.cpu()
            if spec.datatype == "BF16":
                arrays.append(t.view(torch.int16).numpy().view(np.uint16))
            else:
                arrays.append(t.numpy())
        return arrays

    def execute(self, instance: int, batch: list[Pending]) -> None:
        """Run one batch on model instance `instance` (called in that instance's thread)."""
        if not getattr(self._thread_ready, "done", False):
            torch.set_num_threads(self._threads)
            self._thread_ready.done = True
        try:
            if self._streams:
                with torch.cuda.stream(self._streams[instance]):
                    self._run(batch)
            else:
                self._run(batch)
        except InferenceError as e:
            _fail(batch, e)
        except Exception as e:
            # The model raised: the whole batch fails, once. Running its requests again one by
            # one would cost N more model runs, and a model that hangs or crashes on bad input
            # would do so N times; what one request can be blamed for is refused before
            # batching, by validation.
            if len(batch) > 1:
                log.warning("a batch of %d requests failed: %s", len(batch), short(e))
            _fail(batch, ModelError(f"model execution failed: {short(e)}"))

    def _run(self, batch: list[Pending]) -> None:
        t0 = time.perf_counter_ns()
        n_inputs = len(self.spec.inputs)
        if len(batch) == 1:
            arrays = batch[0].inputs
        else:
            arrays = [np.concatenate([p.inputs[i] for p in batch]) for i in range(n_inputs)]
        args = self._to_model(arrays)
        t1 = time.perf_counter_ns()
        with torch.inference_mode():
            out = self.module(*args)
        if self._streams:
            torch.cuda.current_stream().synchronize()
        t2 = time.perf_counter_ns()
        outputs = self._from_model(_normalise(out))
        self._split(batch, outputs)
        t3 = time.perf_counter_ns()
        for p in batch:
            p.compute_input_ns = t1 - t0
            p.compute_infer_ns = t2 - t1
            p.compute_output_ns = t3 - t2

    def _split(self, batch: list[Pending], outputs: list[Array]) -> None:
        mb = self.spec.max_batch_size
        if len(batch) == 1:
            batch[0].outputs = [
                _shape_output(o, s, batch[0].rows, mb)
                for o, s in zip(outputs, self.spec.outputs, strict=True)
            ]
            return
        total = sum(p.rows for p in batch)
        per_row: list[Array] = []
        for o, s in zip(outputs, self.spec.outputs, strict=True):
            o = _shape_output(o, s, total, mb)
            if o.ndim == 0 or o.shape[0] != total:
                raise ModelError(
                    f"output {s.name!r} has shape {list(o.shape)}, not {total} batch rows"
                )
            per_row.append(o)
        start = 0
        for p in batch:
            end = start + p.rows
            p.outputs = [o[start:end] for o in per_row]
            start = end

    def warmup(self) -> None:
        """Run the model at warm-up size and, when batching, at max batch size; raise on failure."""
        spec = self.spec
        mb = spec.max_batch_size
        sizes = [min(self._settings.warmup_batch_size, mb) if mb else 0]
        if mb > 1 and mb not in sizes:
            sizes.append(mb)
        for rows in sizes:
            item = Pending(self.sample_inputs(spec, rows), max(rows, 1), None, 0)
            self.execute(0, [item])
            if item.error is not None:
                raise ModelLoadError(f"warm-up inference with {rows} rows failed: {item.error}")


def short(e: BaseException) -> str:
    """The last line of an exception's text (TorchScript errors carry whole tracebacks)."""
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(e).__name__


def _fail(batch: list[Pending], e: InferenceError) -> None:
    for p in batch:
        p.error = e


def _shape_output(o: Array, spec: TensorSpec, rows: int, mb: int) -> Array:
    """List[str] outputs come back flat; give them their batch shape."""
    if o.dtype == np.object_ and mb > 0 and o.ndim == 1 and o.shape[0] != rows:
        return o.reshape((rows, -1))
    if o.dtype == np.object_ and mb > 0 and o.ndim == 1 and spec.dims:
        return o.reshape((rows, *[d if d > 0 else -1 for d in spec.dims]))
    return o


def _normalise(out: Any) -> list[tuple[str | int, Any]]:
    if isinstance(out, torch.Tensor):
        return [(0, out)]
    if isinstance(out, Mapping):
        return [(str(k), v) for k, v in out.items()]
    if isinstance(out, list) and all(isinstance(x, str) for x in out):
        return [(0, out)]
    if isinstance(out, (tuple, list)):
        return list(enumerate(out))
    raise ModelError(f"the model returned {type(out).__name__}, not tensors")


def _fields(spec: ModelSpec) -> dict[str, Any]:
    return {f: getattr(spec, f) for f in spec.__slots__}

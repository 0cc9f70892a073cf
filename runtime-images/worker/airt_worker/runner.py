"""The model runner: loads a TorchScript or torch.export file and runs batches of arrays on it.

Built by the composition root (`server._load`, in a worker thread), which hands the runner to the
dynamic batcher as its `BatchRunner`: the batcher calls `ModelRunner.run(instance, arrays, rows)`
in each model instance's own thread with one already concatenated batch and splits the outputs
itself, so the runner knows nothing about requests. Loading verifies the sha256 first and never
unpickles: TorchScript goes through `torch.jit.load`, torch.export programs through
`torch.export.load`. The interface (`ModelSpec`) is inferred from the file where it can be (input
names from `forward`'s signature or the export signature; export dtypes and shapes from the
program; TorchScript outputs from a probe run) and completed by the configured inputs/outputs.

On CUDA the instances are spread over `device_count` GPUs (`place_instances`): instance i runs on
GPU i % n, every GPU in use holds its own copy of the model, and every instance its own stream.
"""

from __future__ import annotations

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

from airt_worker.datatypes import FROM_TORCH, NUMPY_DTYPES, TORCH_DTYPES, Array
from airt_worker.digest import file_sha256
from airt_worker.errors import DigestMismatchError, ModelError, ModelLoadError
from airt_worker.execution import RunResult
from airt_worker.introspect import export_signature, merge_inputs, script_inputs
from airt_worker.modelspec import ModelSpec, TensorSpec
from airt_worker.settings import TensorConfig, WorkerSettings

log = logging.getLogger(__name__)

# Inputs decoded with np.frombuffer are read-only views of the request body; the model only
# reads them (inference_mode), so torch's warning about non-writable arrays is noise.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

_CAST = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_PLATFORMS = {"torchscript": "pytorch_libtorch", "torch-export": "torch_export"}


def place_instances(
    instance_count: int, visible_devices: int, device_count: int | None
) -> list[int]:
    """The GPU (torch index) of each model instance: instance i on GPU i % n, where n is
    `device_count` (None: all `visible_devices`). Raises ModelLoadError when n is more than the
    GPUs visible, since a replica silently serving on fewer GPUs than configured wastes the rest.
    """
    n = visible_devices if device_count is None else device_count
    if visible_devices < 1:
        raise ModelLoadError("device is cuda but torch sees no CUDA device")
    if n > visible_devices:
        raise ModelLoadError(
            f"device_count is {n} but torch sees only {visible_devices} GPU(s) "
            "(CUDA_VISIBLE_DEVICES); request as many GPUs as device_count, or lower it"
        )
    return [i % n for i in range(instance_count)]


class ModelRunner:
    """One loaded model plus the knowledge of how to feed it batches."""

    def __init__(self, settings: WorkerSettings) -> None:
        self._settings = settings
        path = settings.model_path
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist")
        if settings.model_sha256 is not None:
            actual = file_sha256(path)
            if actual != settings.model_sha256:
                raise DigestMismatchError(
                    f"sha256 mismatch for {path}: expected {settings.model_sha256}, got {actual}"
                )
        if settings.device == "cuda":
            if not torch.cuda.is_available():
                raise ModelLoadError("device is cuda but torch sees no CUDA device")
            placement = place_instances(
                settings.instance_count, torch.cuda.device_count(), settings.device_count
            )
            n = settings.device_count or torch.cuda.device_count()
            if settings.instance_count < n:
                log.warning(
                    "instance_count %d is below the %d GPUs to use: only %d of them get a "
                    "model copy; instances, not GPUs, bound the parallelism",
                    settings.instance_count,
                    n,
                    settings.instance_count,
                )
            #: the torch device of each model instance
            self.placement = [torch.device("cuda", i) for i in placement]
        else:
            self.placement = [torch.device("cpu")] * settings.instance_count
        #: the devices in use, each holding one model copy, in first-use order
        self.devices: list[torch.device] = list(dict.fromkeys(self.placement))
        self.device = self.devices[0]  # where the interface is probed and the first copy lives
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
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
        #: one model copy per device in use; instance i runs `modules[placement[i]]`
        self.modules: dict[torch.device, Any] = {self.device: self.module}
        for device in self.devices[1:]:
            self.modules[device] = self._load_module(path, device)
        if self.device.type == "cuda":
            self._streams = [
                torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
                for device in self.placement
            ]

    # ----------------------------------------------------------------------- loading and spec

    def _load_module(self, path: Path, device: torch.device) -> Any:
        """One copy of the model on `device`, cast to the configured dtype (the first copy of a
        torch.export program is made by `_load`, which also reads its signature)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            if self._settings.format == "torchscript":
                module = torch.jit.load(  # type: ignore[no-untyped-call]
                    str(path), map_location=device
                )
                module.eval()
            else:
                os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
                try:
                    module = torch.export.load(str(path)).module().to(device)
                except Exception as e:
                    raise ModelLoadError(f"cannot load torch.export program {path}: {e}") from e
        if self._cast is not None:
            module = module.to(self._cast)
        return module

    def _load(self, path: Path) -> ModelSpec:
        s = self._settings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            if s.format == "torchscript":
                module = self._load_module(path, self.device)
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

    def _to_model(self, arrays: Sequence[Array], device: torch.device) -> list[Any]:
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
            if device.type != "cpu":
                t = t.to(device, non_blocking=True)
            if self._cast is not None and t.is_floating_point():
                t = t.to(self._cast)
            args[i] = t
        # forward takes its arguments in its own order; spec order may differ (config order)
        ordered: list[Any] = [None] * len(args)
        for i, a in enumerate(args):
            ordered[self._forward_pos[i]] = a
        return ordered

    def _raw_outputs(self, arrays: Sequence[Array]) -> list[tuple[str | int, Any]]:
        args = self._to_model(arrays, self.device)
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

    def run(self, instance: int, inputs: Sequence[Array], rows: int) -> RunResult:
        """Run one batch (`inputs` in spec order, `rows` batch rows) on model instance
        `instance`, in that instance's thread; raises ModelError to fail the whole batch."""
        if not getattr(self._thread_ready, "done", False):
            torch.set_num_threads(self._threads)
            self._thread_ready.done = True
        device = self.placement[instance]
        try:
            if self._streams:
                stream = self._streams[instance]
                with torch.cuda.device(device), torch.cuda.stream(stream):
                    return self._run(self.modules[device], device, inputs, rows, stream)
            return self._run(self.modules[device], device, inputs, rows, None)
        except ModelError:
            raise
        except Exception as e:
            # the model raised: the batcher fails the whole batch with this, once
            raise ModelError(f"model execution failed: {short(e)}") from e

    def _run(
        self, module: Any, device: torch.device, inputs: Sequence[Array], rows: int, stream: Any
    ) -> RunResult:
        t0 = time.perf_counter_ns()
        args = self._to_model(inputs, device)
        t1 = time.perf_counter_ns()
        with torch.inference_mode():
            out = module(*args)
        if stream is not None:
            stream.synchronize()
        t2 = time.perf_counter_ns()
        mb = self.spec.max_batch_size
        outputs = [
            _shape_output(o, s, rows, mb)
            for o, s in zip(self._from_model(_normalise(out)), self.spec.outputs, strict=True)
        ]
        t3 = time.perf_counter_ns()
        return RunResult(outputs, t1 - t0, t2 - t1, t3 - t2)

    def warmup(self) -> None:
        """Run the model at warm-up size and, when batching, at max batch size, on every model
        copy (the first instance on each device); raise ModelLoadError on failure."""
        spec = self.spec
        mb = spec.max_batch_size
        sizes = [min(self._settings.warmup_batch_size, mb) if mb else 0]
        if mb > 1 and mb not in sizes:
            sizes.append(mb)
        firsts = [self.placement.index(d) for d in self.devices]
        for rows in sizes:
            for instance in firsts:
                try:
                    self.run(instance, self.sample_inputs(spec, rows), max(rows, 1))
                except ModelError as e:
                    where = f" on {self.placement[instance]}" if len(firsts) > 1 else ""
                    raise ModelLoadError(
                        f"warm-up inference with {rows} rows failed{where}: {e}"
                    ) from e


def short(e: BaseException) -> str:
    """The last line of an exception's text (TorchScript errors carry whole tracebacks)."""
    lines = [line for line in str(e).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(e).__name__


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

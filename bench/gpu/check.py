"""The GPU check itself: the worker's conformance on a device, its throughput against the same
model called in-process, and several model instances on one GPU.

Started by bench/gpu/run.py once the kit is installed (never by hand: it expects the kit's
folder and bench/ on PYTHONPATH). Steps, each recorded even when an earlier one failed (the
workers are started as soon as the models exist, and start up while step 1 runs):

1. environment: interpreter, torch, the device, and where each worker dependency came from;
2. models: the example models built with examples/build_models.py (the same builder the tests
   and `make dev` use), on this machine;
3. workers: five `python -m airt_worker` processes with `--device` as given — mlp.pt2
   (torch.export, FP32), halves.pt (TorchScript, FP16 and BF16), halves.pt2 (torch.export, FP16
   and BF16), cnn.pt (TorchScript, FP32, as bench/worker.py serves it) and cnn.pt again with two
   model instances (only two torch.export workers: loading a program costs a CPU-bound start-up);
4. conformance: per worker, readiness and metadata, HTTP binary, HTTP JSON, gRPC, and dynamic
   batching under concurrent requests, each answer held against the same model file run
   in-process on the same device; each check PASS or FAIL;
5. throughput: the MLP (per-request overhead dominates) and the CNN (compute dominates) at 1, 8,
   32 and 128 concurrent clients over HTTP and gRPC, against the in-process limit at exactly the
   batch sizes the worker formed (bench/limit.py's `limit_for`); p50/p99 latency, and GPU
   utilisation and memory read with the worker's own NVML reader (airt_worker.metrics.Nvml);
6. multi-instance: the CNN with two instances (each on its own CUDA stream) against one;
7. multi-GPU (cuda with two GPUs or more, else skipped and said why): the CNN with as many
   instances as GPUs and `--device-count` = the GPU count; the worker's load line must name every
   GPU (each holds a model copy) and its answers must pass the conformance checks.

Writes gpu-check.json and gpu-check.txt into --out. The time budget is shared out as the steps
go: start-up and conformance take what they take, the measurements divide what is left, so a
small budget (the CPU test gives 45 s) shortens every point rather than dropping any.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONCURRENCY = (1, 8, 32, 128)
PROTOCOLS = ("http", "grpc")
PASS, FAIL = "PASS", "FAIL"


def log(msg: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Clock:
    """The budget: seconds left, and shares of what is left for the steps still to come."""

    def __init__(self, budget_s: float) -> None:
        self.start = time.monotonic()
        self.deadline = self.start + budget_s

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start


# ------------------------------------------------------------------------------- the models


@dataclass(frozen=True)
class ModelCase:
    """One served model: its file, interface and how to make inputs for `rows` rows."""

    model: str  # served name
    file: str
    config: str
    fmt: str
    inputs: tuple[tuple[str, str, tuple[int, ...]], ...]  # name, datatype, dims

    def arrays(self, rows: int, seed: int) -> list[np.ndarray]:
        import ml_dtypes

        rng = np.random.default_rng(seed)
        out = []
        for _, datatype, dims in self.inputs:
            data = rng.standard_normal((rows, *dims))
            if datatype == "FP16":
                out.append(data.astype(np.float16))
            elif datatype == "BF16":
                out.append(data.astype(ml_dtypes.bfloat16))
            else:
                out.append(data.astype(np.float32))
        return out


MLP = ModelCase("mlp", "mlp.pt2", "mlp.yaml", "torch-export", (("features", "FP32", (64,)),))
CNN = ModelCase("cnn", "cnn.pt", "cnn.yaml", "torchscript", (("image", "FP32", (3, 32, 32)),))
HALVES_TS = ModelCase(
    "halves",
    "halves.pt",
    "halves.yaml",
    "torchscript",
    (("half", "FP16", (8,)), ("brain", "BF16", (8,))),
)
HALVES_EXPORT = ModelCase("halves", "halves.pt2", "halves.yaml", "torch-export", HALVES_TS.inputs)


@dataclass
class Worker:
    """One worker process."""

    key: str
    case: ModelCase
    instances: int
    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log_path: Path
    started: float
    ready_s: float | None = None
    argv: list[str] = field(default_factory=list)
    cores: set[int] | None = None
    restarts: int = 0

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]

    def restart_on_new_ports(self) -> None:
        """Start again after another process took one of the ports meanwhile."""
        self.restarts += 1
        self.http_port, self.grpc_port = free_port(), free_port()
        ports = {"--http-port": self.http_port, "--grpc-port": self.grpc_port,
                 "--metrics-port": free_port()}  # fmt: skip
        self.argv = [
            str(ports[self.argv[i - 1]]) if i and self.argv[i - 1] in ports else a
            for i, a in enumerate(self.argv)
        ]
        cores = self.cores
        with self.log_path.open("ab") as out:
            out.write(b"\n[gpu-check] a port was taken: restarting on new ports\n")
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None,
            )
        self.started = time.monotonic()

    def batch_stats(self) -> dict[int, tuple[int, int]]:
        """Rows per batch -> (batches, ns in the model), since the worker started."""
        url = f"http://{self.http}/v2/models/{self.case.model}/stats"
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.loads(r.read())
        out: dict[int, tuple[int, int]] = {}
        for stat in doc["model_stats"][0].get("batch_stats", []):
            infer = stat["compute_infer"]
            out[int(stat["batch_size"])] = (int(infer["count"]), int(infer["ns"]))
        return out

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return None


def free_port() -> int:
    """A port from below the kernel's ephemeral range that nothing is bound to. Not port 0's
    answer: ephemeral ports also go to outgoing connections, which took them before the worker
    bound them on a busy machine. (The same rule as airt_dev.ports, which this standalone script
    cannot import on the GPU machine.)"""
    try:
        ceiling = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ceiling = 32_768
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(10_000, ceiling)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


BIND_ERRORS = ("address already in use", "Errno 98", "Error in bind")


def server_cores() -> set[int] | None:
    """Cores for the workers on a machine big enough to split (the load generator gets the
    rest); None on a small one, where pinning five starting workers to one core would only
    serialise their start-up."""
    cores = sorted(os.sched_getaffinity(0))
    return set(cores[: len(cores) // 2]) if len(cores) >= 4 else None


def spawn(
    key: str,
    case: ModelCase,
    models: Path,
    logs: Path,
    device: str,
    instances: int,
    threads: int,
    extra: tuple[str, ...] = (),
) -> Worker:
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    argv = [
        sys.executable, "-m", "airt_worker",
        "--model-path", str(models / case.file),
        "--config-file", str(models / case.config),
        "--device", device,
        "--instance-count", str(instances),
        "--threads", str(threads),
        "--host", "127.0.0.1",
        "--http-port", str(http_port),
        "--grpc-port", str(grpc_port),
        "--metrics-port", str(metrics_port),
        "--drain-timeout-seconds", "5",
        "--termination-log", str(logs / f"{key}.termination"),
        *extra,
    ]  # fmt: skip
    cores = server_cores()
    log_path = logs / f"{key}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None,
        )
    return Worker(
        key, case, instances, proc, http_port, grpc_port, log_path, time.monotonic(),
        argv=argv, cores=cores,
    )  # fmt: skip


def wait_ready(workers: list[Worker], deadline: float) -> dict[str, Any]:
    pending = list(workers)
    while pending and time.monotonic() < deadline:
        for w in list(pending):
            if w.proc.poll() is not None:
                if any(e in w.tail() for e in BIND_ERRORS) and w.restarts < 3:
                    w.restart_on_new_ports()
                    continue
                raise RuntimeError(f"worker {w.key} exited with {w.proc.returncode}:\n{w.tail()}")
            try:
                with urllib.request.urlopen(f"http://{w.http}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        w.ready_s = time.monotonic() - w.started
                        pending.remove(w)
            except OSError:
                pass
        time.sleep(0.1)
    if pending:
        names = ", ".join(w.key for w in pending)
        raise TimeoutError(f"workers not ready in time: {names}\n{pending[0].tail()}")
    return {w.key: round(w.ready_s or 0.0, 2) for w in workers}


# ------------------------------------------------------------------------- the references


class References:
    """The same model files run in-process on the same device: the expected answers, and the
    in-process limit's module."""

    def __init__(self, models: Path, device: str, threads: int) -> None:
        import torch

        self.torch = torch
        self.models = models
        self.device = torch.device(device)
        # the workers' intra-op thread count, so the in-process limit is measured like for like
        torch.set_num_threads(threads)
        self._cache: dict[str, Any] = {}

    def module(self, file: str) -> Any:
        torch = self.torch
        if file not in self._cache:
            path = self.models / file
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if path.suffix == ".pt2":
                    m = torch.export.load(str(path)).module().to(self.device)
                else:
                    m = torch.jit.load(str(path), map_location=self.device)
                    m.eval()
            self._cache[file] = m
        return self._cache[file]

    def expected(self, case: ModelCase, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        args = []
        for (_, datatype, _), a in zip(case.inputs, arrays, strict=True):
            if datatype == "BF16":
                t = torch.from_numpy(a.view(np.uint16).astype(np.int16)).view(torch.bfloat16)
            else:
                t = torch.from_numpy(np.ascontiguousarray(a))
            args.append(t.to(self.device))
        with torch.inference_mode():
            out = self.module(case.file)(*args)
        if isinstance(out, torch.Tensor):
            out = {"logits": out}  # the CNN's config names its one output
        return {k: v.float().cpu().numpy() for k, v in out.items()}


def close_enough(got: np.ndarray, want: np.ndarray, datatype: str, device: str) -> str | None:
    """None when `got` matches `want` for this datatype on this device, else why not."""
    g = np.asarray(got).astype(np.float32)
    if g.shape != want.shape:
        return f"shape {list(g.shape)} != {list(want.shape)}"
    # Batches of other sizes may take other kernels on a GPU (and TF32 convolutions), so the
    # tolerance there is that of the arithmetic, not of the bits; a row mixed up or a wrong
    # dtype misses it by orders of magnitude.
    if datatype == "BF16":
        rtol, atol = 2e-2, 2e-2
    elif datatype == "FP16":
        rtol, atol = 2e-3, 2e-3
    else:
        rtol, atol = (3e-3, 3e-3) if device == "cuda" else (1e-4, 1e-5)
    if not np.allclose(g, want, rtol=rtol, atol=atol):
        worst = float(np.max(np.abs(g - want)))
        return f"max abs difference {worst:.3g} (rtol {rtol}, atol {atol})"
    return None


# ------------------------------------------------------------------------------ conformance


@dataclass
class Checks:
    """PASS/FAIL records; `run` turns an exception or a returned reason into FAIL."""

    records: list[dict[str, Any]] = field(default_factory=list)

    def run(self, worker: str, name: str, fn: Callable[[], str | None]) -> None:
        t0 = time.monotonic()
        try:
            problem = fn()
        except Exception as e:
            problem = f"{type(e).__name__}: {str(e)[:500]}"
        self.records.append(
            {
                "worker": worker,
                "check": name,
                "status": FAIL if problem else PASS,
                "detail": problem or "",
                "seconds": round(time.monotonic() - t0, 3),
            }
        )
        log(f"{worker}: {name}: {FAIL + ' ' + problem if problem else PASS}")


def conformance(w: Worker, refs: References, device: str, checks: Checks) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    case = w.case
    outputs_of: dict[str, str] = {}

    def metadata() -> str | None:
        client = httpclient.InferenceServerClient(w.http)
        try:
            if not (client.is_server_live() and client.is_server_ready()):
                return "server not live and ready"
            if not client.is_model_ready(case.model):
                return "model not ready"
            meta = client.get_model_metadata(case.model)
            platform_want = "pytorch_libtorch" if case.fmt == "torchscript" else "torch_export"
            if meta["platform"] != platform_want:
                return f"platform {meta['platform']} != {platform_want}"
            got_in = [(i["name"], i["datatype"]) for i in meta["inputs"]]
            want_in = [(n, d) for n, d, _ in case.inputs]
            if got_in != want_in:
                return f"inputs {got_in} != {want_in}"
            outputs_of.update({o["name"]: o["datatype"] for o in meta["outputs"]})
            group = client.get_model_config(case.model)["instance_group"][0]
            kind = "KIND_GPU" if device == "cuda" else "KIND_CPU"
            if group["kind"] != kind or int(group["count"]) != w.instances:
                return f"instance_group {group} != {kind} x{w.instances}"
            return None
        finally:
            client.close()

    def compare(result: Any, want: dict[str, np.ndarray], names: list[str]) -> str | None:
        for name in names:
            got = result.as_numpy(name)
            if got is None:
                return f"output {name} missing"
            problem = close_enough(got, want[name], outputs_of.get(name, "FP32"), device)
            if problem:
                return f"{name}: {problem}"
        return None

    def http_infer(binary: bool) -> str | None:
        arrays = case.arrays(3, seed=1)
        want = refs.expected(case, arrays)
        client = httpclient.InferenceServerClient(w.http)
        try:
            inputs = []
            for (name, datatype, _), a in zip(case.inputs, arrays, strict=True):
                inp = httpclient.InferInput(name, list(a.shape), datatype)
                # FP16 and BF16 have no JSON form in the protocol: always binary
                inp.set_data_from_numpy(a, binary_data=binary or datatype != "FP32")
                inputs.append(inp)
            names = list(outputs_of)
            outs = [
                httpclient.InferRequestedOutput(n, binary_data=binary or outputs_of[n] != "FP32")
                for n in names
            ]
            result = client.infer(case.model, inputs, outputs=outs)
            if not binary:
                json_outs = [n for n in names if outputs_of[n] == "FP32"]
                if not json_outs or not all("data" in result.get_output(n) for n in json_outs):
                    return f"FP32 outputs {json_outs} did not come back as JSON"
            return compare(result, want, names)
        finally:
            client.close()

    def grpc_infer() -> str | None:
        arrays = case.arrays(2, seed=2)
        want = refs.expected(case, arrays)
        client = grpcclient.InferenceServerClient(w.grpc)
        try:
            inputs = []
            for (name, datatype, _), a in zip(case.inputs, arrays, strict=True):
                inp = grpcclient.InferInput(name, list(a.shape), datatype)
                inp.set_data_from_numpy(a)
                inputs.append(inp)
            return compare(client.infer(case.model, inputs), want, list(outputs_of))
        finally:
            client.close()

    def batching() -> str | None:
        return asyncio.run(_batched(w, refs, device, outputs_of))

    checks.run(w.key, "ready, metadata, config", metadata)
    if not outputs_of:
        return
    checks.run(w.key, "http binary", lambda: http_infer(True))
    checks.run(w.key, "http json", lambda: http_infer(False))
    checks.run(w.key, "grpc", grpc_infer)
    checks.run(w.key, "batching: 64 concurrent requests (grpc aio)", batching)


async def _batched(
    w: Worker, refs: References, device: str, outputs_of: dict[str, str]
) -> str | None:
    """64 one-row requests at once: every answer right, and batches of more than one row formed
    (with a model busy on one batch, the others queue and go together)."""
    import tritonclient.grpc.aio as aiogrpc

    case = w.case
    n = 64
    arrays = case.arrays(n, seed=3)
    want = refs.expected(case, arrays)
    before = w.batch_stats()
    client = aiogrpc.InferenceServerClient(w.grpc)
    try:

        async def one(i: int) -> Any:
            inputs = []
            for (name, datatype, _), a in zip(case.inputs, arrays, strict=True):
                inp = aiogrpc.InferInput(name, [1, *a.shape[1:]], datatype)
                inp.set_data_from_numpy(a[i : i + 1])
                inputs.append(inp)
            return await client.infer(case.model, inputs)

        results: list[Any] = []
        for _ in range(3):  # up to three rounds, until a batch of more than one row shows
            results = list(await asyncio.gather(*(one(i) for i in range(n))))
            after = w.batch_stats()
            multi = {k: v[0] - before.get(k, (0, 0))[0] for k, v in after.items() if k > 1}
            if any(c > 0 for c in multi.values()):
                break
    finally:
        await client.close()
    for i, result in enumerate(results):
        for name in outputs_of:
            problem = close_enough(
                result.as_numpy(name), want[name][i : i + 1], outputs_of[name], device
            )
            if problem:
                return f"request {i}, {name}: {problem}"
    formed = {k: v[0] - before.get(k, (0, 0))[0] for k, v in w.batch_stats().items()}
    formed = {k: c for k, c in formed.items() if c > 0}
    if not any(k > 1 for k in formed):
        return f"no batch of more than one row formed: {formed}"
    return None


# ------------------------------------------------------------------------------ throughput


class GpuSampler:
    """GPU utilisation and memory read with the worker's own NVML reader while a point runs."""

    def __init__(self, device: str) -> None:
        self.available = False
        self.reason = "device is cpu: no GPU to read"
        self._nvml: Any = None
        if device == "cuda":
            try:
                from airt_worker.metrics import Nvml

                self._nvml = Nvml(device_count=1)  # GPU 0, where the measured workers run
                self.available = self._nvml.available
                self.reason = "" if self.available else "NVML did not initialise"
            except Exception as e:
                self.reason = f"{type(e).__name__}: {e}"
        self._samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for family in self._nvml.collect():
            if family.samples:
                values[family.name] = family.samples[0][2]
        return values

    def __enter__(self) -> GpuSampler:
        self._samples = []
        if self.available:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self._samples.append(self.read())
            except Exception:  # one failed reading loses one sample, not the point
                continue

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()

    def summary(self) -> dict[str, Any]:
        if not self.available:
            return {"status": "unavailable", "reason": self.reason}
        util = [s["nv_gpu_utilization"] for s in self._samples if "nv_gpu_utilization" in s]
        mem = [
            s["nv_gpu_memory_used_bytes"] for s in self._samples if "nv_gpu_memory_used_bytes" in s
        ]
        power = [s["nv_gpu_power_usage"] for s in self._samples if "nv_gpu_power_usage" in s]
        return {
            "status": "available",
            "samples": len(self._samples),
            "utilization_mean": round(statistics.fmean(util), 3) if util else None,
            "utilization_max": round(max(util), 3) if util else None,
            "memory_used_max_bytes": int(max(mem)) if mem else None,
            "power_mean_w": round(statistics.fmean(power), 1) if power else None,
        }


async def closed_loop(
    w: Worker, protocol: str, concurrency: int, warmup_s: float, duration_s: float
) -> dict[str, Any]:
    """`concurrency` clients, each sending its next one-row request when the last one answers
    (bench/loadgen.py's method, in this process); the same rows as bench/limit.py times."""
    from loadgen import input_pool

    case = w.case
    (name, datatype, dims) = case.inputs[0]
    pool = input_pool(list(dims))
    client: Any
    if protocol == "grpc":
        import tritonclient.grpc.aio as aiogrpc

        client = aiogrpc.InferenceServerClient(w.grpc)
        inputs = []
        for data in pool:
            inp = aiogrpc.InferInput(name, [1, *dims], datatype)
            inp.set_data_from_numpy(data)
            inputs.append(inp)
    else:
        import tritonclient.http.aio as aiohttp_client

        client = aiohttp_client.InferenceServerClient(w.http, conn_limit=concurrency + 4)
        inputs = []
        for data in pool:
            inp = aiohttp_client.InferInput(name, [1, *dims], datatype)
            inp.set_data_from_numpy(data, binary_data=True)
            inputs.append(inp)
    latencies: list[float] = []
    errors: list[str] = []
    recording = False
    stop_at = 0.0
    sent = 0

    async def one() -> None:
        nonlocal sent
        while time.monotonic() < stop_at:
            inp = inputs[sent % len(inputs)]
            sent += 1
            t0 = time.perf_counter()
            try:
                await client.infer(case.model, [inp])
            except Exception as exc:
                if recording:
                    errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                continue
            if recording:
                latencies.append(time.perf_counter() - t0)

    try:
        stop_at = time.monotonic() + warmup_s
        await asyncio.gather(*(one() for _ in range(concurrency)))
        recording = True
        t0, cpu0 = time.perf_counter(), time.process_time()
        stop_at = time.monotonic() + duration_s
        await asyncio.gather(*(one() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
    finally:
        await client.close()
    lat = np.array(latencies) * 1e3
    n = len(latencies)
    return {
        "requests": n,
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        "elapsed_s": round(elapsed, 3),
        "requests_per_s": round(n / elapsed, 1),
        "samples_per_s": round(n / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 3) if n else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 3) if n else None,
        # near 1.0 the one-process load generator, not the worker, is what limits the rate
        "client_cpu_util": round(cpu / elapsed, 2),
    }


def measure_point(
    w: Worker, protocol: str, concurrency: int, seconds: float, sampler: GpuSampler
) -> dict[str, Any]:
    warmup = max(0.1, seconds * 0.25)
    duration = max(0.3, seconds - warmup)
    before = w.batch_stats()
    with sampler:
        point = asyncio.run(closed_loop(w, protocol, concurrency, warmup, duration))
    after = w.batch_stats()
    batches = {k: v[0] - before.get(k, (0, 0))[0] for k, v in after.items()}
    batches = {k: c for k, c in sorted(batches.items()) if c > 0}
    infer_ns = sum(v[1] - before.get(k, (0, 0))[1] for k, v in after.items())
    rows = sum(k * c for k, c in batches.items())
    return {
        "worker": w.key,
        "model": w.case.model,
        "protocol": protocol,
        "concurrency": concurrency,
        **point,
        "batches": {str(k): c for k, c in batches.items()},
        # how fast the model ran inside the worker (warm-up included, like the counts)
        "in_worker_model_samples_per_s": round(rows / (infer_ns / 1e9), 1) if infer_ns else None,
        "gpu": sampler.summary(),
    }


def time_sizes(
    refs: References, case: ModelCase, sizes: list[int], budget_s: float
) -> tuple[dict[int, float], list[int]]:
    """Seconds of one in-process call at each batch size: the lower decile of at least five
    timed calls (bench/limit.py's statistic, fewer calls when the budget is small). The largest
    and smallest sizes are timed first, then the rest from the largest down; any the budget
    leaves untimed are interpolated from their timed neighbours and listed as such."""
    import torch

    from loadgen import input_pool

    module = refs.module(case.file)
    pool = torch.from_numpy(np.concatenate(input_pool(list(case.inputs[0][2])))).to(refs.device)
    cuda = refs.device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    end = time.monotonic() + budget_s
    per_call: dict[int, float] = {}
    # The largest and the smallest first, so that any untimed size lies between timed ones.
    order = sorted({max(sizes), min(sizes)}, reverse=True)
    order += [r for r in sorted(sizes, reverse=True) if r not in order]
    share = budget_s / max(len(order), 1)
    with torch.inference_mode():
        for rows in order:
            if len(per_call) >= 2 and time.monotonic() > end:  # the two bounds always
                break
            x = pool[:rows].contiguous()
            for _ in range(2):
                module(x)
            sync()
            samples: list[float] = []
            stop = time.monotonic() + share
            while len(samples) < 5 or (time.monotonic() < stop and len(samples) < 200):
                t0 = time.perf_counter()
                module(x)
                sync()
                samples.append(time.perf_counter() - t0)
            per_call[rows] = statistics.quantiles(samples, n=10)[0]
    timed = sorted(per_call)
    interpolated = []
    for rows in sizes:
        if rows in per_call:
            continue
        lower = max((t for t in timed if t < rows), default=timed[0])
        upper = min((t for t in timed if t > rows), default=timed[-1])
        if upper == lower:
            per_call[rows] = per_call[lower] * rows / lower
        else:
            f = (rows - lower) / (upper - lower)
            per_call[rows] = per_call[lower] + f * (per_call[upper] - per_call[lower])
        interpolated.append(rows)
    return per_call, sorted(interpolated)


def add_limits(
    points: list[dict[str, Any]], refs: References, case: ModelCase, budget_s: float
) -> dict[str, Any]:
    from limit import limit_for

    sizes = sorted({int(k) for p in points for k in p["batches"]})
    if not sizes:
        return {"status": FAIL, "reason": "the worker formed no batches"}
    per_call, interpolated = time_sizes(refs, case, sizes, budget_s)
    for p in points:
        batches = {int(k): c for k, c in p["batches"].items()}
        limit = limit_for(batches, per_call)
        p["limit_samples_per_s"] = round(limit, 1) if limit else None
        p["ratio_to_limit"] = round(p["samples_per_s"] / limit, 3) if limit else None
    doc: dict[str, Any] = {
        "status": "ran",
        "per_call_ms": {str(k): round(v * 1e3, 4) for k, v in sorted(per_call.items())},
        "interpolated_sizes": interpolated,
    }
    if refs.device.type == "cuda":  # what the model itself takes on the GPU, in-process
        doc["torch_max_memory_allocated_bytes"] = refs.torch.cuda.max_memory_allocated()
    return doc


# ------------------------------------------------------------------------------- the steps


def step(record: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]]) -> None:
    t0 = time.monotonic()
    log(f"step {name}")
    try:
        result = fn()
    except Exception as e:
        result = {
            "status": FAIL,
            "error": f"{type(e).__name__}: {e}",
            "traceback": traceback.format_exc()[-3000:],
        }
    result["seconds"] = round(time.monotonic() - t0, 2)
    record["steps"][name] = result


def environment(device: str, site: str) -> dict[str, Any]:
    import torch

    found: dict[str, Any] = {}
    for mod in (
        "pydantic",
        "pydantic_settings",
        "uvicorn",
        "httptools",
        "orjson",
        "tritonclient",
        "grpc",
        "google.protobuf",
        "numpy",
        "uvloop",
        "prometheus_client",
        "pynvml",
        "airt_worker",
    ):
        try:
            m = importlib.import_module(mod)
        except Exception as e:
            found[mod] = {"error": f"{type(e).__name__}: {e}"}
            continue
        path = str(getattr(m, "__file__", "") or "")
        found[mod] = {
            "version": str(getattr(m, "__version__", "")),
            "from": "kit" if site and path.startswith(site) else "machine",
        }
    missing = [m for m, v in found.items() if "error" in v]
    doc: dict[str, Any] = {
        "status": FAIL if missing else PASS,
        "python": platform.python_version(),
        "executable": sys.executable,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cpu_cores": len(os.sched_getaffinity(0)),
        "modules": found,
    }
    if device == "cuda":
        if not torch.cuda.is_available():
            doc["status"] = FAIL
            doc["error"] = "--device cuda but torch sees no CUDA device"
        else:
            props = torch.cuda.get_device_properties(0)
            doc["gpu"] = {
                "name": props.name,
                "memory_bytes": props.total_memory,
                "multiprocessors": props.multi_processor_count,
            }
    return doc


def build_models(out: Path, cache: Path | None) -> dict[str, Any]:
    """The example models, built by examples/build_models.py; with `cache`, reused from a
    folder keyed by the builder's bytes and torch's version (the CPU test's shortcut)."""
    import hashlib
    from importlib import metadata

    builder = ROOT / "examples" / "build_models.py"
    # torch's version from its metadata: a cache hit costs no torch import
    torch_version = metadata.version("torch")
    key = hashlib.sha256(builder.read_bytes() + torch_version.encode()).hexdigest()[:16]
    if cache is not None:
        cached = cache / key
        if (cached / "done").exists():
            return {
                "status": PASS,
                "dir": str(cached),
                "built": False,
                "cache_key": key,
                "files": sorted(p.name for p in cached.iterdir() if p.name != "done"),
            }
        out = cached
    sys.path.insert(0, str(builder.parent))
    try:
        import build_models as builder_module
    finally:
        sys.path.pop(0)
    written = builder_module.build(out)
    if cache is not None:
        (out / "done").write_text(key)
    return {
        "status": PASS,
        "dir": str(out),
        "built": True,
        "cache_key": key,
        "files": sorted(p.name for p in written),
    }


def gpu_count(device: str) -> tuple[int, str]:
    """GPUs torch sees, and why the multi-GPU step is skipped ('' when it runs)."""
    if device != "cuda":
        return 0, "--device cpu: no GPUs to spread instances over"
    import torch

    n = torch.cuda.device_count()
    if n < 2:
        return n, f"torch sees {n} GPU: spreading instances needs at least 2"
    return n, ""


def placement_from_log(text: str) -> list[str]:
    """The devices holding a model copy, from the worker's `loaded on cuda:0, cuda:1 in …` line."""
    for line in text.splitlines():
        if " loaded on " in line and "; inputs " in line:
            where = line.split(" loaded on ", 1)[1].split("; inputs ", 1)[0].rsplit(" in ", 1)[0]
            return [d.strip() for d in where.split(",") if d.strip()]
    return []


def run(args: argparse.Namespace) -> dict[str, Any]:
    clock = Clock(args.budget_s)
    install = json.loads(Path(args.install_record).read_text()) if args.install_record else {}
    site = str(install.get("site", ""))
    record: dict[str, Any] = {
        "kind": "airt-gpu-check",
        "started": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": args.device,
        "budget_s": args.budget_s,
        "steps": {"install": install} if install else {},
    }
    # Models and worker logs stay out of --out: on the GPU machine only a few files come back.
    work = Path(tempfile.mkdtemp(prefix="airt-gpu-check-"))
    record["work_dir"] = str(work)
    step(record, "models", lambda: build_models(work / "models", args.models_cache))
    models = Path(record["steps"]["models"].get("dir", work / "models"))
    cores = server_cores()
    threads = len(cores) if cores else 1
    workers: dict[str, Worker] = {}
    # the multi-GPU worker starts with the others but is waited for in its own step, so a
    # machine with one GPU (or none) runs the other steps exactly as before
    n_gpus, multi_gpu_skip = gpu_count(args.device)
    spread: dict[str, Worker] = {}

    def spawn_all() -> None:
        """Start every worker; they import torch and load while this process looks at its own
        environment, so the two overlap."""
        logs = work / "logs"
        logs.mkdir(exist_ok=True)
        plan = [
            ("mlp.pt2", MLP, 1),
            ("halves.pt", HALVES_TS, 1),
            ("halves.pt2", HALVES_EXPORT, 1),
            ("cnn.pt", CNN, 1),
            ("cnn.pt-x2", CNN, 2),
        ]
        # on cuda every worker here stays on GPU 0 (`--device-count 1`): the multi-instance
        # step compares instances sharing one GPU, and the sampler reads GPU 0
        one_gpu = ("--device-count", "1") if args.device == "cuda" else ()
        for key, case, instances in plan:
            workers[key] = spawn(key, case, models, logs, args.device, instances, threads, one_gpu)
        if not multi_gpu_skip:
            count = ("--device-count", str(n_gpus))
            spread["cnn.pt-gpus"] = spawn(
                "cnn.pt-gpus", CNN, models, logs, args.device, n_gpus, threads, count
            )

    def start() -> dict[str, Any]:
        if spawn_error:
            raise RuntimeError(spawn_error)
        # Start-up may run into the grace run.py allows past the budget (torch imports on a
        # busy machine), leaving 20 s of it to stop the workers and write the results.
        ready = wait_ready(list(workers.values()), clock.deadline + max(args.grace_s - 20, 10))
        return {
            "status": PASS,
            "ready_after_s": ready,
            "threads": threads,
            "pinned_cores": sorted(cores) if cores else "not pinned (under 4 cores)",
        }

    try:
        spawn_error = ""
        try:
            spawn_all()
        except Exception as e:  # recorded by the workers step below
            spawn_error = f"{type(e).__name__}: {e}"
        step(record, "environment", lambda: environment(args.device, site))
        step(record, "workers", start)
        refs = References(models, args.device, threads)
        if cores:  # the load generator and the in-process limit stay off the workers' cores
            os.sched_setaffinity(0, set(os.sched_getaffinity(0)) - cores)
        record["steps"]["workers"].setdefault("status", FAIL)
        ok = record["steps"]["workers"]["status"] == PASS
        checks = Checks()

        def conform() -> dict[str, Any]:
            if not ok:
                raise RuntimeError("no workers")
            for w in workers.values():
                conformance(w, refs, args.device, checks)
            failed = [c for c in checks.records if c["status"] == FAIL]
            return {
                "status": FAIL if failed else PASS,
                "passed": len(checks.records) - len(failed),
                "failed": len(failed),
                "checks": checks.records,
            }

        step(record, "conformance", conform)
        sampler = GpuSampler(args.device)
        record["steps"]["nvml"] = (
            {"status": "available", "reader": "airt_worker.metrics.Nvml", "sample": sampler.read()}
            if sampler.available
            else {"status": "unavailable", "reason": sampler.reason}
        )
        # What is left, shared out: throughput points 70 %, their limits 12 %, multi-instance
        # 13 %, the rest for writing up. Start-up and conformance have already been paid for.
        left = max(clock.left(), 0.0)
        n_points = 2 * len(PROTOCOLS) * len(CONCURRENCY)
        per_point = max(0.4, 0.70 * left / n_points)
        limit_budget = max(0.5, 0.12 * left / 2)
        multi_points = (32, 128)
        per_multi = max(0.4, 0.13 * left / (2 * len(multi_points)))
        throughput: dict[str, Any] = {}

        def measure() -> dict[str, Any]:
            if not ok:
                raise RuntimeError("no workers")
            all_points: list[dict[str, Any]] = []
            for key in ("mlp.pt2", "cnn.pt"):
                w = workers[key]
                points = [
                    measure_point(w, proto, c, per_point, sampler)
                    for proto in PROTOCOLS
                    for c in CONCURRENCY
                ]
                for p in points:
                    log(
                        f"{key} {p['protocol']} c={p['concurrency']}: {p['samples_per_s']}/s "
                        f"p50 {p['p50_ms']} ms p99 {p['p99_ms']} ms batches {p['batches']}"
                    )
                throughput[key] = add_limits(points, refs, w.case, limit_budget)
                all_points += points
            errors = sum(p["errors"] for p in all_points)
            empty = [p for p in all_points if p["requests"] == 0]
            return {
                "status": FAIL if errors or empty else "ran",
                "seconds_per_point": round(per_point, 2),
                "points": all_points,
                "limits": throughput,
                "errors": errors,
            }

        step(record, "throughput", measure)

        def multi() -> dict[str, Any]:
            if not ok:
                raise RuntimeError("no workers")
            rows: list[dict[str, Any]] = []
            for c in multi_points:
                one = measure_point(workers["cnn.pt"], "grpc", c, per_multi, sampler)
                two = measure_point(workers["cnn.pt-x2"], "grpc", c, per_multi, sampler)
                rows.append(
                    {
                        "concurrency": c,
                        "one_instance": one,
                        "two_instances": two,
                        "ratio_two_to_one": round(two["samples_per_s"] / one["samples_per_s"], 3)
                        if one["samples_per_s"]
                        else None,
                    }
                )
            conforming = [c for c in checks.records if c["worker"] == "cnn.pt-x2"]
            failed = [c for c in conforming if c["status"] == FAIL]
            errors = sum(r[k]["errors"] for r in rows for k in ("one_instance", "two_instances"))
            return {
                "status": FAIL if failed or errors or not conforming else "ran",
                "streams": "one CUDA stream per instance"
                if args.device == "cuda"
                else "cpu: instances are threads (no streams)",
                "conformance_of_two_instances": (
                    f"{len(conforming) - len(failed)}/{len(conforming)} PASS"
                ),
                "points": rows,
            }

        step(record, "multi_instance", multi)

        def multi_gpu() -> dict[str, Any]:
            if multi_gpu_skip:
                return {"status": "skipped", "reason": multi_gpu_skip}
            w = spread["cnn.pt-gpus"]
            wait_ready([w], time.monotonic() + max(clock.left(), 0.0) + 60)
            placed = placement_from_log(w.log_path.read_text(errors="replace"))
            want = [f"cuda:{i}" for i in range(n_gpus)]
            gpu_checks = Checks()
            conformance(w, refs, args.device, gpu_checks)
            failed = [c for c in gpu_checks.records if c["status"] == FAIL]
            problems = []
            if sorted(placed) != want:
                problems.append(f"model copies on {placed or 'nothing reported'}, want {want}")
            problems += [f"{c['check']}: {c['detail'][:200]}" for c in failed]
            return {
                "status": FAIL if problems else PASS,
                "gpus": n_gpus,
                "instances": w.instances,
                "model_copies_on": placed,
                "conformance": f"{len(gpu_checks.records) - len(failed)}/"
                f"{len(gpu_checks.records)} PASS",
                "checks": gpu_checks.records,
                "problems": problems,
            }

        step(record, "multi_gpu", multi_gpu)
    finally:
        every = {**workers, **spread}
        exits = {k: w.stop() for k, w in every.items()}
        record["worker_exit_codes"] = exits
        record["worker_log_tails"] = {k: w.tail() for k, w in every.items() if exits[k] != 0}
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    record["elapsed_s"] = round(clock.elapsed(), 1)
    steps = record["steps"]
    record["ok"] = all(
        s.get("status") in (PASS, "ran", "available", "unavailable", "skipped")
        for s in steps.values()
    ) and all(c == 0 for c in exits.values())
    return record


def summary(record: dict[str, Any]) -> str:
    lines = [
        f"airt GPU check ({record['device']}), {record['started']}, "
        f"{record.get('elapsed_s')} s of a {record['budget_s']:.0f} s budget: "
        f"{'OK' if record.get('ok') else 'NOT OK'}"
    ]
    env = record["steps"].get("environment", {})
    gpu_name = env.get("gpu", {}).get("name", "-")
    lines.append(f"python {env.get('python')}, torch {env.get('torch')}, gpu {gpu_name}")
    for name, s in record["steps"].items():
        extra = ""
        if name == "conformance" and "passed" in s:
            extra = f" ({s['passed']} passed, {s['failed']} failed)"
        if "error" in s:
            extra = f" ({s['error'][:200]})"
        lines.append(f"  {name:15s} {s.get('status')}{extra}")
    for c in record["steps"].get("conformance", {}).get("checks", []):
        if c["status"] == FAIL:
            lines.append(f"    FAIL {c['worker']}: {c['check']}: {c['detail'][:200]}")
    points = record["steps"].get("throughput", {}).get("points", [])
    if points:
        lines.append(
            "  model proto  c    samples/s  limit/s    ratio  p50 ms  p99 ms  gpu util  gpu mem MiB"
        )
        for p in points:
            gpu = p["gpu"]
            util = gpu.get("utilization_mean") if gpu["status"] == "available" else "n/a"
            mem = gpu.get("memory_used_max_bytes") if gpu["status"] == "available" else None
            lines.append(
                f"  {p['model']:5s} {p['protocol']:5s} {p['concurrency']:3d}  "
                f"{p['samples_per_s']:9.1f}  {p.get('limit_samples_per_s') or 0:9.1f}  "
                f"{p.get('ratio_to_limit') or 0:5.2f}  "
                f"{p['p50_ms'] or 0:6.2f}  {p['p99_ms'] or 0:6.2f}  "
                f"{util!s:>8}  {'n/a' if mem is None else round(mem / 2**20)}"
            )
    for r in record["steps"].get("multi_instance", {}).get("points", []):
        lines.append(f"  cnn grpc c={r['concurrency']}: 2 instances / 1 = {r['ratio_two_to_one']}")
    gpus = record["steps"].get("multi_gpu", {})
    if gpus.get("status") == "skipped":
        lines.append(f"  multi-GPU skipped: {gpus.get('reason')}")
    elif "model_copies_on" in gpus:
        lines.append(f"  multi-GPU: model copies on {', '.join(gpus['model_copies_on'])}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--budget-s", type=float, default=400.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--install-record", default=None)
    parser.add_argument("--grace-s", type=float, default=60.0, help="see run.py's --grace-s")
    parser.add_argument("--models-cache", type=Path, default=None)
    parser.add_argument("--keep-work", action="store_true", help="keep the models and worker logs")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    record = run(args)
    (args.out / "gpu-check.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    text = summary(record)
    (args.out / "gpu-check.txt").write_text(text)
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

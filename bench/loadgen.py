"""The one load generator for every server: tritonclient's asyncio clients, closed loop.

Run as its own process by bench/worker.py, pinned to the client cores (never the servers'):

    python bench/loadgen.py '<json job>'     # prints one JSON list of results on stdout

A job names the server address, protocol (`http` = REST with binary tensors, `http-json` = REST
with JSON tensors for servers without the binary extension, `grpc`), the model's input, the
concurrencies and the time per point. For each concurrency C it keeps C requests in flight
(C coroutines, each sending its next request when the last one answers), first for a warm-up
window that is thrown away, then for the measured window. Each request carries one row.
It reports requests/s, samples/s, latency percentiles, errors, and its own CPU use: a client
near 100 % of its core is the bottleneck, and the result says so.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any

import numpy as np

#: Distinct rows the requests cycle through. Data matters even to a CNN's speed (a batch of one
#: row repeated runs ~30 % faster than distinct rows here), so requests differ like real traffic
#: and bench/limit.py times batches made of the same rows.
POOL = 256


def input_pool(dims: list[int], rows: int = 1) -> list[np.ndarray]:
    """The request inputs, each `rows` rows, drawn from one seeded generator."""
    data = np.random.default_rng(0).standard_normal((POOL * rows, *dims)).astype(np.float32)
    return [data[i * rows : (i + 1) * rows] for i in range(POOL)]


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def _point(job: dict[str, Any], concurrency: int) -> dict[str, Any]:
    proto: str = job["protocol"]
    rows = int(job.get("rows", 1))
    shape = [rows, *job["dims"]]
    pool = input_pool(job["dims"], rows)
    client: Any
    if proto == "grpc":
        import tritonclient.grpc.aio as grpcclient

        client = grpcclient.InferenceServerClient(job["grpc"])
        inputs = []
        for data in pool:
            inp = grpcclient.InferInput(job["input"], shape, "FP32")
            inp.set_data_from_numpy(data)
            inputs.append(inp)
        outputs = None
        headers = None
    else:
        import tritonclient.http.aio as httpclient

        binary = proto == "http"
        client = httpclient.InferenceServerClient(job["http"], conn_limit=concurrency + 4)
        inputs = []
        for data in pool:
            inp = httpclient.InferInput(job["input"], shape, "FP32")
            inp.set_data_from_numpy(data, binary_data=binary)
            inputs.append(inp)
        outputs = [httpclient.InferRequestedOutput(o, binary_data=binary) for o in job["outputs"]]
        # A pure-JSON body must say so: FastAPI (MLServer) will not parse an octet-stream.
        headers = None if binary else {"Content-Type": "application/json"}

    model: str = job["model"]
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
                await client.infer(model, [inp], outputs=outputs, headers=headers)
            except Exception as exc:
                if recording:
                    errors.append(type(exc).__name__ + ": " + str(exc)[:200])
                continue
            if recording:
                latencies.append(time.perf_counter() - t0)

    try:
        stop_at = time.monotonic() + float(job["warmup_s"])
        await asyncio.gather(*(one() for _ in range(concurrency)))
        recording = True
        cpu0, t0 = _cpu_s(), time.perf_counter()
        stop_at = time.monotonic() + float(job["duration_s"])
        await asyncio.gather(*(one() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        cpu = _cpu_s() - cpu0
    finally:
        await client.close()

    lat = np.array(latencies) * 1e3
    n = len(latencies)
    return {
        "concurrency": concurrency,
        "requests": n,
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        "elapsed_s": elapsed,
        "requests_per_s": n / elapsed,
        "samples_per_s": n * shape[0] / elapsed,
        "p50_ms": float(np.percentile(lat, 50)) if n else None,
        "p90_ms": float(np.percentile(lat, 90)) if n else None,
        "p99_ms": float(np.percentile(lat, 99)) if n else None,
        "mean_ms": float(lat.mean()) if n else None,
        "client_cpu_util": cpu / elapsed,
    }


async def _run(job: dict[str, Any]) -> list[dict[str, Any]]:
    return [await _point(job, int(c)) for c in job["concurrency"]]


def main() -> int:
    job = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(_run(job))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

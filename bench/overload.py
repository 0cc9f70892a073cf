"""Overload run: twice the sustainable load plus a stream of hostile requests, RSS sampled.

Starts one worker on 127.0.0.1 at its production defaults (the example MLP, batching as in
bench/servers.py), measures the sustainable rate with a closed loop, then for `--duration`
seconds sends good requests open-loop at `--factor` times that rate while a rotation of hostile
requests runs beside them (huge shapes, 60 MB bodies, 64 MB JSON, gzip with trailing garbage,
JSON strings for numbers, header floods, stalled and oversized bodies, abandoned bodies, gRPC
messages over the limit). It samples the worker's RSS from /proc and the latency of
/v2/health/live throughout, and checks that nothing accepted was lost: every good request got an
answer, and the worker's success count equals the 200s the clients received.

    uv run python bench/overload.py --duration 120 --out docs/benchmarks/overload.json

Everything is bounded: the run's length, the good requests in flight (`--max-inflight`), the
hostile requests (one at a time per case). Results print as JSON and, with --out, are saved.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson

from airt_dev.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20
INFER = "/v2/models/mlp/infer"


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def binary_body(dtype: str, shape: list[int], blob: bytes) -> tuple[bytes, dict[str, str]]:
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "datatype": dtype,
                    "shape": shape,
                    "parameters": {"binary_data_size": len(blob)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    return header + blob, {"Inference-Header-Content-Length": str(len(header))}


class Worker:
    def __init__(self, models: Path, log: Path) -> None:
        self.http, self.grpc, self.metrics_port = free_port(), free_port(), free_port()
        argv = [
            sys.executable,
            "-m",
            "airt_worker",
            "--model-path",
            str(models / "mlp.pt"),
            "--config-file",
            str(models / "mlp.yaml"),
            "--threads",
            "1",
            "--batching.max-batch-size",
            "32",
            "--batching.max-queue-delay-microseconds",
            "1000",
            "--host",
            "127.0.0.1",
            "--http-port",
            str(self.http),
            "--grpc-port",
            str(self.grpc),
            "--metrics-port",
            str(self.metrics_port),
        ]
        self.proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.http}"

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("the worker exited while starting")
            try:
                async with session.get(self.base + "/v2/health/ready") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise TimeoutError("the worker did not turn ready")

    async def metric(self, session: aiohttp.ClientSession, name: str) -> float:
        async with session.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as r:
            text = await r.text()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")
        )


# ------------------------------------------------------------------------------ hostile cases


def raw_exchange(port: int, parts: list[bytes], pause_s: float = 0.0) -> int | str:
    """Send `parts` on one connection; the answer's status, or how the connection ended."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            try:
                for p in parts:
                    s.sendall(p)
                if pause_s:
                    time.sleep(pause_s)
            except (BrokenPipeError, ConnectionResetError):
                pass
            data = b""
            try:
                while chunk := s.recv(65536):
                    data += chunk
                    if b"\r\n\r\n" in data:
                        break
            except ConnectionResetError:
                pass
            if data.startswith(b"HTTP/1.1 "):
                return int(data[9:12])
            return "reset"
    except OSError as e:
        return f"error:{type(e).__name__}"


def abandoned(port: int) -> int | str:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(
            b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
            % (INFER.encode(), 60 * MiB)
        )
        s.sendall(bytes(8 * MiB))
    return "abandoned"


def grpc_oversized(address: str, mib: int) -> int | str:
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    request = service_pb2.ModelInferRequest(model_name="mlp")
    request.inputs.add(name="features", datatype="FP32", shape=[mib * MiB // 256, 64])
    request.raw_input_contents.append(bytes(mib * MiB))
    with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1)]) as ch:
        try:
            service_pb2_grpc.GRPCInferenceServiceStub(ch).ModelInfer(request, timeout=60)
        except grpc.RpcError as e:
            return str(e.code().name)
    return "OK"


def hostile_cases(worker: Worker) -> dict[str, Callable[[aiohttp.ClientSession], Awaitable[Any]]]:
    rows = 60 * MiB // 256
    big_fp32 = binary_body("FP32", [rows, 64], bytes(rows * 256))
    n = 16_000_000
    big_json = b'{"inputs":[{"name":"features","datatype":"FP32","shape":[%d],"data":[' % n
    big_json += b"0.5," * (n - 1) + b"0.5]}]}"
    huge_bytes = binary_body("BYTES", [2**33], b"")
    bytes_flood = binary_body("BYTES", [n], bytes(4 * n))
    good_json = orjson.dumps(
        {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 64], "data": [0.5] * 64}]}
    )
    trailing = gzip.compress(good_json) + b"trailing garbage"
    strings = good_json.replace(b"0.5", b'"0.5"')
    port = worker.http
    head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %%d\r\n\r\n" % INFER.encode()

    async def post(session: aiohttp.ClientSession, body: bytes, headers: dict[str, str]) -> int:
        async with session.post(worker.base + INFER, data=body, headers=headers) as r:
            await r.read()
            return r.status

    def thread(
        fn: Callable[..., Any], *args: Any
    ) -> Callable[[aiohttp.ClientSession], Awaitable[Any]]:
        return lambda _s: asyncio.to_thread(fn, *args)

    return {
        "huge BYTES shape [2^33], no data": lambda s: post(s, *huge_bytes),
        "60 MB FP32 binary body": lambda s: post(s, *big_fp32),
        "64 MB JSON body": lambda s: post(s, big_json, {}),
        "64 MB BYTES body (16 M elements)": lambda s: post(s, *bytes_flood),
        "gzip with trailing garbage": lambda s: post(s, trailing, {"Content-Encoding": "gzip"}),
        'FP32 as JSON strings ("0.5")': lambda s: post(s, strings, {}),
        "32 MB header": thread(
            raw_exchange, port, [b"GET /v2/health/live HTTP/1.1\r\nX-Big: ", b"a" * 32 * MiB]
        ),
        "200,000 headers": thread(
            raw_exchange,
            port,
            [
                b"GET /v2/health/live HTTP/1.1\r\n",
                b"".join(b"X-%d: v\r\n" % i for i in range(200_000)),
            ],
        ),
        "stalled body": thread(raw_exchange, port, [head % 1000 + b'{"inputs":']),
        "declared 100 GB body": thread(raw_exchange, port, [head % (100 * 10**9) + b"x" * 1024]),
        "abandoned 60 MB body": thread(abandoned, port),
        "gRPC 128 MB message": thread(
            grpc_oversized, worker.grpc and f"127.0.0.1:{worker.grpc}", 128
        ),
    }


# ------------------------------------------------------------------------------------- run

#: The liveness prober: its own process, so the load generator's busy event loop does not
#: delay it; one keep-alive connection, the kubelet's 1 s timeout, every 100 ms.
PROBE = """
import http.client, json, sys, time
port, seconds, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
lat, fails, end, conn = [], 0, time.monotonic() + seconds, None
while time.monotonic() < end:
    t = time.perf_counter()
    try:
        conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/v2/health/live")
        r = conn.getresponse(); r.read()
        fails += r.status != 200
    except Exception:
        fails += 1
        conn = None
    lat.append((time.perf_counter() - t) * 1e3)
    time.sleep(0.1)
json.dump({"latencies_ms": lat, "failures": fails}, open(out, "w"))
"""


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "examples"))
    import build_models

    tmp = Path(tempfile.mkdtemp(prefix="airt-overload-"))
    build_models.build(tmp)
    worker = Worker(tmp, tmp / "worker.log")
    pid = worker.proc.pid
    timeout = aiohttp.ClientTimeout(total=120)
    result: dict[str, Any] = {"duration_s": args.duration, "factor": args.factor}
    try:
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(limit=args.max_inflight + 64)
        ) as session:
            await worker.wait_ready(session)
            ready_rss = status_kib(pid, "VmRSS")
            rng = np.random.default_rng(0)
            goods = [
                binary_body(
                    "FP32", [1, 64], rng.standard_normal((1, 64)).astype(np.float32).tobytes()
                )
                for _ in range(64)
            ]

            async def good(i: int) -> int | str:
                body, headers = goods[i % len(goods)]
                try:
                    async with session.post(worker.base + INFER, data=body, headers=headers) as r:
                        await r.read()
                        return r.status
                except Exception as e:
                    return f"error:{type(e).__name__}"

            # 1. sustainable rate: a closed loop of 32 clients for `--probe` seconds
            done = 0
            stop = time.monotonic() + args.probe

            async def loop_client(k: int) -> None:
                nonlocal done
                while time.monotonic() < stop:
                    if await good(k) == 200:
                        done += 1

            t0 = time.monotonic()
            await asyncio.gather(*(loop_client(k) for k in range(32)))
            sustainable = done / (time.monotonic() - t0)
            rate = sustainable * args.factor
            result["sustainable_req_per_s"] = round(sustainable, 1)
            result["offered_req_per_s"] = round(rate, 1)
            success_before = await worker.metric(session, "nv_inference_request_success")

            # 2. overload: open loop at `rate`, hostile rotation, RSS and health sampled
            end = time.monotonic() + args.duration
            rss: list[int] = []
            probe_out = tmp / "probe.json"
            prober = subprocess.Popen(  # noqa: ASYNC220 - starts once, returns at once
                [sys.executable, "-c", PROBE, str(worker.http), str(args.duration), str(probe_out)]
            )
            outcomes: Counter[str] = Counter()
            hostile: dict[str, Counter[str]] = {}
            tasks: set[asyncio.Task[Any]] = set()
            shed = 0

            async def sample() -> None:
                while time.monotonic() < end:
                    rss.append(status_kib(pid, "VmRSS"))
                    await asyncio.sleep(0.25)

            async def record(i: int) -> None:
                outcomes[str(await good(i))] += 1

            async def offered() -> None:
                nonlocal shed
                i = 0
                start = time.monotonic()
                while (now := time.monotonic()) < end:
                    due = int((now - start) * rate)
                    while i < due:
                        if len(tasks) >= args.max_inflight:
                            shed += due - i  # the client's own cap: never sent, not lost
                            i = due
                            break
                        t = asyncio.ensure_future(record(i))
                        tasks.add(t)
                        t.add_done_callback(tasks.discard)
                        i += 1
                    await asyncio.sleep(0.005)

            cases = hostile_cases(worker)

            async def attacker(
                name: str, fn: Callable[[aiohttp.ClientSession], Awaitable[Any]]
            ) -> None:
                counts = hostile.setdefault(name, Counter())
                while time.monotonic() < end:
                    try:
                        outcome = await fn(session)
                    except Exception as e:
                        outcome = f"error:{type(e).__name__}"
                    counts[str(outcome)] += 1
                    await asyncio.sleep(args.hostile_pause)

            grpc_512 = await asyncio.to_thread(grpc_oversized, f"127.0.0.1:{worker.grpc}", 512)
            await asyncio.gather(sample(), offered(), *(attacker(n, f) for n, f in cases.items()))
            if tasks:
                await asyncio.gather(*tasks)
            await asyncio.to_thread(prober.wait, 60)
            probe = json.loads(probe_out.read_text())
            health_ms: list[float] = probe["latencies_ms"]
            health_fail: int = probe["failures"]
            success_after = await worker.metric(session, "nv_inference_request_success")

            peak = status_kib(pid, "VmHWM")
            got_200 = outcomes.get("200", 0)
            lost = {k: v for k, v in outcomes.items() if k not in ("200", "503")}
            hmv = np.array(health_ms)
            result.update(
                {
                    "ready_rss_mib": round(ready_rss / MiB),
                    "peak_rss_mib": round(peak / MiB),
                    "rss_p50_mib": round(float(np.percentile(rss, 50)) / MiB),
                    "rss_max_sampled_mib": round(max(rss) / MiB),
                    "good_requests": dict(outcomes),
                    "client_shed_not_sent": shed,
                    "server_successes": int(success_after - success_before),
                    "client_200s": got_200,
                    "lost": lost,
                    "health_probes": len(health_ms),
                    "health_failures": health_fail,
                    "health_p50_ms": round(float(np.percentile(hmv, 50)), 1),
                    "health_p99_ms": round(float(np.percentile(hmv, 99)), 1),
                    "health_max_ms": round(float(hmv.max()), 1),
                    "hostile": {k: dict(v) for k, v in hostile.items()},
                    "grpc_512_mb": grpc_512,
                    "worker_alive": worker.proc.poll() is None,
                }
            )
    finally:
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGTERM)
            result["exit_code"] = worker.proc.wait(timeout=60)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=300.0, help="overload seconds")
    ap.add_argument(
        "--probe", type=float, default=10.0, help="seconds to find the sustainable rate"
    )
    ap.add_argument("--factor", type=float, default=2.0, help="offered load / sustainable load")
    ap.add_argument("--max-inflight", type=int, default=256, help="client cap on good requests")
    ap.add_argument("--hostile-pause", type=float, default=0.5, help="pause between hostile tries")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0 if not result.get("lost") and result.get("worker_alive") else 1


if __name__ == "__main__":
    sys.exit(main())

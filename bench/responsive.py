"""Event-loop responsiveness: health and small-inference latency while 60 MB requests decode.

Starts one worker on 127.0.0.1 at its production defaults (the example MLP, batching as in
bench/overload.py), then for `--duration` seconds per phase measures, from a separate prober
process (so the load generator's own loop does not delay it), the latency of
`GET /v2/health/live` and of a one-row inference, every `--interval` seconds:

1. idle: nothing else is sent;
2. decode: one large request after another (a 60 MB FP32 binary body, a 60 MB gzip-compressed
   JSON body, a 60 MB BYTES body), each on its own connection, the next as soon as the last was
   answered. Only probes that started while a large request was in flight are counted.

The worker decodes and encodes large payloads on its codec threads, so its event loop should
keep answering both probes in well under the kubelet's 1 s probe timeout; the target is < 100 ms.
Prints one JSON document (and saves it with --out): per phase and probe kind, count, failures,
p50/p99/max, and the share under 100 ms.

    uv run python bench/responsive.py --duration 30 --out docs/benchmarks/responsive.json
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from overload import INFER, MiB, Worker, binary_body  # noqa: E402

#: The prober: health and a one-row inference in turn on two keep-alive connections, 1 s timeout
#: (the kubelet's), each sample stamped with the system-wide monotonic clock.
PROBE = """
import http.client, json, sys, time
port, seconds, interval, out, body, hlen, path = (int(sys.argv[1]), float(sys.argv[2]),
    float(sys.argv[3]), sys.argv[4], open(sys.argv[5], "rb").read(), sys.argv[6], sys.argv[7])
samples, conns, end = [], {}, time.monotonic() + seconds
while time.monotonic() < end:
    for kind in ("health", "infer"):
        start = time.monotonic()
        status = 0
        try:
            conn = conns.get(kind) or http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conns[kind] = conn
            if kind == "health":
                conn.request("GET", "/v2/health/live")
            else:
                conn.request("POST", path, body, {"Inference-Header-Content-Length": hlen})
            r = conn.getresponse(); r.read(); status = r.status
        except Exception:
            conns.pop(kind, None)
        samples.append([kind, start, (time.monotonic() - start) * 1e3, status])
    time.sleep(interval)
json.dump(samples, open(out, "w"))
"""


def large_requests() -> dict[str, tuple[bytes, dict[str, str]]]:
    rows = 60 * MiB // 256
    fp32 = binary_body("FP32", [rows, 64], np.full((rows, 64), 0.5, np.float32).tobytes())
    padded = orjson.dumps(
        {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 64], "data": [0.5] * 64}]}
    )
    packed = gzip.compress(padded + b" " * (60 * MiB), 1)
    n = 60 * MiB // 8  # elements of four bytes, each behind its four-byte length
    byts = binary_body("BYTES", [n], b"\x04\x00\x00\x00abcd" * n)
    return {
        "60 MB FP32 binary": fp32,
        "60 MB gzip JSON": (packed, {"Content-Encoding": "gzip"}),
        "60 MB BYTES binary": byts,
    }


def summary(latencies: list[float], statuses: list[int]) -> dict[str, Any]:
    if not latencies:
        return {"probes": 0}
    a = np.array(latencies)
    return {
        "probes": len(latencies),
        "failures": sum(1 for s in statuses if s != 200),
        "p50_ms": round(float(np.percentile(a, 50)), 1),
        "p99_ms": round(float(np.percentile(a, 99)), 1),
        "max_ms": round(float(a.max()), 1),
        "under_100_ms_pct": round(100.0 * float((a < 100).mean()), 1),
    }


def probe(worker: Worker, seconds: float, interval: float, tmp: Path) -> subprocess.Popen[bytes]:
    body, headers = binary_body("FP32", [1, 64], np.full((1, 64), 0.5, np.float32).tobytes())
    (tmp / "small.bin").write_bytes(body)
    argv = [sys.executable, "-c", PROBE, str(worker.http), str(seconds), str(interval)]
    argv += [str(tmp / f"probe-{seconds}.json"), str(tmp / "small.bin")]
    argv += [headers["Inference-Header-Content-Length"], INFER]
    return subprocess.Popen(argv)


def classify(
    samples: list[list[Any]], busy: list[tuple[float, float]] | None
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kind in ("health", "infer"):
        lat: list[float] = []
        st: list[int] = []
        for k, start, ms, status in samples:
            if k != kind:
                continue
            if busy is not None and not any(a <= start < b for a, b in busy):
                continue
            lat.append(ms)
            st.append(status)
        out[kind] = summary(lat, st)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "examples"))
    import build_models

    tmp = Path(tempfile.mkdtemp(prefix="airt-responsive-"))
    build_models.build(tmp)
    worker = Worker(tmp, tmp / "worker.log")
    result: dict[str, Any] = {"duration_s_per_phase": args.duration, "interval_s": args.interval}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            await worker.wait_ready(session)
            # 1. idle
            p = probe(worker, args.duration, args.interval, tmp)
            await asyncio.to_thread(p.wait, args.duration + 60)
            idle = json.loads((tmp / f"probe-{args.duration}.json").read_text())
            result["idle"] = classify(idle, None)

            # 2. large requests back to back, each on its own connection
            bodies = large_requests()
            busy: list[tuple[float, float]] = []
            answers: dict[str, dict[str, int]] = {name: {} for name in bodies}
            seconds = args.duration + 0.001  # its own output file
            p = probe(worker, seconds, args.interval, tmp)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for name, (body, headers) in bodies.items():
                    start = time.monotonic()
                    async with (
                        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as one,
                        one.post(worker.base + INFER, data=body, headers=headers) as r,
                    ):
                        await r.read()
                        status = str(r.status)
                    busy.append((start, time.monotonic()))
                    answers[name][status] = answers[name].get(status, 0) + 1
            await asyncio.to_thread(p.wait, args.duration + 60)
            loaded = json.loads((tmp / f"probe-{seconds}.json").read_text())
            result["while_decoding"] = classify(loaded, busy)
            result["large_requests"] = answers
            result["large_request_s_total"] = round(sum(b - a for a, b in busy), 1)
            result["worker_alive"] = worker.proc.poll() is None
    finally:
        if worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGTERM)
            result["exit_code"] = worker.proc.wait(timeout=60)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=30.0, help="seconds per phase")
    ap.add_argument("--interval", type=float, default=0.02, help="pause between probe pairs")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

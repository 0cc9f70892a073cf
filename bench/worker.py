"""Worker benchmark: airt's worker against Triton (PyTriton), MLServer and the in-process limit.

Called by bench/run.py (`--worker`, `--quick`) and bench/gpu.sh (`--device cuda`); writes
`docs/benchmarks/worker[-quick|-gpu].json`. For each model (the overhead-bound MLP and the
compute-bound CNN from examples/build_models.py) and each server, one server process at a time
runs pinned to the server cores with the same thread count and batching (max batch 32, 1 ms
queue delay); for each protocol and concurrency, bench/loadgen.py runs pinned to the client
cores. Around each point the server's own batch statistics are read, and the limit for that
point is the in-process time of the same module at exactly that mix of batch sizes
(bench/limit.py's table). Ratios airt/peer and airt/limit are computed from these numbers only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    BENCH,
    CACHE,
    ROOT,
    client_cores,
    log,
    machine,
    now_iso,
    pinned,
    server_cores,
    write_result,
)
from limit import limit_for
from servers import MODELS, Running, ServeSettings, start

SERVERS = ("airt", "triton", "mlserver")
PROTOCOLS = ("http", "grpc")


def build_models(out: Path) -> Path:
    if not (out / "mlp.pt").exists() or not (out / "cnn.pt").exists():
        log(f"building example models into {out}")
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "build_models.py"), str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return out


def limit_table(model: str, models: Path, s: ServeSettings) -> dict[int, float]:
    m = MODELS[model]
    job = {
        "model": str(models / f"{model}.pt"),
        "dims": list(m.dims),
        "threads": s.threads,
        "device": s.device,
        "sizes": list(range(1, s.max_batch + 1)),
    }
    out = subprocess.run(
        [sys.executable, str(BENCH / "limit.py"), json.dumps(job)],
        check=True,
        capture_output=True,
        text=True,
        preexec_fn=pinned(set(s.cores)),
    )
    doc = json.loads(out.stdout)
    return {int(k): float(v) for k, v in doc["per_call_s"].items()}


def run_point(
    r: Running, protocol: str, concurrency: int, warmup_s: float, duration_s: float
) -> dict[str, Any]:
    wire = "http-json" if (r.server == "mlserver" and protocol == "http") else protocol
    job = {
        "protocol": wire,
        "http": r.http,
        "grpc": r.grpc,
        "model": r.model.name,
        "input": r.model.input,
        "dims": list(r.model.dims),
        "outputs": list(r.model.outputs),
        "concurrency": [concurrency],
        "warmup_s": warmup_s,
        "duration_s": duration_s,
    }
    before = r.batch_sizes()
    out = subprocess.run(
        [sys.executable, str(BENCH / "loadgen.py"), json.dumps(job)],
        check=True,
        capture_output=True,
        text=True,
        preexec_fn=pinned(client_cores()),
        timeout=warmup_s + duration_s + 120,
    )
    if r.batch_log is not None:
        time.sleep(1.2)  # MLServer's runtime flushes its batch count about once a second
    after = r.batch_sizes()
    point: dict[str, Any] = json.loads(out.stdout)[0]
    point["wire"] = wire
    point["batches"] = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    point["batches"] = {k: v for k, v in sorted(point["batches"].items()) if v > 0}
    return point


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def summarize(points: list[dict[str, Any]]) -> dict[str, Any]:
    """airt/peer and airt/limit at every (model, protocol, concurrency), and the targets."""
    index = {(p["server"], p["model"], p["protocol"], p["concurrency"]): p for p in points}
    ratios: list[dict[str, Any]] = []
    for (server, model, proto, conc), a in sorted(index.items()):
        if server != "airt":
            continue
        row: dict[str, Any] = {
            "model": model,
            "protocol": proto,
            "concurrency": conc,
            "airt_over_limit_samples": ratio(a["samples_per_s"], a.get("limit_samples_per_s")),
        }
        for peer in SERVERS[1:]:
            p = index.get((peer, model, proto, conc))
            if p is None:
                continue
            row[f"airt_over_{peer}_rps"] = ratio(a["requests_per_s"], p["requests_per_s"])
            row[f"airt_over_{peer}_p99"] = ratio(a["p99_ms"], p["p99_ms"])
        ratios.append(row)

    targets: list[dict[str, Any]] = []
    for proto in PROTOCOLS:
        a = index.get(("airt", "cnn", proto, 32))
        if a is not None:
            value = ratio(a["samples_per_s"], a.get("limit_samples_per_s"))
            targets.append(
                {
                    "target": f"cnn c=32 {proto}: airt samples/s >= 0.9 x in-process limit",
                    "value": value,
                    "met": value is not None and value >= 0.9,
                }
            )
        for peer, need in (("triton", 1.5), ("mlserver", 2.0)):
            a, p = index.get(("airt", "mlp", proto, 32)), index.get((peer, "mlp", proto, 32))
            if a is None or p is None:
                continue
            rps = ratio(a["requests_per_s"], p["requests_per_s"])
            p99 = ratio(a["p99_ms"], p["p99_ms"])
            targets.append(
                {
                    "target": f"mlp c=32 {proto}: airt req/s >= {need} x {peer}, p99 <= {peer}'s",
                    "value": rps,
                    "p99_ratio": p99,
                    "met": rps is not None and rps >= need and p99 is not None and p99 <= 1.0,
                }
            )
    return {"ratios": ratios, "targets": targets}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="c=1,32 and short points (~3 min)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--protocols", default=",".join(PROTOCOLS))
    ap.add_argument("--concurrency", default="")
    ap.add_argument("--duration", type=float, default=0.0, help="seconds measured per point")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default="", help="result file name (default from the flags)")
    a = ap.parse_args(argv)

    conc = [int(c) for c in a.concurrency.split(",") if c] or (
        [1, 32] if a.quick else [1, 8, 32, 64]
    )
    duration = a.duration or (2.0 if a.quick else 5.0)
    warmup = 0.5 if a.quick else 1.0
    cores = frozenset(server_cores())
    settings = ServeSettings(
        threads=a.threads, max_batch=32, delay_us=1000, device=a.device, cores=cores
    )
    default = "worker-gpu" if a.device == "cuda" else "worker-quick" if a.quick else "worker"
    name = a.name or default
    work = CACHE / "runs" / name
    work.mkdir(parents=True, exist_ok=True)
    models = build_models(CACHE / "models")

    started = now_iso()
    t_start = time.monotonic()
    points: list[dict[str, Any]] = []
    limits: dict[str, dict[str, float]] = {}
    for model in a.models.split(","):
        table = limit_table(model, models, settings)
        limits[model] = {str(k): v for k, v in table.items()}
        for server in a.servers.split(","):
            log(f"{model}: starting {server} on cores {sorted(settings.cores)}")
            try:
                r = start(server, MODELS[model], models, settings, work)
            except (RuntimeError, TimeoutError) as exc:
                log(f"{server} failed to start: {exc}")
                points.append({"server": server, "model": model, "start_error": str(exc)[-2000:]})
                continue
            try:
                for proto in a.protocols.split(","):
                    for c in conc:
                        p = run_point(r, proto, c, warmup, duration)
                        p.update(server=server, model=model, protocol=proto)
                        p["limit_samples_per_s"] = limit_for(p["batches"], table)
                        points.append(p)
                        log(
                            f"{server:8s} {model} {proto:4s} c={c:<3d} "
                            f"{p['requests_per_s']:8.0f} req/s  p50 {p['p50_ms'] or 0:6.2f} ms  "
                            f"p99 {p['p99_ms'] or 0:6.2f} ms  "
                            f"limit {p['limit_samples_per_s'] or 0:8.0f}"
                            f"  errors {p['errors']}  client cpu {p['client_cpu_util']:.0%}"
                        )
            finally:
                r.stop()

    good = [p for p in points if "requests_per_s" in p]
    doc = {
        "benchmark": "worker",
        "started": started,
        "finished": now_iso(),
        "wall_s": time.monotonic() - t_start,
        "machine": machine(),
        "settings": {
            "device": a.device,
            "threads": settings.threads,
            "max_batch_size": settings.max_batch,
            "max_queue_delay_us": settings.delay_us,
            "server_cores": sorted(settings.cores),
            "client_cores": sorted(client_cores()),
            "concurrency": conc,
            "warmup_s": warmup,
            "duration_s": duration,
            "rows_per_request": 1,
            "load_generator": "tritonclient aio (http binary / grpc), closed loop, own process",
        },
        "limit_per_call_s": limits,
        "points": points,
        **summarize(good),
    }
    path = write_result(name, doc)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

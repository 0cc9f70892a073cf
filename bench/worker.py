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
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
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

SERVERS = ("airt", "triton", "mlserver", "kserve")
PROTOCOLS = ("http", "grpc")


def build_models() -> Path:
    """The example models (built once per builder and torch version: examples/model_cache.py)."""
    built = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "model_cache.py")],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(built.stdout.strip())


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
    r: Running, protocol: str, concurrency: int, warmup_s: float, duration_s: float, rows: int
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
        "rows": rows,
        "warmup_s": warmup_s,
        "duration_s": duration_s,
    }
    before = r.batch_stats()
    cpu_before = r.cpu_s()
    out = subprocess.run(
        [sys.executable, str(BENCH / "loadgen.py"), json.dumps(job)],
        check=True,
        capture_output=True,
        text=True,
        preexec_fn=pinned(client_cores()),
        timeout=warmup_s + duration_s + 120,
    )
    if r.batch_log is not None:
        time.sleep(1.2)  # MLServer's and KServe's models flush their counts about once a second
    after = r.batch_stats()
    cpu_after = r.cpu_s()
    point: dict[str, Any] = json.loads(out.stdout)[0]
    point["wire"] = wire
    wall = point["elapsed_s"] + warmup_s
    cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_after}
    # Share of one core's time (warm-up included): all of the server, and its main thread.
    point["server_cpu_util"] = cpu["total"] / wall
    point["server_main_thread_cpu_util"] = cpu["main_thread"] / wall
    batches = {k: n - before.get(k, (0, 0))[0] for k, (n, _) in after.items()}
    point["batches"] = {k: v for k, v in sorted(batches.items()) if v > 0}
    # The server's own time in the model during the point (warm-up included, like the counts):
    # rows / that time is how fast the model ran inside the server, to hold against the limit.
    if all(ns is not None for _, ns in after.values()):
        infer_ns = sum((ns or 0) - (before.get(k, (0, 0))[1] or 0) for k, (_, ns) in after.items())
        rows = sum(k * v for k, v in point["batches"].items())
        point["server_model_s"] = infer_ns / 1e9
        point["server_model_rows_per_s"] = rows / (infer_ns / 1e9) if infer_ns else None
        point["server_model_busy"] = infer_ns / 1e9 / wall
    return point


def idle_cpu(running: dict[str, Running], seconds: float) -> dict[str, float]:
    """CPU share each idle server (process group) takes: they share cores during the points."""

    def cpu(pgid: int) -> float:
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    before = {name: cpu(r.proc.pid) for name, r in running.items()}
    time.sleep(seconds)
    return {name: (cpu(r.proc.pid) - before[name]) / seconds for name, r in running.items()}


def interleaved(
    running: dict[str, Running],
    protocol: str,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    rounds: int,
    rows: int,
    table: dict[int, float],
) -> list[tuple[str, dict[str, Any]]]:
    """Each server in turn, `rounds` times (order rotated each round); keep each one's best.

    The machine is shared and its load changes by the second, so servers measured minutes
    apart would see different machines. Alternating them point by point, and keeping the round
    with the most requests/s (the least disturbed), compares them under the same conditions.
    Every round is kept in the result under `rounds`.
    """
    names = list(running)
    seen: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for i in range(rounds):
        order = names[i % len(names) :] + names[: i % len(names)] if names else []
        for name in order:
            p = run_point(running[name], protocol, concurrency, warmup_s, duration_s, rows)
            p["limit_samples_per_s"] = limit_for(p["batches"], table)
            seen[name].append(p)
    out: list[tuple[str, dict[str, Any]]] = []
    for name in names:
        best = dict(max(seen[name], key=lambda p: p["requests_per_s"]))
        best["rounds"] = [
            {k: p[k] for k in ("requests_per_s", "p50_ms", "p99_ms")} for p in seen[name]
        ]
        out.append((name, best))
    return out


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
        cnn = index.get(("airt", "cnn", proto, 32))
        if cnn is not None:
            value = ratio(cnn["samples_per_s"], cnn.get("limit_samples_per_s"))
            targets.append(
                {
                    "target": f"cnn c=32 {proto}: airt samples/s >= 0.9 x in-process limit",
                    "value": value,
                    "met": value is not None and value >= 0.9,
                }
            )
        for peer, need in (("triton", 1.5), ("mlserver", 2.0)):
            ours, theirs = (
                index.get(("airt", "mlp", proto, 32)),
                index.get((peer, "mlp", proto, 32)),
            )
            if ours is None or theirs is None:
                continue
            rps = ratio(ours["requests_per_s"], theirs["requests_per_s"])
            p99 = ratio(ours["p99_ms"], theirs["p99_ms"])
            targets.append(
                {
                    "target": f"mlp c=32 {proto}: airt req/s >= {need} x {peer}, p99 <= {peer}'s",
                    "value": rps,
                    "p99_ratio": p99,
                    "met": rps is not None and rps >= need and p99 is not None and p99 <= 1.0,
                }
            )
    return {"ratios": ratios, "targets": targets}


@dataclass
class Plan:
    """One worker benchmark run: what to measure, and what has been measured so far."""

    name: str
    device: str
    servers: list[str]
    models: list[str]
    protocols: list[str]
    concurrency: list[int]
    warmup_s: float
    duration_s: float
    rounds: int
    rows: int
    settings: ServeSettings
    model_dir: Path
    work: Path
    started: str = field(default_factory=now_iso)
    t_start: float = field(default_factory=time.monotonic)
    points: list[dict[str, Any]] = field(default_factory=list)
    limits: dict[str, dict[str, float]] = field(default_factory=dict)
    idle: dict[str, dict[str, float]] = field(default_factory=dict)


def run_model(plan: Plan, model: str) -> None:
    """Start every server for `model`, then measure each (protocol, concurrency), interleaved."""
    table = limit_table(model, plan.model_dir, plan.settings)
    running: dict[str, Running] = {}
    try:
        for server in plan.servers:
            log(f"{model}: starting {server} on cores {sorted(plan.settings.cores)}")
            try:
                running[server] = start(
                    server, MODELS[model], plan.model_dir, plan.settings, plan.work
                )
            except (RuntimeError, TimeoutError) as exc:
                log(f"{server} failed to start: {exc}")
                plan.points.append(
                    {"server": server, "model": model, "start_error": str(exc)[-2000:]}
                )
        plan.idle[model] = idle_cpu(running, 3.0)
        for proto in plan.protocols:
            for c in plan.concurrency:
                for server, point in interleaved(
                    running,
                    proto,
                    c,
                    plan.warmup_s,
                    plan.duration_s,
                    plan.rounds,
                    plan.rows,
                    table,
                ):
                    point.update(server=server, model=model, protocol=proto)
                    plan.points.append(point)
                    log(
                        f"{server:8s} {model} {proto:4s} c={c:<3d} "
                        f"{point['requests_per_s']:8.0f} req/s  "
                        f"p50 {point['p50_ms'] or 0:6.2f} ms  "
                        f"p99 {point['p99_ms'] or 0:6.2f} ms  "
                        f"limit {point['limit_samples_per_s'] or 0:8.0f}  "
                        f"errors {point['errors']}  client cpu {point['client_cpu_util']:.0%}"
                    )
    finally:
        for r in running.values():
            r.stop()
    # Measured again once the servers are gone; the faster of the two stands for each size
    # (the limit is a best case). Points took theirs from the first table; recompute them.
    again = limit_table(model, plan.model_dir, plan.settings)
    best = {k: min(v, again.get(k, v)) for k, v in table.items()}
    plan.limits[model] = {str(k): v for k, v in best.items()}
    for p in plan.points:
        if p.get("model") == model and "batches" in p:
            p["limit_samples_per_s"] = limit_for(p["batches"], best)


def write_doc(plan: Plan) -> None:
    good = [p for p in plan.points if "requests_per_s" in p]
    s = plan.settings
    doc = {
        "benchmark": "worker",
        "started": plan.started,
        "finished": now_iso(),
        "wall_s": time.monotonic() - plan.t_start,
        "machine": machine(),
        "settings": {
            "device": plan.device,
            "threads": s.threads,
            "max_batch_size": s.max_batch,
            "max_queue_delay_us": s.delay_us,
            "server_cores": sorted(s.cores),
            "client_cores": sorted(client_cores()),
            "concurrency": plan.concurrency,
            "warmup_s": plan.warmup_s,
            "duration_s": plan.duration_s,
            "rounds": plan.rounds,
            "idle_server_cpu_util": plan.idle,
            "rows_per_request": plan.rows,
            "load_generator": "tritonclient aio (http binary / grpc), closed loop, own process",
        },
        "limit_per_call_s": plan.limits,
        "points": plan.points,
        **summarize(good),
    }
    path = write_result(plan.name, doc)
    log(f"wrote {path} ({len(good)} points)")


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
    ap.add_argument("--rounds", type=int, default=0, help="alternations per point (default 2)")
    ap.add_argument("--rows", type=int, default=1, help="rows (samples) per request")
    ap.add_argument("--name", default="", help="result file name (default from the flags)")
    a = ap.parse_args(argv)

    default = "worker-gpu" if a.device == "cuda" else "worker-quick" if a.quick else "worker"
    name = a.name or default
    plan = Plan(
        name=name,
        device=a.device,
        servers=a.servers.split(","),
        models=a.models.split(","),
        protocols=a.protocols.split(","),
        concurrency=[int(c) for c in a.concurrency.split(",") if c]
        or ([1, 32] if a.quick else [1, 8, 32, 64]),
        warmup_s=0.5,
        duration_s=a.duration or (1.5 if a.quick else 3.0),
        rounds=a.rounds or (1 if a.quick else 2),
        rows=a.rows,
        settings=ServeSettings(
            threads=a.threads,
            max_batch=32,
            delay_us=1000,
            device=a.device,
            cores=frozenset(server_cores()),
        ),
        model_dir=build_models(),
        work=CACHE / "runs" / name,
    )
    plan.work.mkdir(parents=True, exist_ok=True)
    # A SIGTERM (a time budget's `timeout`) must still stop the servers and keep the results.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for model in plan.models:
            run_model(plan, model)
    finally:
        write_doc(plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())

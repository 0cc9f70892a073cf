"""Throughput of two worker revisions in the same run, interleaved (A B A B ...).

For checking that a change to the worker costs no throughput: the worker package of another
revision (extracted with `git archive <rev> runtime-images/worker | tar -x -C DIR`) runs beside
the working tree's, on the benchmark's small model (mlp) with the benchmark's batching settings
(bench/servers.py), and bench/loadgen.py measures each in turn, `--rounds` times per protocol,
so drift of a shared machine falls on both alike. Besides requests/s it reports the worker's own
CPU time per request (utime + stime from /proc over the measured point, warm-up included, divided
by the requests answered), which other load on a shared machine barely moves: the figure to
compare when requests/s is noisy.

    git archive 7dccb4b runtime-images/worker | tar -x -C /tmp/base
    uv run python bench/ab_throughput.py --base /tmp/base/runtime-images/worker --rounds 3

Prints one JSON document: each round's requests/s per revision and protocol, and the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from overload import free_port  # noqa: E402


def start(models: Path, source: Path | None, log: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    http, grpc, metrics = free_port(), free_port(), free_port()
    env = dict(os.environ)
    if source is not None:  # the other revision's package first on the path
        env["PYTHONPATH"] = str(source)
    argv = [
        sys.executable, "-m", "airt_worker",
        "--model-path", str(models / "mlp.pt"), "--config-file", str(models / "mlp.yaml"),
        "--threads", "1", "--batching.max-batch-size", "32",
        "--batching.max-queue-delay-microseconds", "1000", "--host", "127.0.0.1",
        "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics),
        "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2):
                return proc, http, grpc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(log.read_text()) from None
            time.sleep(0.2)
    raise TimeoutError("worker not ready")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    http: int, grpc: int, protocol: str, concurrency: int, seconds: float
) -> dict[str, Any]:
    job = {
        "http": f"127.0.0.1:{http}",
        "grpc": f"127.0.0.1:{grpc}",
        "protocol": protocol,
        "model": "mlp",
        "input": "features",
        "dims": [64],
        "outputs": ["logits", "probabilities"],
        "concurrency": [concurrency],
        "warmup_s": 3,
        "duration_s": seconds,
    }
    out = subprocess.run(
        [sys.executable, str(BENCH / "loadgen.py"), json.dumps(job)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    point: dict[str, Any] = json.loads(out)[0]
    return point


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, required=True, help="the other revision's worker dir")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--protocols", default="http,grpc")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "examples"))
    import build_models

    tmp = Path(tempfile.mkdtemp(prefix="airt-ab-"))
    build_models.build(tmp)
    servers = {
        "base": start(tmp, args.base.resolve(), tmp / "base.log"),
        "head": start(tmp, None, tmp / "head.log"),
    }
    rounds: list[dict[str, Any]] = []
    try:
        for r in range(args.rounds):
            for protocol in args.protocols.split(","):
                order = ("base", "head") if r % 2 == 0 else ("head", "base")
                for name in order:
                    proc, http, grpc = servers[name]
                    cpu0 = cpu_seconds(proc.pid)
                    point = measure(http, grpc, protocol, args.concurrency, args.seconds)
                    cpu = cpu_seconds(proc.pid) - cpu0
                    answered = point["requests_per_s"] * (args.seconds + 3)  # warm-up included
                    rounds.append(
                        {
                            "round": r,
                            "protocol": protocol,
                            "rev": name,
                            "req_s": point["requests_per_s"],
                            "server_cpu_us_per_req": 1e6 * cpu / max(answered, 1),
                        }
                    )
    finally:
        for proc, _, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    medians: dict[str, Any] = {}
    for protocol in args.protocols.split(","):
        med: dict[str, float] = {}
        for key in ("req_s", "server_cpu_us_per_req"):
            for name in ("base", "head"):
                med[f"{name}_{key}"] = statistics.median(
                    x[key] for x in rounds if x["protocol"] == protocol and x["rev"] == name
                )
            med[f"{key}_change_pct"] = round(100 * (med[f"head_{key}"] / med[f"base_{key}"] - 1), 1)
        medians[protocol] = med
    print(json.dumps({"rounds": rounds, "medians": medians}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

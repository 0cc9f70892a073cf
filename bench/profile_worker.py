"""Profile airt's worker hot path under load with py-spy; write the top frames.

Called by bench/run.py (`--worker`, unless `--no-profile`); writes
`docs/benchmarks/profile-<model>-<protocol>.json` and the raw collapsed stacks next to the
run's logs. The worker runs pinned to the server cores exactly as in bench/worker.py; the load
generator (bench/loadgen.py, concurrency 32) runs pinned to the client cores while py-spy
(installed in its own venv by bench/peers/venvs.py) samples the worker at 200 Hz without pausing
it (`--nonblocking`), per thread (`--threads`). Only on-CPU samples are kept (py-spy's default,
idle excluded), so the shares say where the worker's CPU goes. Python frames only: time inside a
C extension (uvloop's loop, gRPC's Cython core, torch's kernels) is the self time of the Python
frame that called it — `Runner.run` for the event loop, `Thread.run` for gRPC's poller thread,
`Module._call_impl` for the model. (`--native` was tried: its blocking sampler counted threads
waiting on futexes and epoll as busy, which hid more than it showed.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import BENCH, CACHE, client_cores, log, now_iso, pinned, server_cores, venv_python
from servers import MODELS, ServeSettings, start
from stacks import top_frames
from worker import build_models


def profile(model: str, protocol: str, seconds: float, work: Path) -> dict[str, Any]:
    settings = ServeSettings(cores=frozenset(server_cores()))
    models = build_models()
    r = start("airt", MODELS[model], models, settings, work)
    collapsed = work / f"profile-{model}-{protocol}.collapsed"
    try:
        job = {
            "protocol": protocol,
            "http": r.http,
            "grpc": r.grpc,
            "model": model,
            "input": MODELS[model].input,
            "dims": list(MODELS[model].dims),
            "outputs": list(MODELS[model].outputs),
            "concurrency": [32],
            "warmup_s": 1.0,
            "duration_s": seconds + 3,
        }
        load = subprocess.Popen(
            [sys.executable, str(BENCH / "loadgen.py"), json.dumps(job)],
            stdout=subprocess.PIPE,
            preexec_fn=pinned(client_cores()),
        )
        time.sleep(1.5)
        py_spy = venv_python("tools").parent / "py-spy"
        subprocess.run(
            [
                str(py_spy),
                "record",
                "--pid",
                str(r.proc.pid),
                "--rate",
                "200",
                "--threads",
                "--duration",
                str(int(seconds)),
                "--format",
                "raw",
                "--output",
                str(collapsed),
                "--nonblocking",
            ],
            check=True,
            capture_output=True,
        )
        out, _ = load.communicate(timeout=seconds + 120)
        point = json.loads(out)[0]
    finally:
        r.stop()
    return {
        "model": model,
        "protocol": protocol,
        "concurrency": 32,
        "taken": now_iso(),
        "requests_per_s_while_profiled": point["requests_per_s"],
        "collapsed": str(collapsed),
        **top_frames(collapsed),
    }


def main(argv: list[str] | None = None) -> int:
    from common import write_result

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--targets", default="mlp:grpc,mlp:http,cnn:grpc")
    ap.add_argument("--suffix", default="", help="appended to the result names (e.g. -quick)")
    a = ap.parse_args(argv)
    work = CACHE / "runs" / "profile"
    work.mkdir(parents=True, exist_ok=True)
    for target in a.targets.split(","):
        model, protocol = target.split(":")
        log(f"profiling airt {model} over {protocol} at c=32 for {a.seconds:g} s")
        doc = profile(model, protocol, a.seconds, work)
        path = write_result(f"profile-{model}-{protocol}{a.suffix}", doc)
        log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

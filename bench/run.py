"""`make bench`: run the benchmarks, then write the plots and the results tables.

Called by `make bench` (`uv run python bench/run.py`) or by hand with flags that pick parts:

    uv run python bench/run.py                  # worker + profile + operator (~35 min here)
    uv run python bench/run.py --worker         # worker vs Triton, MLServer, limit (+ profile)
    uv run python bench/run.py --operator       # operator scale: 100, 300, 1,000
    uv run python bench/run.py --quick          # a short pass of each part (~3 min each)
    uv run python bench/run.py --gpu            # worker on CUDA (bench/gpu.sh does the same)
    uv run python bench/run.py --report         # only redo plots and tables from the JSON

Results land in docs/benchmarks/ (JSON, PNG) and the tables in docs/benchmarks/results.md.
Nothing here passes or fails on a number; a part that cannot run says why and the rest go on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import operator_scale
import profile_worker
import report
import worker
from common import log
from peers import venvs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", action="store_true", help="the worker benchmark and profile")
    ap.add_argument("--operator", action="store_true", help="the operator scale benchmark")
    ap.add_argument("--gpu", action="store_true", help="the worker benchmark on CUDA")
    ap.add_argument("--quick", action="store_true", help="short versions of the chosen parts")
    ap.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    ap.add_argument("--report", action="store_true", help="only plots and tables from the JSON")
    a = ap.parse_args(argv)

    everything = not (a.worker or a.operator or a.gpu or a.report)
    quick = ["--quick"] if a.quick else []
    failed: list[str] = []
    if a.worker or a.gpu or (everything and not a.report):
        for peer in venvs.PEERS:
            venvs.ensure(peer)
    if a.worker or everything:
        if worker.main(quick) != 0:
            failed.append("worker")
        if not a.no_profile:
            targets = (
                ["--targets", "mlp:grpc", "--seconds", "6", "--suffix=-quick"] if a.quick else []
            )
            if profile_worker.main(targets) != 0:
                failed.append("profile")
    if a.gpu and worker.main(["--device", "cuda", *quick]) != 0:
        failed.append("gpu")
    if (a.operator or everything) and operator_scale.main(quick) != 0:
        failed.append("operator")
    report.main([])
    if failed:
        log(f"parts that failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

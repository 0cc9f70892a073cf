"""Memory probe for the operator benchmark (bench/operator_scale.py --memprofile).

Python imports `sitecustomize` at start-up when it is on the path; the benchmark puts this
directory on the operator's PYTHONPATH only when it profiles memory. With
AIRT_BENCH_TRACEMALLOC=<frames> set, tracemalloc starts before anything is imported, and
SIGUSR1 writes a snapshot to AIRT_BENCH_TRACEMALLOC_OUT (the benchmark sends it at the point it
wants to look at: all ModelDeployments Ready). Nothing here runs in a normal operator process.
"""

import os
import signal
import tracemalloc
from pathlib import Path

_frames = os.environ.get("AIRT_BENCH_TRACEMALLOC")
if _frames:
    tracemalloc.start(int(_frames))

    def _dump(_signum: int, _frame: object) -> None:
        out = Path(os.environ.get("AIRT_BENCH_TRACEMALLOC_OUT", "/tmp/airt-operator.tracemalloc"))
        tmp = out.with_suffix(".tmp")
        tracemalloc.take_snapshot().dump(str(tmp))
        tmp.replace(out)

    signal.signal(signal.SIGUSR1, _dump)

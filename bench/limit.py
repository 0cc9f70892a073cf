"""The in-process limit: the same TorchScript module called directly by torch, no server.

Run as its own process by bench/worker.py, pinned to the server cores with the server's thread
count, once per model, for every batch size a server may form (1..max batch):

    python bench/limit.py '{"model": ".../cnn.pt", "dims": [3,32,32], "threads": 1,
                            "device": "cpu", "sizes": [1, 2, ..., 32]}'

It prints the seconds of one call at each batch size (lower decile, after a warm-up). `limit_for`
turns that table and the batch sizes a server formed during a point (from its statistics) into
the samples/s the server would reach if it spent nothing but these model calls: total rows over
total model time for that batch-size mix.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings
from typing import Any

import numpy as np
import torch

from loadgen import input_pool


def time_call(module: Any, x: torch.Tensor, device: torch.device, budget_s: float) -> float:
    """Seconds of one call: the lower decile of at least 20 calls or `budget_s` of calling.

    A limit is a best case, and the machine is shared: the lower decile drops the calls that
    other processes slowed down without resting on a single lucky one.
    """

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        for _ in range(5):
            module(x)
        sync()
        samples: list[float] = []
        end = time.perf_counter() + budget_s
        while len(samples) < 20 or time.perf_counter() < end:
            t0 = time.perf_counter()
            module(x)
            sync()
            samples.append(time.perf_counter() - t0)
            if len(samples) >= 2000:
                break
    return statistics.quantiles(samples, n=10)[0]


def limit_for(batches: dict[int, int], per_call_s: dict[int, float]) -> float | None:
    """Samples/s of nothing but model calls, for a server's mix of batch sizes.

    None when the server formed a batch size the table lacks (MLServer's max_batch_size counts
    requests, not rows, so multi-row requests can make batches larger than the table's).
    """
    if any(rows not in per_call_s for rows in batches):
        return None
    total_rows = sum(rows * n for rows, n in batches.items())
    total_s = sum(per_call_s[rows] * n for rows, n in batches.items())
    return total_rows / total_s if total_s else None


def main() -> int:
    job = json.loads(sys.argv[1])
    torch.set_num_threads(int(job["threads"]))
    device = torch.device(job.get("device", "cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(job["model"], map_location=device).eval()  # type: ignore[no-untyped-call]
    per_call: dict[str, float] = {}
    pool = torch.from_numpy(np.concatenate(input_pool(job["dims"]))).to(device)
    for rows in job["sizes"]:
        # The rows the load generator sends, so the data is what the servers batch together.
        x = pool[: int(rows)].contiguous()
        per_call[str(rows)] = time_call(module, x, device, float(job.get("budget_s", 0.1)))
    print(json.dumps({"per_call_s": per_call, "threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

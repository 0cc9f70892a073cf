#!/usr/bin/env bash
# The GPU variant of the worker benchmark: airt, Triton (PyTriton) and MLServer on CUDA, with the
# in-process limit, on one NVIDIA GPU (sized for an H200 and a 10-minute budget).
#
# Run from the repository root on a machine with an NVIDIA GPU, its driver, and the project's
# environment (`make setup`, or `uv sync --all-extras`); the peer venvs are created on first use
# (bench/peers/venvs.py, PyPI needed) unless they already exist under ~/.cache/airt/bench-venvs.
#   bash bench/gpu.sh            # writes docs/benchmarks/worker-gpu.json and its plots
#   GPU_BENCH_BUDGET_S=300 bash bench/gpu.sh
# Servers get the first half of the CPU cores, the load generator the other half; every server
# runs its model on cuda:0 with the same batching (max batch 32, 1 ms delay). One round per
# point, 3 s measured, so the 48 points take about 5 minutes plus server start-up; the whole run
# is killed at GPU_BENCH_BUDGET_S (default 570 s) so it ends inside 10 minutes in any case.
set -euo pipefail
cd "$(dirname "$0")/.."

budget="${GPU_BENCH_BUDGET_S:-570}"
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L | grep -q GPU; then
    echo "bench/gpu.sh: no NVIDIA GPU visible (nvidia-smi -L); nothing run" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
uv run python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)' || {
    echo "bench/gpu.sh: torch in the project env cannot see the GPU" >&2
    exit 3
}
uv run python bench/peers/venvs.py
# timeout's own SIGTERM reaches the harness, whose finally-blocks stop every server it started.
timeout --signal=TERM --kill-after=20 "$budget" \
    uv run python bench/worker.py --device cuda --rounds 1 --duration 3 --name worker-gpu
uv run python bench/report.py

"""Serve a TorchScript model with Triton Inference Server through nvidia-pytriton 0.7.0.

Runs inside the `triton` peer venv (never the project env); started by bench/servers.py, pinned
to the server cores (the tritonserver child and its Python-backend stub inherit the affinity).
The infer function is PyTriton's `@batch` over `torch.jit.load`, with the same thread count,
max batch size and queue delay airt's worker gets. Statistics are left unrestricted
(`restricted_endpoints=[]`) so the harness can read the batch sizes Triton formed.

    python triton_server.py --model cnn.pt --name cnn --input image --dims 3,32,32 \
        --outputs logits --http-port 8000 --grpc-port 8001 --metrics-port 8002 \
        --threads 1 --max-batch 32 --delay-us 1000 [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import torch
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--dims", required=True, help="per-row dims, comma separated")
    p.add_argument("--outputs", required=True, help="output names, comma separated")
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-batch", type=int, default=32)
    p.add_argument("--delay-us", type=int, default=1000)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    module = torch.jit.load(a.model, map_location=device).eval()
    outputs = a.outputs.split(",")
    dims = tuple(int(d) for d in a.dims.split(","))

    @batch  # type: ignore[misc]
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(inputs[a.input]).to(device)
        with torch.inference_mode():
            out: Any = module(x)
        if isinstance(out, torch.Tensor):
            out = {outputs[0]: out}
        return {k: out[k].cpu().numpy() for k in outputs}

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=a.http_port,
        grpc_address="127.0.0.1",
        grpc_port=a.grpc_port,
        metrics_port=a.metrics_port,
        log_verbose=0,
    )
    with Triton(
        config=config, security_config=TritonSecurityConfig(restricted_endpoints=[])
    ) as triton:
        triton.bind(
            model_name=a.name,
            infer_func=infer,
            inputs=[Tensor(name=a.input, dtype=np.float32, shape=dims)],
            outputs=[Tensor(name=o, dtype=np.float32, shape=(-1,)) for o in outputs],
            config=ModelConfig(
                max_batch_size=a.max_batch,
                batcher=DynamicBatcher(max_queue_delay_microseconds=a.delay_us),
            ),
            strict=False,
        )
        triton.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())

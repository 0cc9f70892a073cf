"""Serve a TorchScript model with KServe's Python ModelServer (kserve 0.21.0), for the benchmark.

Runs inside the `kserve` peer venv (never the project env); started by bench/servers.py, pinned
to the server cores. The model is a `kserve.Model` whose `predict` takes the v2 (Open Inference
Protocol) request as KServe decodes it — REST with the binary tensor extension, or gRPC — and
answers with binary/raw output tensors, so both protocols are like for like with the others.

KServe's Python ModelServer has no server-side batching: KServe batches in its Go agent, a
sidecar that is not part of this package. Every request is therefore one model call; the model
counts its calls by rows and writes them to --batch-log about once a second (the harness's
in-process limit is computed from them, as for MLServer).

    python kserve_server.py --model mlp.pt --name mlp --outputs logits,probabilities \
        --http-port 8000 --grpc-port 8001 --threads 1 --batch-log batches.json [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import kserve
import torch
from kserve import InferOutput, InferRequest, InferResponse


class TorchScriptModel(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str, outputs: list[str], device: str, log: Path) -> None:
        super().__init__(name)
        self._path, self._outputs, self._device = path, outputs, torch.device(device)
        self._log = log
        self._batches: Counter[int] = Counter()
        self._flushed = time.monotonic()
        self.load()

    def load(self) -> bool:
        self._module = torch.jit.load(self._path, map_location=self._device).eval()
        self.ready = True
        return True

    async def predict(
        self, payload: InferRequest, headers: Any = None, response_headers: Any = None
    ) -> InferResponse:
        array = payload.inputs[0].as_numpy()
        x = torch.from_numpy(array).to(self._device)
        with torch.inference_mode():
            out: Any = self._module(x)
        if isinstance(out, torch.Tensor):
            out = {self._outputs[0]: out}
        self._batches[int(array.shape[0])] += 1
        if time.monotonic() - self._flushed > 1.0:
            self._log.write_text(json.dumps(dict(self._batches)))
            self._flushed = time.monotonic()
        outputs = []
        for name in self._outputs:
            data = out[name].cpu().numpy()
            o = InferOutput(name=name, shape=list(data.shape), datatype="FP32")
            o.set_data_from_numpy(data, binary_data=True)
            outputs.append(o)
        return InferResponse(
            model_name=self.name, infer_outputs=outputs, response_id=payload.id or ""
        )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--outputs", required=True, help="output names, comma separated")
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-log", required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = TorchScriptModel(a.name, a.model, a.outputs.split(","), a.device, Path(a.batch_log))
    server = kserve.ModelServer(
        http_port=a.http_port,
        grpc_port=a.grpc_port,
        workers=1,
        enable_docs_url=False,
        enable_latency_logging=False,
    )
    # Like the other servers, no per-request logging (KServe logs every gRPC call at INFO).
    for name in ("kserve", "kserve.trace", "uvicorn", "uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())

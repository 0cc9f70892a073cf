"""An MLServer 1.7.1 custom runtime that serves a TorchScript model, for the benchmark.

Runs inside the `mlserver` peer venv, imported by `mlserver start` (bench/servers.py writes the
settings.json and model-settings.json that name it and puts this folder on PYTHONPATH). MLServer
has no statistics endpoint, so the runtime itself counts the batch sizes that adaptive batching
formed and writes them to `parameters.extra.batch_log` (JSON, rows -> batches) about once a
second; the harness reads that file for the in-process limit.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class TorchScriptRuntime(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        extra: dict[str, Any] = self.settings.parameters.extra or {}
        torch.set_num_threads(int(extra.get("threads", 1)))
        self._device = torch.device(str(extra.get("device", "cpu")))
        self._module = torch.jit.load(self.settings.parameters.uri, map_location=self._device)
        self._module.eval()
        self._outputs: list[str] = list(extra["outputs"])
        self._batch_log = Path(extra["batch_log"]) if extra.get("batch_log") else None
        self._batches: Counter[int] = Counter()
        self._flushed = time.monotonic()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        array = NumpyCodec.decode_input(payload.inputs[0])
        x = torch.from_numpy(array).to(self._device)
        with torch.inference_mode():
            out: Any = self._module(x)
        if isinstance(out, torch.Tensor):
            out = {self._outputs[0]: out}
        self._batches[int(array.shape[0])] += 1
        if self._batch_log is not None and time.monotonic() - self._flushed > 1.0:
            self._batch_log.write_text(json.dumps(dict(self._batches)))
            self._flushed = time.monotonic()
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                NumpyCodec.encode_output(name, out[name].cpu().numpy()) for name in self._outputs
            ],
        )

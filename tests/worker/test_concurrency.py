"""64 concurrent batch-1 clients: each gets its own correct answer; the batcher forms batches."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import torch
import tritonclient.grpc.aio as aiogrpcclient
import tritonclient.http.aio as aiohttpclient
from workerproc import Worker

CLIENTS = 64
ROUNDS = 4


def batch_counts(stats: dict[str, Any]) -> dict[int, int]:
    return {
        int(b["batch_size"]): int(b["compute_infer"]["count"])
        for b in stats["model_stats"][0]["batch_stats"]
    }


def inputs_for(client: int, round_: int) -> np.ndarray:
    return np.random.default_rng(client * 1000 + round_).standard_normal((1, 64), np.float32)


def reference_logits(reference: Any, xs: list[np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        out = reference("mlp.pt")(torch.from_numpy(np.concatenate(xs)))
    logits: np.ndarray = out["logits"].numpy()
    return logits


async def test_64_http_clients_batch(workers: dict[str, Worker], reference: Any) -> None:
    mlp = workers["mlp"]
    clients = [aiohttpclient.InferenceServerClient(mlp.http) for _ in range(CLIENTS)]
    try:
        before = batch_counts(await clients[0].get_inference_statistics("mlp"))

        async def one(i: int, client: Any) -> list[np.ndarray]:
            got = []
            for r in range(ROUNDS):
                inp = aiohttpclient.InferInput("features", [1, 64], "FP32")
                inp.set_data_from_numpy(inputs_for(i, r))
                result = await client.infer("mlp", [inp], request_id=f"{i}-{r}")
                assert result.get_response()["id"] == f"{i}-{r}"
                got.append(result.as_numpy("logits"))
            return got

        results = await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))
        after = batch_counts(await clients[0].get_inference_statistics("mlp"))
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    xs = [inputs_for(i, r) for i in range(CLIENTS) for r in range(ROUNDS)]
    want = reference_logits(reference, xs)
    got = np.concatenate([x for per_client in results for x in per_client])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    new = {size: after.get(size, 0) - before.get(size, 0) for size in after}
    new = {size: n for size, n in new.items() if n}
    print(f"batch sizes under {CLIENTS} http clients (size: executions): {sorted(new.items())}")
    assert sum(size * n for size, n in new.items()) == CLIENTS * ROUNDS
    assert max(new) > 1, f"no batch larger than 1 was formed: {new}"


async def test_64_grpc_clients_batch(workers: dict[str, Worker], reference: Any) -> None:
    mlp = workers["mlp"]
    client = aiogrpcclient.InferenceServerClient(mlp.grpc)
    try:
        before = batch_counts(await client.get_inference_statistics("mlp", as_json=True))

        async def one(i: int) -> list[np.ndarray]:
            got = []
            for r in range(ROUNDS):
                inp = aiogrpcclient.InferInput("features", [1, 64], "FP32")
                inp.set_data_from_numpy(inputs_for(i, r))
                result = await client.infer("mlp", [inp])
                got.append(result.as_numpy("logits"))
            return got

        results = await asyncio.gather(*(one(i) for i in range(CLIENTS)))
        after = batch_counts(await client.get_inference_statistics("mlp", as_json=True))
    finally:
        await client.close()
    xs = [inputs_for(i, r) for i in range(CLIENTS) for r in range(ROUNDS)]
    got = np.concatenate([x for per_client in results for x in per_client])
    np.testing.assert_allclose(got, reference_logits(reference, xs), rtol=1e-5, atol=1e-6)
    new = {size: after.get(size, 0) - before.get(size, 0) for size in after}
    new = {size: n for size, n in new.items() if n}
    print(f"batch sizes under {CLIENTS} grpc streams (size: executions): {sorted(new.items())}")
    assert sum(size * n for size, n in new.items()) == CLIENTS * ROUNDS
    assert max(new) > 1, f"no batch larger than 1 was formed: {new}"

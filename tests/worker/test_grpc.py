"""tritonclient.grpc (sync, aio and streaming) against a real worker, plus typed-contents input."""

from __future__ import annotations

import queue
from typing import Any

import grpc
import numpy as np
import pytest
import torch
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aiogrpcclient
from tritonclient.grpc import service_pb2, service_pb2_grpc
from workerproc import Worker


def expected(reference: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        out = reference("mlp.pt")(torch.from_numpy(x))
    return {k: v.numpy() for k, v in out.items()}


def features(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 64), dtype=np.float32)


@pytest.fixture(scope="module")
def mlp(workers: dict[str, Worker]) -> Worker:
    return workers["mlp"]


@pytest.fixture
def client(mlp: Worker) -> Any:
    c = grpcclient.InferenceServerClient(mlp.grpc)
    yield c
    c.close()


def test_health_metadata_config(client: Any) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mlp")
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "airt"
    assert "statistics" in meta["extensions"]
    model = client.get_model_metadata("mlp", as_json=True)
    assert model["inputs"] == [{"name": "features", "datatype": "FP32", "shape": ["-1", "64"]}]
    assert [o["name"] for o in model["outputs"]] == ["logits", "probabilities"]
    config = client.get_model_config("mlp", as_json=True)["config"]
    assert config["max_batch_size"] == 64
    assert config["input"][0] == {"name": "features", "data_type": "TYPE_FP32", "dims": ["64"]}
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == "2000"
    index = client.get_model_repository_index(as_json=True)
    assert index["models"] == [{"name": "mlp", "version": "1", "state": "READY"}]
    client.load_model("mlp")


def test_infer_and_output_selection(client: Any, reference: Any) -> None:
    x = features(4, seed=11)
    inp = grpcclient.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    want = expected(reference, x)
    result = client.infer("mlp", [inp], request_id="g-1")
    np.testing.assert_allclose(result.as_numpy("logits"), want["logits"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), want["probabilities"], rtol=1e-5, atol=1e-6
    )
    assert result.get_response().id == "g-1"
    only = client.infer("mlp", [inp], outputs=[grpcclient.InferRequestedOutput("probabilities")])
    assert [o.name for o in only.get_response().outputs] == ["probabilities"]
    assert only.as_numpy("logits") is None
    for alg in ("gzip", "deflate"):
        result = client.infer("mlp", [inp], compression_algorithm=alg)
        np.testing.assert_allclose(result.as_numpy("logits"), want["logits"], rtol=1e-5, atol=1e-6)


def test_statistics(client: Any) -> None:
    before = client.get_inference_statistics("mlp", as_json=True)["model_stats"][0]
    x = features(2, seed=12)
    inp = grpcclient.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    client.infer("mlp", [inp])
    client.infer("mlp", [inp])
    after = client.get_inference_statistics("mlp", as_json=True)["model_stats"][0]
    s0, s1 = before["inference_stats"], after["inference_stats"]
    assert int(s1["success"]["count"]) - int(s0.get("success", {}).get("count", 0)) == 2
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == 4
    assert int(s1["compute_infer"]["ns"]) > 0
    assert after["batch_stats"]


def test_stream_infer(client: Any, reference: Any) -> None:
    results: queue.Queue[tuple[Any, Any]] = queue.Queue()
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        xs = [features(1, seed=100 + i) for i in range(8)]
        for i, x in enumerate(xs):
            inp = grpcclient.InferInput("features", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            client.async_stream_infer("mlp", [inp], request_id=str(i))
        bad = grpcclient.InferInput("features", [1, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), np.float32))
        client.async_stream_infer("mlp", [bad], request_id="bad")
        got: dict[str, Any] = {}
        errors = []
        for _ in range(9):
            result, error = results.get(timeout=60)
            if error is not None:
                errors.append(error)
            else:
                got[result.get_response().id] = result
    finally:
        client.stop_stream()
    assert len(errors) == 1 and "shape" in str(errors[0])
    for i, x in enumerate(xs):
        np.testing.assert_allclose(
            got[str(i)].as_numpy("logits"),
            expected(reference, x)["logits"],
            rtol=1e-5,
            atol=1e-6,
        )


async def test_aio_client(mlp: Worker, reference: Any) -> None:
    client = aiogrpcclient.InferenceServerClient(mlp.grpc)
    try:
        assert await client.is_server_live()
        assert await client.is_server_ready()
        assert await client.is_model_ready("mlp")
        assert (await client.get_server_metadata()).name == "airt"
        assert (await client.get_model_metadata("mlp")).name == "mlp"
        assert (await client.get_model_config("mlp")).config.max_batch_size == 64
        assert (await client.get_inference_statistics("mlp")).model_stats[0].name == "mlp"
        assert (await client.get_model_repository_index()).models[0].name == "mlp"
        x = features(3, seed=21)
        inp = aiogrpcclient.InferInput("features", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        result = await client.infer("mlp", [inp])
        np.testing.assert_allclose(
            result.as_numpy("logits"), expected(reference, x)["logits"], rtol=1e-5, atol=1e-6
        )

        async def requests() -> Any:
            for i in range(4):
                yield {"model_name": "mlp", "inputs": [inp], "request_id": f"s{i}"}

        seen = []
        async for result, error in client.stream_infer(requests()):
            assert error is None
            seen.append(result.get_response().id)
            np.testing.assert_allclose(
                result.as_numpy("logits"), expected(reference, x)["logits"], rtol=1e-5, atol=1e-6
            )
        assert seen == ["s0", "s1", "s2", "s3"]
    finally:
        await client.close()


def test_typed_contents_input(mlp: Worker, reference: Any) -> None:
    """Clients other than tritonclient may send typed `contents`; answers are still raw."""
    x = features(2, seed=31)
    with grpc.insecure_channel(mlp.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        tensor = service_pb2.ModelInferRequest.InferInputTensor(
            name="features", datatype="FP32", shape=[2, 64]
        )
        tensor.contents.fp32_contents.extend(x.reshape(-1).tolist())
        response = stub.ModelInfer(service_pb2.ModelInferRequest(model_name="mlp", inputs=[tensor]))
        assert [o.name for o in response.outputs] == ["logits", "probabilities"]
        assert len(response.raw_output_contents) == 2
        logits = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(2, 10)
        np.testing.assert_allclose(logits, expected(reference, x)["logits"], rtol=1e-5, atol=1e-6)
        # raw and typed data for one request is ambiguous: rejected
        both = service_pb2.ModelInferRequest(
            model_name="mlp", inputs=[tensor], raw_input_contents=[x.tobytes()]
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(both)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # wrong count of typed elements
        short = service_pb2.ModelInferRequest.InferInputTensor(
            name="features", datatype="FP32", shape=[2, 64]
        )
        short.contents.fp32_contents.extend([1.0, 2.0])
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(service_pb2.ModelInferRequest(model_name="mlp", inputs=[short]))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "expected 128" in (info.value.details() or "")

"""tritonclient.http (sync and aio) against a real worker: every core endpoint, infer variants."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import tritonclient.http as httpclient
import tritonclient.http.aio as aiohttpclient
from tritonclient.utils import InferenceServerException
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
    c = httpclient.InferenceServerClient(mlp.http)
    yield c
    c.close()


def test_health_and_metadata(client: Any) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mlp")
    assert client.is_model_ready("mlp", "1")
    assert not client.is_model_ready("nope")
    meta = client.get_server_metadata()
    assert meta["name"] == "airt"
    assert set(meta["extensions"]) >= {"binary_tensor_data", "statistics", "model_configuration"}
    model = client.get_model_metadata("mlp")
    assert model["versions"] == ["1"]
    assert model["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 64]}]
    assert [o["name"] for o in model["outputs"]] == ["logits", "probabilities"]
    assert model["outputs"][0]["shape"] == [-1, 10]
    assert client.get_model_metadata("mlp", "1") == model


def test_config_and_repository(client: Any) -> None:
    config = client.get_model_config("mlp")
    assert config["max_batch_size"] == 64
    assert config["input"] == [{"name": "features", "data_type": "TYPE_FP32", "dims": [64]}]
    assert config["output"][0]["dims"] == [10]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 2000
    assert config["instance_group"][0]["count"] == 1
    index = client.get_model_repository_index()
    assert index == [{"name": "mlp", "version": "1", "state": "READY", "reason": ""}]
    client.load_model("mlp")  # the served model: already loaded


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_infer_binary_and_json(
    client: Any, reference: Any, binary_in: bool, binary_out: bool
) -> None:
    x = features(3, seed=1)
    inp = httpclient.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    outs = [
        httpclient.InferRequestedOutput("logits", binary_data=binary_out),
        httpclient.InferRequestedOutput("probabilities", binary_data=binary_out),
    ]
    result = client.infer("mlp", [inp], outputs=outs, request_id="r-1")
    want = expected(reference, x)
    np.testing.assert_allclose(result.as_numpy("logits"), want["logits"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), want["probabilities"], rtol=1e-5, atol=1e-6
    )
    response = result.get_response()
    assert response["id"] == "r-1"
    assert response["model_version"] == "1"
    has_size = ["binary_data_size" in o.get("parameters", {}) for o in response["outputs"]]
    assert has_size == [binary_out, binary_out]


@pytest.mark.parametrize("request_alg", [None, "gzip", "deflate"])
@pytest.mark.parametrize("response_alg", [None, "gzip", "deflate"])
def test_infer_compression(
    client: Any, reference: Any, request_alg: str | None, response_alg: str | None
) -> None:
    x = features(40, seed=2)  # outputs above the compression threshold
    inp = httpclient.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer(
        "mlp",
        [inp],
        request_compression_algorithm=request_alg,
        response_compression_algorithm=response_alg,
    )
    np.testing.assert_allclose(
        result.as_numpy("logits"), expected(reference, x)["logits"], rtol=1e-5, atol=1e-6
    )


def test_output_selection(client: Any, reference: Any) -> None:
    x = features(2, seed=3)
    inp = httpclient.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer(
        "mlp", [inp], outputs=[httpclient.InferRequestedOutput("probabilities", binary_data=False)]
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["probabilities"]
    assert result.as_numpy("logits") is None
    np.testing.assert_allclose(
        result.as_numpy("probabilities"),
        expected(reference, x)["probabilities"],
        rtol=1e-5,
        atol=1e-6,
    )


def test_statistics_follow_requests(client: Any) -> None:
    def stats() -> dict[str, Any]:
        s: dict[str, Any] = client.get_inference_statistics("mlp")["model_stats"][0]
        return s

    before = stats()
    x = features(5, seed=4)
    inp = httpclient.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    for _ in range(3):
        client.infer("mlp", [inp])
    after = stats()
    assert after["name"] == "mlp" and after["version"] == "1"
    s0, s1 = before["inference_stats"], after["inference_stats"]
    assert s1["success"]["count"] - s0["success"]["count"] == 3
    assert after["inference_count"] - before["inference_count"] == 15  # rows
    assert 1 <= after["execution_count"] - before["execution_count"] <= 3
    for key in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert s1[key]["count"] - s0[key]["count"] == 3
        assert s1[key]["ns"] > s0[key]["ns"]
    for key in ("cache_hit", "cache_miss"):
        assert s1[key] == {"count": 0, "ns": 0}
    assert after["last_inference"] >= before["last_inference"] > 0
    sizes = {b["batch_size"] for b in after["batch_stats"]}
    assert 5 in sizes
    for b in after["batch_stats"]:
        for key in ("compute_input", "compute_infer", "compute_output"):
            assert b[key]["count"] > 0 and b[key]["ns"] > 0
    all_stats = client.get_inference_statistics()
    assert [m["name"] for m in all_stats["model_stats"]] == ["mlp"]


async def test_aio_client(mlp: Worker, reference: Any) -> None:
    client = aiohttpclient.InferenceServerClient(mlp.http)
    try:
        assert await client.is_server_live()
        assert await client.is_server_ready()
        assert await client.is_model_ready("mlp")
        assert (await client.get_server_metadata())["name"] == "airt"
        assert (await client.get_model_metadata("mlp"))["name"] == "mlp"
        assert (await client.get_model_config("mlp"))["max_batch_size"] == 64
        stats = await client.get_inference_statistics("mlp")
        assert stats["model_stats"][0]["name"] == "mlp"
        assert (await client.get_model_repository_index())[0]["state"] == "READY"
        for rows, alg in [(1, None), (40, "gzip"), (40, "deflate")]:
            x = features(rows, seed=rows)
            inp = aiohttpclient.InferInput("features", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            result = await client.infer(
                "mlp",
                [inp],
                request_compression_algorithm=alg,
                response_compression_algorithm=alg,
            )
            np.testing.assert_allclose(
                result.as_numpy("logits"), expected(reference, x)["logits"], rtol=1e-5, atol=1e-6
            )
        x = features(2)
        inp = aiohttpclient.InferInput("features", list(x.shape), "FP32")
        inp.set_data_from_numpy(x, binary_data=False)
        result = await client.infer(
            "mlp", [inp], outputs=[aiohttpclient.InferRequestedOutput("logits", binary_data=False)]
        )
        np.testing.assert_allclose(
            result.as_numpy("logits"), expected(reference, x)["logits"], rtol=1e-5, atol=1e-6
        )
    finally:
        await client.close()


def test_versioned_paths(client: Any, reference: Any) -> None:
    x = features(1, seed=9)
    inp = httpclient.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("mlp", [inp], model_version="1")
    np.testing.assert_allclose(
        result.as_numpy("logits"), expected(reference, x)["logits"], rtol=1e-5, atol=1e-6
    )
    with pytest.raises(InferenceServerException, match="unknown version '2'") as info:
        client.infer("mlp", [inp], model_version="2")
    assert info.value.status() == "404"
    assert client.get_inference_statistics("mlp", "1")["model_stats"][0]["version"] == "1"
    assert client.get_model_config("mlp", "1")["name"] == "mlp"

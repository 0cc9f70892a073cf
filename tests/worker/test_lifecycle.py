"""Process lifecycle: queue limit, SIGTERM drain, sha256 and warm-up gates, --help, metrics port."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http.aio as aiohttpclient
from tritonclient.utils import InferenceServerException
from workerproc import ROOT, Worker, spawn

from airt_dev.wait import wait_for_async

QUEUE = 8


def x(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((1, 64), np.float32)


async def test_queue_full_then_drain_on_sigterm(
    models: Path, tmp_path: Path, reference: Any
) -> None:
    """Requests wait in the queue (long max delay): a per-request timeout expires (503); a full
    queue rejects at once over HTTP (503) and gRPC (UNAVAILABLE); SIGTERM then answers every
    accepted request and the process exits 0."""
    sha = hashlib.sha256((models / "mlp.pt2").read_bytes()).hexdigest()
    worker = spawn(
        "queue",
        models / "mlp.pt2",
        tmp_path,
        "--model-sha256",
        sha,
        "--batching.max-batch-size",
        "64",
        "--batching.max-queue-delay-microseconds",
        str(120_000_000),
        "--batching.max-queue-size",
        str(QUEUE),
        # the queue holds its requests until SIGTERM: no default queue timeout
        "--batching.default-timeout-microseconds",
        "0",
    )
    try:
        await asyncio.to_thread(worker.wait_ready)
        clients = [aiohttpclient.InferenceServerClient(worker.http) for _ in range(QUEUE + 1)]

        async def infer(i: int) -> np.ndarray:
            inp = aiohttpclient.InferInput("features", [1, 64], "FP32")
            inp.set_data_from_numpy(x(i))
            result = await clients[i].infer("mlp", [inp])
            out: np.ndarray = result.as_numpy("logits")
            return out

        # a request with its own timeout leaves the queue with 503 when the timeout passes
        timed = aiohttpclient.InferInput("features", [1, 64], "FP32")
        timed.set_data_from_numpy(x(0))
        with pytest.raises(InferenceServerException) as tinfo:
            await clients[0].infer("mlp", [timed], timeout=50_000)
        assert tinfo.value.status() == "503"
        assert "request timeout expired" in str(tinfo.value)

        accepted = [asyncio.ensure_future(infer(i)) for i in range(QUEUE)]
        await wait_for_async(
            lambda: worker.metric("nv_inference_pending_request_count") == QUEUE, 60, "a full queue"
        )
        with pytest.raises(InferenceServerException) as info:
            await infer(QUEUE)
        assert info.value.status() == "503"
        assert "exceeds maximum queue size" in str(info.value)
        grpc_client = grpcclient.InferenceServerClient(worker.grpc)
        inp = grpcclient.InferInput("features", [1, 64], "FP32")
        inp.set_data_from_numpy(x(0))
        with pytest.raises(InferenceServerException) as ginfo:
            grpc_client.infer("mlp", [inp])
        assert ginfo.value.status() == "StatusCode.UNAVAILABLE"
        grpc_client.close()
        # the rejections did not wait for the queue: it is still full
        assert worker.metric("nv_inference_pending_request_count") == QUEUE
        assert not any(f.done() for f in accepted)
        rejected = worker.metric("nv_inference_request_failure")
        assert rejected == 3  # the timed-out request and the two rejected ones

        worker.proc.send_signal(signal.SIGTERM)
        results = await asyncio.wait_for(asyncio.gather(*accepted), 60)
        await asyncio.gather(*(c.close() for c in clients))
        module = reference("mlp.pt2")
        for i, got in enumerate(results):
            want = module(__import__("torch").from_numpy(x(i)))["logits"].detach().numpy()
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        code = await asyncio.to_thread(worker.proc.wait, 60)
        assert code == 0, worker.log()
        assert "draining" in worker.log()
    finally:
        worker.stop()


async def test_sigterm_under_load_answers_every_accepted_request(
    models: Path, tmp_path: Path, reference: Any
) -> None:
    """16 clients keep sending while SIGTERM arrives: every request the worker counted as a
    success reached its client with the right answer, and nothing else got a 5xx but 503."""
    import aiohttp

    worker = spawn("load", models / "mlp.pt", tmp_path, config=models / "mlp.yaml")
    await asyncio.to_thread(worker.wait_ready)
    module = reference("mlp.pt")
    import torch

    answered = 0
    refused: list[str] = []
    signalled = asyncio.Event()

    async def client(i: int) -> None:
        nonlocal answered
        c = aiohttpclient.InferenceServerClient(worker.http)
        try:
            for r in range(10_000):
                inp = aiohttpclient.InferInput("features", [1, 64], "FP32")
                inp.set_data_from_numpy(x(i * 10_000 + r))
                try:
                    result = await c.infer("mlp", [inp])
                except InferenceServerException as e:  # answered, but refused: draining
                    assert signalled.is_set() and e.status() == "503", e
                    refused.append("503")
                    return
                except (aiohttp.ClientError, OSError) as e:  # not accepted: listener closed
                    assert signalled.is_set(), e
                    refused.append(type(e).__name__)
                    return
                with torch.inference_mode():
                    want = module(torch.from_numpy(x(i * 10_000 + r)))["logits"].numpy()
                np.testing.assert_allclose(result.as_numpy("logits"), want, rtol=1e-5, atol=1e-6)
                answered += 1
        finally:
            await c.close()

    try:
        clients = [asyncio.ensure_future(client(i)) for i in range(16)]
        await wait_for_async(
            lambda: answered >= 200 or any(c.done() for c in clients),
            60,
            "200 answered requests under load",
        )
        for c in clients:
            if c.done():
                await c  # a client failed before SIGTERM: raise its error
        signalled.set()
        worker.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(*clients), 120)
        assert await asyncio.to_thread(worker.proc.wait, 60) == 0, worker.log()
    finally:
        worker.stop()
    log = worker.log()
    served = int(log.split("stopped after ")[1].split(" successful")[0])
    assert served == answered, f"worker answered {served}, clients received {answered}"
    assert len(refused) == 16


def run_worker(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airt_worker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_help() -> None:
    done = run_worker(["--help"])
    assert done.returncode == 0
    assert "--model-path" in done.stdout and "--batching.max-batch-size" in done.stdout


def test_airt_serve_cli_reaches_the_worker() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "airt_worker.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: airt-worker serve" in done.stdout and "--model-sha256" in done.stdout


def test_bad_settings_exit_2() -> None:
    done = run_worker(["--model-path", "model.onnx"])
    assert done.returncode == 2
    assert "model_format" in done.stderr


def test_sha256_mismatch_refuses_to_load(models: Path) -> None:
    done = run_worker(
        [
            *["--model-path", str(models / "mlp.pt"), "--model-sha256", "0" * 64],
            *["--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
        ]
    )
    assert done.returncode == 1
    assert "sha256 mismatch" in done.stderr


def test_failed_warmup_never_ready(models: Path) -> None:
    done = run_worker(
        [
            "--model-path",
            str(models / "mlp.pt"),
            "--inputs",
            '[{"name": "features", "datatype": "FP32", "dims": [32]}]',
            "--outputs",
            '[{"name": "logits", "datatype": "FP32", "dims": [10]},'
            ' {"name": "probabilities", "datatype": "FP32", "dims": [10]}]',
            "--http-port",
            "0",
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
        ]
    )
    assert done.returncode == 1
    assert "warm-up inference" in done.stderr
    assert "ready" not in done.stderr.replace("already", "")


def test_unloadable_model_exits_1_with_a_termination_message(tmp_path: Path) -> None:
    """A file that is no model: the worker exits (so the kubelet restarts it and the operator
    sees why) instead of staying up unready, leaving `ModelLoadFailed: ...` as one line."""
    model = tmp_path / "broken.pt"
    model.write_bytes(b"not a torchscript archive")
    log = tmp_path / "termination-log"
    done = run_worker(
        [
            *["--model-path", str(model), "--termination-log", str(log)],
            *["--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
        ]
    )
    assert done.returncode == 1
    line = log.read_text().rstrip("\n")
    assert line.startswith("ModelLoadFailed: ") and "\n" not in line
    assert len(line.encode()) <= 1024
    assert "ready" not in done.stderr.replace("already", "")


def test_failed_warmup_writes_model_load_failed(models: Path, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "airt_worker",
            *["--model-path", str(models / "mlp.pt")],
            *["--inputs", '[{"name": "features", "datatype": "FP32", "dims": [32]}]'],
            "--outputs",
            '[{"name": "logits", "datatype": "FP32", "dims": [10]},'
            ' {"name": "probabilities", "datatype": "FP32", "dims": [10]}]',
            *["--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"],
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "AIRT_TERMINATION_LOG": str(log)},
    )
    assert done.returncode == 1
    assert log.read_text().startswith("ModelLoadFailed: warm-up inference")


def test_metrics_names_and_port(workers: dict[str, Worker]) -> None:
    w = workers["mlp"]
    text = w.metrics()
    assert "_created" not in text
    assert not [
        line for line in text.splitlines() if line.startswith("nv_inference") and "_total" in line
    ]
    for name in [
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
        "nv_inference_pending_request_count",
    ]:
        assert f"# TYPE {name} " in text
        assert f'{name}{{model="mlp",version="1"' in text
    assert 'nv_inference_request_failure{model="mlp",version="1",reason="REJECTED"}' in text
    assert "airt_gpu_telemetry_available 0" in text
    assert 'airt_batch_size_bucket{model="mlp",version="1",le="+Inf"}' in text
    assert 'airt_request_duration_seconds_bucket{model="mlp",version="1",le="0.001"}' in text
    assert w.metric("airt_request_duration_seconds_count") >= w.metric(
        "nv_inference_request_success"
    )
    assert not [line for line in text.splitlines() if line.startswith("nv_gpu_")]  # CPU model
    # bound to 127.0.0.1 only: another local address of this host is refused
    try:
        addresses = socket.gethostbyname_ex(socket.gethostname())[2]
    except OSError:  # the host name does not resolve here: nothing else to try
        addresses = []
    own = [a for a in addresses if not a.startswith("127.")]
    if own:
        with pytest.raises(OSError):
            socket.create_connection((own[0], w.metrics_port), timeout=2).close()


def test_grpc_server_stays_up(workers: dict[str, Worker]) -> None:
    with grpc.insecure_channel(workers["mlp"].grpc) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)


def test_taken_port_exits_1_with_the_address(models: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_worker(
            [
                *[
                    "--model-path",
                    str(models / "mlp.pt"),
                    "--config-file",
                    str(models / "mlp.yaml"),
                ],
                *["--host", "127.0.0.1", "--http-port", str(port)],
                *["--grpc-port", "0", "--metrics-port", "0"],
            ]
        )
    assert done.returncode == 1
    assert f"cannot listen: 127.0.0.1:{port}" in done.stderr


def test_debug_logs_one_line_per_request_with_its_id(models: Path, tmp_path: Path) -> None:
    """At `--log-level debug` every request leaves one JSON line with its id and outcome: the
    client's v2 id when it sent one, a number otherwise, and refusals with their reason."""
    import json
    import urllib.error
    import urllib.request

    worker = spawn("debuglog", models / "mlp.pt", tmp_path, "--log-level", "debug",
                   "--log-format", "json", config=models / "mlp.yaml")  # fmt: skip
    try:
        worker.wait_ready()
        url = f"http://{worker.http}/v2/models/mlp/infer"
        features = {"name": "features", "datatype": "FP32", "shape": [1, 64], "data": [0.5] * 64}
        body = {"id": "req-42", "inputs": [features]}
        with urllib.request.urlopen(
            urllib.request.Request(url, json.dumps(body).encode(), method="POST"), timeout=30
        ) as r:
            assert r.status == 200
        bad = urllib.request.Request(url, b'{"inputs": 1}', method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=30)
        assert refused.value.code == 400
    finally:
        assert worker.stop() == 0
    lines = [json.loads(x) for x in worker.log().splitlines() if x.startswith("{")]
    requests = [x["message"] for x in lines if x.get("logger") == "airt_worker.requests"]
    assert any(m.startswith("request req-42 model mlp: OK (1 rows") for m in requests), requests
    assert any(m.startswith("request #") and "refused" in m for m in requests), requests

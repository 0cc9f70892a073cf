"""A model that hangs and a model that raises, served by real workers.

Hang: a TorchScript busy loop on positive input (warm-up feeds zeros, so the worker turns ready).
The batch fails with 503 once the execution timeout passes, the stuck instance makes liveness
fail and shows in the metrics, a queued request whose client went away leaves the queue, and
SIGTERM still ends the process within the drain period although the model thread never returns.
Raise: a batch the model raises on fails once, all its requests together, with one model run.
"""

from __future__ import annotations

import asyncio
import subprocess
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import aiohttp
import numpy as np
import orjson
import pytest
import torch
import yaml
from workerproc import Worker, spawn

from airt_operator.dev.wait import wait_for

pytestmark = pytest.mark.worker

EXECUTION_TIMEOUT_S = 3
DRAIN_S = 2


class Hang(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 0):
            i = 0
            while i >= 0:  # spins for 2**63 iterations: for ever, as far as anyone can tell
                i += 1
        return x * 2


class Picky(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x < 0).any()):
            raise RuntimeError("negative input")
        return x * 2


def _model(tmp: Path, module: torch.nn.Module, name: str, delay_us: int) -> tuple[Path, Path]:
    path = tmp / f"{name}.pt"
    with warnings.catch_warnings():  # torch.jit.script's deprecation: the worker serves it
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(module), path)  # type: ignore[no-untyped-call]
    config = tmp / f"{name}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "inputs": [{"name": "x", "datatype": "FP32", "dims": [4]}],
                "batching": {"max_batch_size": 4, "max_queue_delay_microseconds": delay_us},
            }
        )
    )
    return path, config


def _body(value: float) -> bytes:
    return orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [value] * 4}]}
    )


def _live(worker: Worker) -> int:
    try:
        with urllib.request.urlopen(worker.base + "/v2/health/live", timeout=1) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _sample(worker: Worker, name: str, labels: str = "") -> float:
    for line in worker.metrics().splitlines():
        if line.startswith(name + "{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _infer(
    session: aiohttp.ClientSession, worker: Worker, value: float, give_up_s: float = 60
) -> tuple[int, bytes]:
    async with session.post(
        worker.base + "/v2/models/m/infer",
        data=_body(value),
        timeout=aiohttp.ClientTimeout(total=give_up_s),
    ) as r:
        return r.status, await r.read()


async def test_a_hung_model_is_detected_and_the_worker_still_stops(tmp_path: Path) -> None:
    path, config = _model(tmp_path, Hang(), "m", 0)
    worker = spawn(
        "hang",
        path,
        tmp_path,
        "--execution-timeout-seconds",
        str(EXECUTION_TIMEOUT_S),
        "--drain-timeout-seconds",
        str(DRAIN_S),
        config=config,
    )
    try:
        worker.wait_ready()
        assert _live(worker) == 200
        async with aiohttp.ClientSession() as session:
            hung = asyncio.ensure_future(_infer(session, worker, 1.0))
            await asyncio.to_thread(
                wait_for,
                lambda: _sample(worker, "nv_inference_pending_request_count") == 1,
                30,
                "the hanging batch to start",
            )
            # a request queued behind the stuck instance whose client gives up leaves the queue
            with pytest.raises(TimeoutError):
                await _infer(session, worker, 0.0, give_up_s=0.5)
            await asyncio.to_thread(
                wait_for,
                lambda: _sample(worker, "airt_request_failure", 'reason="CANCELED"') == 1,
                30,
                "the abandoned request to be cancelled",
            )
            assert _sample(worker, "nv_inference_pending_request_count") == 1
            status, payload = await hung
        assert status == 503, payload
        assert b"execution_timeout_seconds" in payload
        assert _live(worker) == 503
        assert _sample(worker, "airt_model_instances_stuck") == 1
        assert _sample(worker, "airt_model_execution_timeout") == 1
        assert _sample(worker, "airt_request_failure", 'reason="EXECUTION_TIMEOUT"') == 1
    finally:
        worker.proc.send_signal(15)
        # the model thread never returns; the process must still exit within its drain period
        try:
            code = worker.proc.wait(timeout=DRAIN_S + 30)
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            raise
    assert code != 0  # a drain that could not finish is not a clean exit
    assert "model instances still running (1 stuck" in worker.log()


async def test_a_raising_model_fails_its_batch_once(tmp_path: Path) -> None:
    # a long queue delay and max_batch_size 4: the four requests below form one batch
    path, config = _model(tmp_path, Picky(), "m", 2_000_000)
    worker = spawn("picky", path, tmp_path, config=config)
    try:
        worker.wait_ready()
        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(
                *(_infer(session, worker, v) for v in (1.0, -1.0, 2.0, 3.0))
            )
            for status, payload in results:
                assert status == 500, payload
                assert b"negative input" in payload
            assert _sample(worker, "airt_model_execution_failure") == 1
            assert _sample(worker, "nv_inference_exec_count") == 0
            assert _sample(worker, "nv_inference_request_failure", 'reason="BACKEND"') == 4
            status, payload = await _infer(session, worker, 1.0)
            assert status == 200, payload
            assert orjson.loads(payload)["outputs"][0]["data"] == [2.0] * 4
        assert _live(worker) == 200
        assert np.isclose(_sample(worker, "nv_inference_exec_count"), 1)
    finally:
        code = worker.stop()
    assert code == 0, worker.log()

"""A model that raises and then hangs, served by a real worker.

One TorchScript model, one worker. Raise: a batch the model raises on fails once, all its
requests together, with one model run. Hang: a busy loop on large input (warm-up feeds zeros, so
the worker turns ready); the batch fails with 503 once the execution timeout passes, the stuck
instance makes liveness fail and shows in the metrics, a queued request whose client went away
leaves the queue, and SIGTERM still ends the process within the drain period although the model
thread never returns.
"""

from __future__ import annotations

import asyncio
import subprocess
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import aiohttp
import orjson
import pytest
import torch
import yaml
from workerproc import Worker, spawn

from airt_dev.wait import wait_for

pytestmark = pytest.mark.worker

EXECUTION_TIMEOUT_S = 3
DRAIN_S = 2


class Faulty(torch.nn.Module):
    """Raises on negative input, spins for ever on input above 100, doubles anything else."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x < 0).any()):
            raise RuntimeError("negative input")
        if bool((x > 100).any()):
            i = 0
            while i >= 0:  # 2**63 iterations: for ever, as far as anyone can tell
                i += 1
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


def _body(value: float, rows: int = 1) -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [rows, 4], "data": [value] * 4 * rows}
            ]
        }
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
    session: aiohttp.ClientSession,
    worker: Worker,
    value: float,
    give_up_s: float = 60,
    rows: int = 1,
) -> tuple[int, bytes]:
    async with session.post(
        worker.base + "/v2/models/m/infer",
        data=_body(value, rows),
        timeout=aiohttp.ClientTimeout(total=give_up_s),
    ) as r:
        return r.status, await r.read()


async def test_a_raising_then_a_hanging_model(tmp_path: Path) -> None:
    # a long queue delay and max_batch_size 4: four one-row requests form one batch, and a
    # four-row request runs at once
    path, config = _model(tmp_path, Faulty(), "m", 2_000_000)
    worker = spawn(
        "faulty",
        path,
        tmp_path,
        "--execution-timeout-seconds",
        str(EXECUTION_TIMEOUT_S),
        "--drain-timeout-seconds",
        str(DRAIN_S),
        config=config,
    )
    try:
        await asyncio.to_thread(worker.wait_ready)
        async with aiohttp.ClientSession() as session:
            # raising: the batch fails once, all four requests, one model run
            results = await asyncio.gather(
                *(_infer(session, worker, v) for v in (1.0, -1.0, 2.0, 3.0))
            )
            for status, payload in results:
                assert status == 500, payload
                assert b"negative input" in payload
            assert _sample(worker, "airt_model_execution_failure") == 1
            assert _sample(worker, "nv_inference_exec_count") == 0
            assert _sample(worker, "nv_inference_request_failure", 'reason="BACKEND"') == 4
            status, payload = await _infer(session, worker, 1.0, rows=4)
            assert status == 200, payload
            assert orjson.loads(payload)["outputs"][0]["data"] == [2.0] * 16
            assert _live(worker) == 200

            # hanging: the batch fails at the execution timeout, liveness turns false
            hung = asyncio.ensure_future(_infer(session, worker, 1000.0, rows=4))
            await asyncio.to_thread(
                wait_for,
                lambda: _sample(worker, "nv_inference_pending_request_count") == 1,
                30,
                "the hanging batch to start",
            )
            # a request queued behind the stuck instance whose client gives up leaves the queue
            with pytest.raises(TimeoutError):
                await _infer(session, worker, 1.0, give_up_s=0.5)
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

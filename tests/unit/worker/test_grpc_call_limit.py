"""The gRPC transport's bound on inference calls in progress (grpc_service.build_server).

An in-process grpc.aio server over a stand-in data plane whose inference waits until released:
calls beyond the bound are refused with RESOURCE_EXHAUSTED naming the setting, and the count is
released however a call ends (answered, refused by gRPC for its size, cancelled by the client),
so the bound never leaks. tritonclient's unary stub talks to the stream-unary registration.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

from airt_worker.errors import InferenceError
from airt_worker.grpc_service import build_server
from airt_worker.messages import InferRequest, InferResponse, Tensor


class HeldPlane:
    """Answers each inference with its input once `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0
        self.changed = asyncio.Condition()

    async def infer(self, req: InferRequest) -> InferResponse:
        async with self.changed:
            self.started += 1
            self.changed.notify_all()
        await self.release.wait()
        t = req.inputs[0]
        return InferResponse(
            req.model_name, "1", req.id, [Tensor("y", t.datatype, t.shape, t.data)]
        )

    def record_rejection(self, error: InferenceError, received_ns: int) -> None:
        pass


def _request(values: int = 4) -> Any:
    msg = service_pb2.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype="FP32", shape=[values])
    msg.raw_input_contents.append(np.arange(values, dtype=np.float32).tobytes())
    return msg


@pytest.fixture
async def served() -> AsyncIterator[tuple[HeldPlane, Any]]:
    plane = HeldPlane()
    server, port = build_server(
        plane,  # type: ignore[arg-type]
        "127.0.0.1",
        0,
        1 << 20,
        max_concurrent_rpcs=2,
    )
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield plane, service_pb2_grpc.GRPCInferenceServiceStub(channel)
    finally:
        await channel.close()
        await server.stop(None)


async def _started(plane: HeldPlane, n: int) -> None:
    async with asyncio.timeout(30), plane.changed:
        await plane.changed.wait_for(lambda: plane.started == n)


async def test_calls_beyond_the_bound_are_refused_and_the_bound_is_released(
    served: tuple[HeldPlane, Any],
) -> None:
    plane, stub = served
    held = [asyncio.ensure_future(stub.ModelInfer(_request())) for _ in range(2)]
    await _started(plane, 2)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ModelInfer(_request())
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "grpc_max_concurrent_rpcs" in (refused.value.details() or "")
    plane.release.set()
    for answer in await asyncio.gather(*held):
        assert np.frombuffer(answer.raw_output_contents[0], np.float32).tolist() == [0, 1, 2, 3]
    # both places are free again: two more calls are answered at once
    again = await asyncio.gather(stub.ModelInfer(_request()), stub.ModelInfer(_request()))
    assert len(again) == 2


async def test_oversized_and_cancelled_calls_release_their_place(
    served: tuple[HeldPlane, Any],
) -> None:
    plane, stub = served
    for _ in range(3):  # more than the bound: a leak would refuse the calls below
        with pytest.raises(grpc.aio.AioRpcError) as big:
            await stub.ModelInfer(_request(1 << 19))  # 2 MiB, over the 1 MiB message limit
        assert big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    cancelled = [stub.ModelInfer(_request()) for _ in range(2)]
    await _started(plane, 2)
    for call in cancelled:
        call.cancel()
    plane.release.set()
    # the server sees the cancellations a moment later; until then the bound may still be full
    async with asyncio.timeout(30):
        while True:
            try:
                answers = await asyncio.gather(
                    stub.ModelInfer(_request()), stub.ModelInfer(_request())
                )
                break
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.details()
                await asyncio.sleep(0.05)
    assert [len(a.raw_output_contents) for a in answers] == [1, 1]

"""The model runner in-process on tiny models built here: interface discovery, casting, batches,
and the placement of model instances on GPUs (pure, with fake device counts)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from airt_worker.batching import concat_inputs, split_outputs
from airt_worker.errors import ModelError, ModelLoadError
from airt_worker.runner import ModelRunner, place_instances
from airt_worker.settings import WorkerSettings


class Affine(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lin(x), y.sum(dim=1, keepdim=True)


class Picky(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x < 0).any()):
            raise ValueError("negative input")
        return x * 2


class Double(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def script(module: torch.nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(module), path)
    return path


def settings(path: Path, **kw: Any) -> WorkerSettings:
    return WorkerSettings(model_path=path, threads=1, **kw)


def run(runner: ModelRunner, *arrays: np.ndarray) -> list[np.ndarray]:
    """One request's outputs, run alone on instance 0."""
    return runner.run(0, list(arrays), arrays[0].shape[0]).outputs


def test_torchscript_interface_from_config_and_probe(tmp_path: Path) -> None:
    path = script(Affine(), tmp_path / "affine.pt")
    runner = ModelRunner(
        settings(
            path,
            inputs=[
                {"name": "x", "datatype": "FP32", "dims": [4]},
                {"name": "y", "datatype": "FP32", "dims": [-1]},
            ],
        )
    )
    spec = runner.spec
    assert [(t.name, t.datatype, t.dims) for t in spec.inputs] == [
        ("x", "FP32", (4,)),
        ("y", "FP32", (-1,)),
    ]
    # outputs learned by probing: names by position, y's variable dim does not leak into sums
    assert [(t.name, t.datatype, t.dims) for t in spec.outputs] == [
        ("output__0", "FP32", (3,)),
        ("output__1", "FP32", (1,)),
    ]


def test_torchscript_needs_input_types(tmp_path: Path) -> None:
    path = script(Affine(), tmp_path / "affine.pt")
    with pytest.raises(ModelLoadError, match=r"set inputs\[\]\.datatype and dims"):
        ModelRunner(settings(path))


def test_configured_order_and_names_map_by_name(tmp_path: Path) -> None:
    path = script(Affine(), tmp_path / "affine.pt")
    runner = ModelRunner(
        settings(
            path,
            inputs=[
                {"name": "y", "datatype": "FP32", "dims": [2]},
                {"name": "x", "datatype": "FP32", "dims": [4]},
            ],
            outputs=[
                {"name": "scores", "datatype": "FP32", "dims": [3]},
                {"name": "total", "datatype": "FP64", "dims": [1]},
            ],
        )
    )
    x = np.ones((2, 4), np.float32)
    y = np.array([[1, 2], [3, 4]], np.float32)
    outputs = run(runner, y, x)  # spec order: y, then x
    with torch.inference_mode():
        want = Affine()(torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_allclose(outputs[0], want[0].numpy(), rtol=1e-6)
    assert outputs[1].dtype == np.float64  # converted to the configured datatype
    np.testing.assert_array_equal(outputs[1], [[3.0], [7.0]])


def test_batch_concatenates_and_splits(tmp_path: Path) -> None:
    path = script(Affine(), tmp_path / "affine.pt")
    runner = ModelRunner(
        settings(
            path,
            inputs=[
                {"name": "x", "datatype": "FP32", "dims": [4]},
                {"name": "y", "datatype": "FP32", "dims": [2]},
            ],
        )
    )
    sizes = (1, 3, 2)
    requests = [
        [np.full((rows, 4), rows, np.float32), np.full((rows, 2), rows, np.float32)]
        for rows in sizes
    ]
    # what the batcher does around the runner: concatenate, run the batch once, split
    result = runner.run(0, concat_inputs(requests), sum(sizes))
    assert result.compute_infer_ns > 0 and result.compute_input_ns > 0
    assert result.compute_output_ns > 0
    for outputs, rows in zip(split_outputs(result.outputs, sizes), sizes, strict=True):
        assert outputs[0].shape == (rows, 3)
        np.testing.assert_array_equal(outputs[1], np.full((rows, 1), 2 * rows))


def test_a_raising_model_fails_its_batch_once(tmp_path: Path) -> None:
    """No per-request retry: a batch the model raises on costs one model run, not N+1."""
    path = script(Picky(), tmp_path / "picky.pt")
    runner = ModelRunner(settings(path, inputs=[{"name": "x", "datatype": "FP32", "dims": [2]}]))
    calls: list[int] = []
    module = runner.module

    def counted(*args: Any) -> Any:
        calls.append(1)
        return module(*args)

    runner.modules[runner.device] = counted
    batch = concat_inputs(
        [
            [np.ones((1, 2), np.float32)],
            [-np.ones((1, 2), np.float32)],
            [np.full((2, 2), 3, np.float32)],
        ]
    )
    with pytest.raises(ModelError, match="negative input"):
        runner.run(0, batch, 4)
    assert len(calls) == 1
    np.testing.assert_array_equal(run(runner, np.ones((1, 2), np.float32))[0], [[2, 2]])


def test_dtype_cast_runs_the_model_in_bfloat16(tmp_path: Path) -> None:
    path = script(Affine(), tmp_path / "affine.pt")
    config = [
        {"name": "x", "datatype": "FP32", "dims": [4]},
        {"name": "y", "datatype": "FP32", "dims": [2]},
    ]
    full = ModelRunner(settings(path, inputs=config))
    half = ModelRunner(settings(path, inputs=config, dtype="bfloat16"))
    assert half.spec.outputs[0].datatype == "BF16"  # what the cast model produces
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    y = np.ones((2, 2), np.float32)
    a, b = run(full, x, y), run(half, x, y)
    as_float = torch.from_numpy(b[0].view(np.int16)).view(torch.bfloat16).float().numpy()
    np.testing.assert_allclose(as_float, a[0], atol=0.05)


def test_torch_export_interface_is_read_from_the_program(tmp_path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=32)
    program = torch.export.export(
        Affine(),
        (torch.randn(2, 4), torch.randn(2, 5)),
        dynamic_shapes={"x": {0: batch}, "y": {0: batch, 1: torch.export.Dim("n", max=16)}},
    )
    torch.export.save(program, tmp_path / "affine.pt2")
    runner = ModelRunner(settings(tmp_path / "affine.pt2"))
    assert [(t.name, t.datatype, t.dims) for t in runner.spec.inputs] == [
        ("x", "FP32", (4,)),
        ("y", "FP32", (-1,)),
    ]
    assert [(t.name, t.dims) for t in runner.spec.outputs] == [
        ("output__0", (3,)),
        ("output__1", (1,)),
    ]
    assert runner.spec.platform == "torch_export"
    runner.warmup()


def test_sha256_is_checked_first(tmp_path: Path) -> None:
    path = script(Picky(), tmp_path / "picky.pt")
    with pytest.raises(ModelLoadError, match="sha256 mismatch"):
        ModelRunner(settings(path, model_sha256="0" * 64))


def test_export_batch_dimension_must_cover_max_batch_size(tmp_path: Path) -> None:
    fixed = torch.export.export(Double(), (torch.ones(2, 3),))
    torch.export.save(fixed, tmp_path / "fixed.pt2")
    with pytest.raises(ModelLoadError, match="first dimension is fixed at 2"):
        ModelRunner(settings(tmp_path / "fixed.pt2"))
    assert ModelRunner(settings(tmp_path / "fixed.pt2", batching={"max_batch_size": 0})).spec

    small = torch.export.export(
        Double(), (torch.ones(2, 3),), dynamic_shapes={"x": {0: torch.export.Dim("b", max=4)}}
    )
    torch.export.save(small, tmp_path / "small.pt2")
    with pytest.raises(ModelLoadError, match="at most 4 rows but max_batch_size is 8"):
        ModelRunner(settings(tmp_path / "small.pt2"))


def test_placement_spreads_instances_round_robin() -> None:
    assert place_instances(4, visible_devices=4, device_count=None) == [0, 1, 2, 3]
    assert place_instances(6, visible_devices=4, device_count=2) == [0, 1, 0, 1, 0, 1]
    assert place_instances(5, visible_devices=2, device_count=None) == [0, 1, 0, 1, 0]
    assert place_instances(1, visible_devices=8, device_count=None) == [0]
    assert place_instances(2, visible_devices=4, device_count=4) == [0, 1]  # fewer instances


def test_placement_refuses_more_gpus_than_visible() -> None:
    with pytest.raises(ModelLoadError, match="device_count is 4 but torch sees only 2 GPU"):
        place_instances(4, visible_devices=2, device_count=4)
    with pytest.raises(ModelLoadError, match="sees no CUDA device"):
        place_instances(1, visible_devices=0, device_count=None)


def test_runner_refuses_device_count_beyond_visible_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = script(Double(), tmp_path / "double.pt")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ModelLoadError, match="device_count is 2 but torch sees only 1 GPU"):
        ModelRunner(settings(path, device="cuda", device_count=2, instance_count=2))


def test_cpu_instances_share_one_model_copy(tmp_path: Path) -> None:
    path = script(Double(), tmp_path / "double.pt")
    runner = ModelRunner(
        settings(path, instance_count=3, inputs=[{"name": "x", "datatype": "FP32", "dims": [2]}])
    )
    assert runner.placement == [torch.device("cpu")] * 3
    assert list(runner.modules) == [torch.device("cpu")]
    np.testing.assert_array_equal(
        runner.run(2, [np.ones((1, 2), np.float32)], 1).outputs[0], [[2, 2]]
    )

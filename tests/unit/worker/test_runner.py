"""The model runner in-process on tiny models built here: interface discovery, casting, batches."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from airt_worker.batching import Pending
from airt_worker.errors import ModelError, ModelLoadError
from airt_worker.runner import ModelRunner
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


def pending(*arrays: np.ndarray) -> Pending:
    return Pending(list(arrays), arrays[0].shape[0], (), time.monotonic_ns())


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
    item = pending(y, x)  # spec order: y, then x
    runner.execute(0, [item])
    assert item.error is None
    with torch.inference_mode():
        want = Affine()(torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_allclose(item.outputs[0], want[0].numpy(), rtol=1e-6)
    assert item.outputs[1].dtype == np.float64  # converted to the configured datatype
    np.testing.assert_array_equal(item.outputs[1], [[3.0], [7.0]])


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
    items = [
        pending(np.full((rows, 4), rows, np.float32), np.full((rows, 2), rows, np.float32))
        for rows in (1, 3, 2)
    ]
    runner.execute(0, items)
    for it, rows in zip(items, (1, 3, 2), strict=True):
        assert it.outputs[0].shape == (rows, 3)
        np.testing.assert_array_equal(it.outputs[1], np.full((rows, 1), 2 * rows))
        assert it.compute_infer_ns > 0 and it.compute_input_ns > 0 and it.compute_output_ns > 0


def test_a_raising_model_fails_its_batch_once(tmp_path: Path) -> None:
    """No per-request retry: a batch the model raises on costs one model run, not N+1."""
    path = script(Picky(), tmp_path / "picky.pt")
    runner = ModelRunner(settings(path, inputs=[{"name": "x", "datatype": "FP32", "dims": [2]}]))
    calls: list[int] = []
    module = runner.module

    def counted(*args: Any) -> Any:
        calls.append(1)
        return module(*args)

    runner.module = counted
    good, bad, also_good = (
        pending(np.ones((1, 2), np.float32)),
        pending(-np.ones((1, 2), np.float32)),
        pending(np.full((2, 2), 3, np.float32)),
    )
    runner.execute(0, [good, bad, also_good])
    assert len(calls) == 1
    for p in (good, bad, also_good):
        assert isinstance(p.error, ModelError)
        assert "negative input" in p.error.message
    alone = pending(np.ones((1, 2), np.float32))
    runner.execute(0, [alone])
    np.testing.assert_array_equal(alone.outputs[0], [[2, 2]])


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
    a, b = pending(x, y), pending(x, y)
    full.execute(0, [a])
    half.execute(0, [b])
    as_float = torch.from_numpy(b.outputs[0].view(np.int16)).view(torch.bfloat16).float().numpy()
    np.testing.assert_allclose(as_float, a.outputs[0], atol=0.05)


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

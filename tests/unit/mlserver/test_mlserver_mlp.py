"""airt_mlserver.mlp answers like the torch MLP its weights come from, and refuses what it cannot
run: weights files that are not this kind of MLP (or hold pickled objects), and inputs of the
wrong shape. The weights are written by examples/build_models.py's own exporter.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from airt_mlserver.mlp import InputError, Mlp, WeightsError

ROOT = Path(__file__).resolve().parents[3]


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_models", ROOT / "examples" / "build_models.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_models", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    builder = _builder()
    torch.manual_seed(3)
    mlp = builder.Mlp().eval()
    path = tmp_path_factory.mktemp("weights") / "mlp.npz"
    builder._save_linear_weights(mlp.net, path)
    return mlp, path


def test_answers_like_the_torch_module(exported: tuple[torch.nn.Module, Path]) -> None:
    module, path = exported
    mlp = Mlp.load(path)
    assert (mlp.in_features, mlp.out_features) == (64, 10)
    x = np.random.default_rng(0).standard_normal((5, 64)).astype(np.float32)
    with torch.no_grad():
        expected = {k: v.numpy() for k, v in module(torch.from_numpy(x)).items()}
    got = mlp(x)
    assert set(got) == {"logits", "probabilities"}
    for name, value in got.items():
        assert value.dtype == np.float32 and value.shape == (5, 10), name
        np.testing.assert_allclose(value, expected[name], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["probabilities"].sum(axis=1), 1.0, rtol=1e-6)


def test_a_row_of_float64_is_computed_in_float32(exported: tuple[torch.nn.Module, Path]) -> None:
    _, path = exported
    got = Mlp.load(path)(np.zeros((1, 64), dtype=np.float64))
    assert got["logits"].dtype == np.float32


@pytest.mark.parametrize("shape", [(64,), (2, 63), (1, 2, 64)])
def test_a_wrong_input_shape_is_refused(
    exported: tuple[torch.nn.Module, Path], shape: tuple[int, ...]
) -> None:
    with pytest.raises(InputError, match=r"features must be shaped \[n, 64\]"):
        Mlp.load(exported[1])(np.zeros(shape, dtype=np.float32))


def test_weights_that_are_no_mlp_are_refused(tmp_path: Path) -> None:
    cases = {
        "missing-bias": {"w0": np.zeros((4, 3), np.float32)},
        "extra-array": {"w0": np.zeros((4, 3)), "b0": np.zeros(4), "x": np.zeros(1)},
        "bias-shape": {"w0": np.zeros((4, 3)), "b0": np.zeros(3)},
        "chain": {"w0": np.zeros((4, 3)), "b0": np.zeros(4), "w1": np.zeros((2, 5)),
                  "b1": np.zeros(2)},
    }  # fmt: skip
    for name, arrays in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)  # type: ignore[arg-type]
        with pytest.raises(WeightsError):
            Mlp.load(path)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(WeightsError, match=r"not a NumPy \.npz"):
        Mlp.load(tmp_path / "text.npz")


def test_pickled_objects_are_never_loaded(tmp_path: Path) -> None:
    # An object array would need pickle to load; allow_pickle=False refuses it outright.
    path = tmp_path / "objects.npz"
    np.savez(path, w0=np.array([{"a": 1}], dtype=object), b0=np.zeros(1))
    with pytest.raises(WeightsError):
        Mlp.load(path)

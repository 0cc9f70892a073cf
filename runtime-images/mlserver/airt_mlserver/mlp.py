"""The example MLP's forward pass in NumPy, from the weights examples/build_models.py exports.

Called by airt_mlserver.runtime (inside MLServer) and by tests/unit/mlserver, which compare it
with the torch module the weights came from. NumPy only, so the MLServer image needs no torch.
The weights file is read with `allow_pickle=False`: an .npz can then hold arrays and nothing
that runs code when loaded.

The file holds `w0, b0, w1, b1, ...` in layer order, each weight shaped (out, in) as in torch's
Linear; ReLU sits between the layers, not after the last. The outputs are the airt worker's
for the same model: `logits` and `probabilities` (softmax over the logits).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]

INPUT = "features"
OUTPUTS = ("logits", "probabilities")


class WeightsError(ValueError):
    """The weights file is not an MLP this module can run."""


class InputError(ValueError):
    """A request's tensor does not fit the model."""


@dataclass(frozen=True)
class Mlp:
    """Linear layers with ReLU between them; immutable once loaded."""

    weights: tuple[Array, ...]
    biases: tuple[Array, ...]

    @classmethod
    def load(cls, path: str | Path) -> Mlp:
        """Read and check an .npz of `w<i>` / `b<i>` arrays."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: np.asarray(npz[name]) for name in npz.files}
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{path}: not a NumPy .npz file of arrays ({exc})") from exc
        layers = sum(1 for name in arrays if name.startswith("w"))
        expected = {f"{p}{i}" for i in range(layers) for p in ("w", "b")}
        if layers == 0 or set(arrays) != expected:
            raise WeightsError(
                f"{path}: expected arrays w0, b0, ... w{max(layers - 1, 0)}, "
                f"b{max(layers - 1, 0)}; found {', '.join(sorted(arrays)) or 'none'}"
            )
        weights = tuple(arrays[f"w{i}"].astype(np.float32) for i in range(layers))
        biases = tuple(arrays[f"b{i}"].astype(np.float32) for i in range(layers))
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            if w.ndim != 2 or b.shape != (w.shape[0],):
                raise WeightsError(f"{path}: w{i} {w.shape} and b{i} {b.shape} are no layer")
            if i and w.shape[1] != weights[i - 1].shape[0]:
                given = weights[i - 1].shape[0]
                raise WeightsError(
                    f"{path}: w{i} takes {w.shape[1]} inputs, w{i - 1} gives {given}"
                )
        return cls(weights, biases)

    @property
    def in_features(self) -> int:
        return int(self.weights[0].shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weights[-1].shape[0])

    def __call__(self, features: npt.NDArray[np.generic]) -> dict[str, Array]:
        """`logits` and `probabilities` for a batch of rows shaped (n, in_features)."""
        if features.ndim != 2 or features.shape[1] != self.in_features:
            raise InputError(
                f"{INPUT} must be shaped [n, {self.in_features}], got {list(features.shape)}"
            )
        h = features.astype(np.float32, copy=False)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w.T + b
            if i < last:
                h = np.maximum(h, np.float32(0))
        logits = h.astype(np.float32, copy=False)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
        return {"logits": logits, "probabilities": probabilities}

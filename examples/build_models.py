"""Build the example models the worker serves, as TorchScript (.pt) and torch.export (.pt2) files,
and the MLP's weights as NumPy arrays (.npz) for the example MLServer runtime.

Run by hand, by `make dev` and by the worker-tier tests:

    uv run python examples/build_models.py [OUT_DIR]      # default: examples/models/

Nothing is downloaded: weights are random with fixed seeds, so every build is identical in
behaviour. Besides each model file it writes `<name>.yaml`, the worker config for
`airt-worker serve --config-file` (model interface and batching; the model path is given
separately).

- `mlp`: a small MLP (64 -> 256 -> 256 -> 10); per-request overhead dominates, the batching and
  transport benchmark. `mlp.npz` holds the same weights for runtime-images/mlserver's NumPy
  runtime (arrays `w0, b0, w1, b1, ...` in layer order, each weight shaped (out, in) as in
  torch's Linear), so that MLServer and the airt worker can be asked the same question.
- `cnn`: a small CNN over 3x32x32 images; compute dominates.
- `strings`: TorchScript over `List[str]` (BYTES in, BYTES out: upper-cased, and lengths as INT64).
- `halves`: FP16 and BF16 inputs and outputs (TorchScript and torch.export).

The files are byte-for-byte reproducible for a given torch version wherever the checkout and its
virtual environment live, which is what lets the examples pin the models' OCI digests. Both
formats record the source file of every module they compile, torch's own `nn` modules included:
TorchScript in its debug tables, torch.export in each node's stack trace. This builder records
torch's files relative to the site-packages folder that holds torch (`torch/nn/modules/linear.py`)
and is run from this folder under its bare name (examples/model_cache.py), so no absolute path of
the machine that built them ends up in the files.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

MAX_BATCH = 64
# The folders whose absolute paths no built file may carry: the one holding the torch package,
# and this one (when the builder is run by hand under its full path).
SITE_PACKAGES = Path(torch.__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


def portable_path(filename: str) -> str:
    """`filename` relative to torch's site-packages or to this folder when it lies there."""
    path = Path(filename)
    if not path.is_absolute():
        return filename
    for root in (SITE_PACKAGES, HERE):
        if path.resolve().is_relative_to(root):
            return path.resolve().relative_to(root).as_posix()
    return filename


@contextmanager
def portable_torchscript_sources() -> Iterator[None]:
    """TorchScript asks torch._sources.get_source_lines_and_file for the file it records; the
    compiler's modules import that function by name, so each of their references is replaced
    while the models are scripted, and restored after. There is no public switch to leave the
    debug tables out of `torch.jit.save`."""
    import torch._jit_internal
    import torch._sources
    import torch.jit.frontend

    original = torch._sources.get_source_lines_and_file

    def relative(obj: Any, error_msg: str | None = None) -> tuple[list[str], int, str | None]:
        lines, lineno, filename = original(obj, error_msg)
        return lines, lineno, None if filename is None else portable_path(filename)

    holders = [torch._sources, torch.jit.frontend, torch._jit_internal]
    for module in holders:
        module.get_source_lines_and_file = relative  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module in holders:
            module.get_source_lines_and_file = original  # type: ignore[attr-defined]


def export(module: nn.Module, example: tuple[Any, ...], dynamic: dict[str, Any]) -> Any:
    """torch.export.export, with the files in the recorded stack traces made relative."""
    program = torch.export.export(module, example, dynamic_shapes=dynamic)
    for node in program.graph.nodes:
        trace = node.meta.get("stack_trace")
        for root in (SITE_PACKAGES, HERE) if trace else ():
            trace = trace.replace(f'File "{root}/', 'File "')
        if trace:
            node.meta["stack_trace"] = trace
    return program


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
        )

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(features)
        return {"logits": logits, "probabilities": torch.softmax(logits, dim=1)}


class Cnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(128, 10),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.body(image)


class Strings(nn.Module):
    def forward(self, text: list[str]) -> tuple[list[str], torch.Tensor]:
        upper = [s.upper() for s in text]
        lengths = torch.tensor([len(s) for s in text], dtype=torch.int64).reshape(-1, 1)
        return upper, lengths


class Halves(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 2.0, 8), requires_grad=False)

    def forward(self, half: torch.Tensor, brain: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "half_out": half * self.scale.to(torch.float16) + 1,
            "brain_out": brain * self.scale.to(torch.bfloat16) - 1,
            "total": half.float().sum(dim=1, keepdim=True) + brain.float().sum(dim=1, keepdim=True),
        }


def _tensor(name: str, datatype: str, dims: list[int]) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "dims": dims}


def _write_config(out: Path, name: str, config: dict[str, Any]) -> Path:
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _save_linear_weights(net: nn.Sequential, path: Path) -> None:
    """The Linear layers' weights and biases as plain arrays (no pickle: np.load reads them with
    allow_pickle=False)."""
    arrays: dict[str, np.ndarray] = {}
    linears = [m for m in net if isinstance(m, nn.Linear)]
    for i, layer in enumerate(linears):
        arrays[f"w{i}"] = layer.weight.detach().numpy().astype(np.float32)
        arrays[f"b{i}"] = layer.bias.detach().numpy().astype(np.float32)
    np.savez(path, **arrays)


def build(out: Path) -> list[Path]:
    """Write every example model and its config into `out`; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    batching = {"max_batch_size": MAX_BATCH}
    with warnings.catch_warnings(), portable_torchscript_sources():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export
        torch.manual_seed(0)
        mlp = Mlp().eval()
        example = (torch.randn(2, 64),)
        torch.jit.save(torch.jit.script(mlp), out / "mlp.pt")
        program = export(mlp, example, {"features": {0: batch}})
        torch.export.save(program, out / "mlp.pt2")
        _save_linear_weights(mlp.net, out / "mlp.npz")
        written += [out / "mlp.pt", out / "mlp.pt2", out / "mlp.npz"]
        written.append(
            _write_config(
                out,
                "mlp",
                {
                    "inputs": [_tensor("features", "FP32", [64])],
                    "batching": {**batching, "max_queue_delay_microseconds": 100},
                },
            )
        )

        torch.manual_seed(1)
        cnn = Cnn().eval()
        example = (torch.randn(2, 3, 32, 32),)
        # Scripted, not traced: tracing records the Python frames of torch's modules by their
        # absolute paths, which no hook reaches.
        torch.jit.save(torch.jit.script(cnn), out / "cnn.pt")
        program = export(cnn, example, {"image": {0: batch}})
        torch.export.save(program, out / "cnn.pt2")
        written += [out / "cnn.pt", out / "cnn.pt2"]
        written.append(
            _write_config(
                out,
                "cnn",
                {
                    "inputs": [_tensor("image", "FP32", [3, 32, 32])],
                    "outputs": [_tensor("logits", "FP32", [10])],
                    "batching": {**batching, "max_queue_delay_microseconds": 500},
                },
            )
        )

        torch.jit.save(torch.jit.script(Strings()), out / "strings.pt")
        written.append(out / "strings.pt")
        written.append(
            _write_config(
                out,
                "strings",
                {
                    "inputs": [_tensor("text", "BYTES", [1])],
                    "outputs": [_tensor("upper", "BYTES", [1]), _tensor("length", "INT64", [1])],
                    "batching": batching,
                },
            )
        )

        halves = Halves().eval()
        example2 = (torch.randn(2, 8).half(), torch.randn(2, 8).bfloat16())
        torch.jit.save(torch.jit.script(halves), out / "halves.pt")
        program = export(halves, example2, {"half": {0: batch}, "brain": {0: batch}})
        torch.export.save(program, out / "halves.pt2")
        written += [out / "halves.pt", out / "halves.pt2"]
        written.append(
            _write_config(
                out,
                "halves",
                {
                    "inputs": [_tensor("half", "FP16", [8]), _tensor("brain", "BF16", [8])],
                    "batching": batching,
                },
            )
        )
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path(__file__).resolve().parent / "models"
    parser.add_argument("out", nargs="?", type=Path, default=default, help=f"default: {default}")
    args = parser.parse_args(argv)
    for path in build(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The served model's interface: tensor specs, Triton model config and v2 metadata documents.

Built once by the model runner (from what the model file tells plus the configured inputs and
outputs) and read by the data plane to validate requests and answer metadata, config and
repository calls. Dims here never include the batch dimension; metadata adds it as -1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output: v2 datatype and dims without the batch dimension (-1 = variable)."""

    name: str
    datatype: str
    dims: tuple[int, ...]

    def full_shape(self, max_batch_size: int) -> list[int]:
        return ([-1] if max_batch_size > 0 else []) + list(self.dims)


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What the worker serves and how it schedules it."""

    name: str
    version: str
    platform: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_microseconds: int
    max_queue_size: int
    default_timeout_microseconds: int
    instance_count: int
    device: str

    def metadata(self) -> dict[str, Any]:
        """The v2 model metadata document (shapes include the batch dimension as -1)."""
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.platform,
            "inputs": [
                {"name": t.name, "datatype": t.datatype, "shape": t.full_shape(self.max_batch_size)}
                for t in self.inputs
            ],
            "outputs": [
                {"name": t.name, "datatype": t.datatype, "shape": t.full_shape(self.max_batch_size)}
                for t in self.outputs
            ],
        }

    def config(self) -> dict[str, Any]:
        """Triton's model config (JSON form of model_config.proto)."""
        cfg: dict[str, Any] = {
            "name": self.name,
            "platform": self.platform,
            "backend": "pytorch",
            "version_policy": {"specific": {"versions": [int(self.version)]}},
            "max_batch_size": self.max_batch_size,
            "input": [_config_tensor(t) for t in self.inputs],
            "output": [_config_tensor(t) for t in self.outputs],
            "instance_group": [
                {
                    "name": f"{self.name}_0",
                    "kind": "KIND_GPU" if self.device == "cuda" else "KIND_CPU",
                    "count": self.instance_count,
                }
            ],
        }
        if self.max_batch_size > 0:
            batching: dict[str, Any] = {
                "preferred_batch_size": list(self.preferred_batch_sizes),
                "max_queue_delay_microseconds": self.max_queue_delay_microseconds,
            }
            if self.max_queue_size or self.default_timeout_microseconds:
                batching["default_queue_policy"] = {
                    "timeout_action": "REJECT",
                    "default_timeout_microseconds": self.default_timeout_microseconds,
                    "allow_timeout_override": True,
                    "max_queue_size": self.max_queue_size,
                }
            cfg["dynamic_batching"] = batching
        return cfg


def _config_tensor(t: TensorSpec) -> dict[str, Any]:
    datatype = "STRING" if t.datatype == "BYTES" else t.datatype
    # Triton's config wants non-empty dims; a scalar per batch row is written [1].
    return {"name": t.name, "data_type": f"TYPE_{datatype}", "dims": list(t.dims) or [1]}

"""The contract between the dynamic batcher and what runs its batches.

`batching.DynamicBatcher` depends on a `BatchRunner`; `runner.ModelRunner` is one, wired in by the
composition root (`server`). Both import this module and neither imports the other: the batcher
owns requests (concatenating their inputs, splitting the outputs back), the runner only turns one
batch of arrays into output arrays on a model instance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from airt_worker.datatypes import Array


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a `BatchRunner` returns for one batch: outputs in spec order, each with the batch's
    rows first (when the model batches), and where the time went."""

    outputs: list[Array]
    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0


class BatchRunner(Protocol):
    """Runs one batch on one model instance; the batcher's only view of the model."""

    def run(self, instance: int, inputs: Sequence[Array], rows: int) -> RunResult:
        """Run `inputs` (spec order, `rows` batch rows) on model instance `instance`.

        Called in that instance's own thread, one batch at a time per instance. Raises an
        InferenceError (ModelError when the model itself raised) to fail the whole batch.
        """
        ...

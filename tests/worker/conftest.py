"""Worker-tier fixtures: the example models built once, and real worker processes on free ports.

Each worker is `python -m airt_worker` (what `airt-worker serve` runs) as a subprocess, driven over
localhost by tritonclient. Processes start in parallel and tests wait for readiness by polling
with a deadline; teardown sends SIGTERM and waits for a clean exit.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from workerproc import ROOT, Worker, spawn


@pytest.fixture(scope="session")
def models() -> Path:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import model_cache
    finally:
        sys.path.pop(0)
    built: Path = model_cache.example_models()
    return built


@pytest.fixture(scope="session")
def workers(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Worker]]:
    """The conformance workers, started together: mlp (TorchScript), halves (torch.export),
    strings (BYTES), each with small body limits so the oversize tests stay cheap."""
    logs = tmp_path_factory.mktemp("logs")
    limits = ["--max-request-bytes", str(1 << 20), "--grpc-max-message-bytes", str(2 << 20)]
    started = {
        "mlp": spawn(
            "mlp",
            models / "mlp.pt",
            logs,
            *limits,
            "--batching.max-queue-delay-microseconds",
            "2000",
            config=models / "mlp.yaml",
        ),
        "halves": spawn(
            "halves", models / "halves.pt2", logs, *limits, config=models / "halves.yaml"
        ),
        "strings": spawn(
            "strings", models / "strings.pt", logs, *limits, config=models / "strings.yaml"
        ),
    }
    try:
        for w in started.values():
            w.wait_ready()
        yield started
    finally:
        codes = {name: w.stop() for name, w in started.items()}
    bad = {n: c for n, c in codes.items() if c != 0}
    assert not bad, f"workers exited uncleanly: {bad}\n" + "\n".join(started[n].log() for n in bad)


@pytest.fixture(scope="session")
def reference(models: Path) -> Any:
    """The same model files run in-process, for comparing results."""
    import warnings

    import torch

    cache: dict[str, Any] = {}

    def load(name: str) -> Any:
        if name not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                path = models / name
                if path.suffix == ".pt2":
                    cache[name] = torch.export.load(str(path)).module()
                else:
                    cache[name] = torch.jit.load(str(path))
        return cache[name]

    return load

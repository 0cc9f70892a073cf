"""Fixtures for the metrics-sidecar unit tests: a Triton-like page and a fake worker on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sidecar_fakes import TRITON_PAGE, FakeWorker, serve_fake_worker


@pytest.fixture
def triton_page() -> str:
    """A worker page as Triton writes it: counters without `_total`, a histogram, GPU series."""
    return TRITON_PAGE


@pytest.fixture
def fake_worker() -> Iterator[FakeWorker]:
    with serve_fake_worker() as worker:
        yield worker

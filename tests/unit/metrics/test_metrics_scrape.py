"""Reading the worker over loopback: every failure becomes a reason, a stuck worker a timeout."""

from __future__ import annotations

import pytest
from sidecar_fakes import FakeWorker

from airt_dev.ports import free_port
from airt_metrics.scrape import WorkerEndpoint, WorkerScrapeError, fetch_text


def endpoint(url: str) -> WorkerEndpoint:
    return WorkerEndpoint.from_url(url)


def reason_of(url: str, timeout: float = 0.5, max_bytes: int = 1 << 20) -> str:
    with pytest.raises(WorkerScrapeError) as info:
        fetch_text(endpoint(url), timeout, max_bytes)
    return info.value.reason


def test_reads_the_page(fake_worker: FakeWorker, triton_page: str) -> None:
    assert fetch_text(endpoint(fake_worker.url), 2.0, 1 << 20) == triton_page


def test_refused_is_connect() -> None:
    assert reason_of(f"http://127.0.0.1:{free_port()}/metrics") == "connect"


def test_stuck_worker_is_timeout(fake_worker: FakeWorker) -> None:
    fake_worker.stall = True
    assert reason_of(fake_worker.url, timeout=0.2) == "timeout"


def test_error_status(fake_worker: FakeWorker) -> None:
    fake_worker.status = 503
    assert reason_of(fake_worker.url) == "http_status"


def test_oversized_page(fake_worker: FakeWorker) -> None:
    fake_worker.page = "x 1\n" * 1000
    assert reason_of(fake_worker.url, max_bytes=1024) == "too_large"


def test_endpoint_from_url() -> None:
    assert WorkerEndpoint.from_url("http://127.0.0.1:8082/metrics") == WorkerEndpoint(
        "127.0.0.1", 8082, "/metrics"
    )
    assert WorkerEndpoint.from_url("http://localhost/m?x=1").path == "/m?x=1"
    with pytest.raises(ValueError, match="http://"):
        WorkerEndpoint.from_url("https://127.0.0.1/metrics")

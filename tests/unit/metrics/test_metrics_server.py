"""The sidecar's endpoints over loopback, its settings sources, and `main` on bad input."""

from __future__ import annotations

import gzip
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sidecar_fakes import FakeWorker

from airt_metrics.collector import WorkerCollector
from airt_metrics.main import main
from airt_metrics.scrape import WorkerEndpoint
from airt_metrics.server import SidecarServer
from airt_metrics.settings import SidecarSettings

LABELS = {"namespace": "team-a", "modeldeployment": "simple", "pod": "simple-0"}


@contextmanager
def sidecar(worker_url: str, timeout: float = 0.5) -> Iterator[str]:
    collector = WorkerCollector(
        WorkerEndpoint.from_url(worker_url), timeout=timeout, max_bytes=1 << 20, labels=LABELS
    )
    server = SidecarServer(("127.0.0.1", 0), collector)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_metrics_carry_worker_series_with_pod_labels(fake_worker: FakeWorker) -> None:
    with sidecar(fake_worker.url) as base:
        status, headers, body = get(f"{base}/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    page = body.decode()
    assert (
        'nv_inference_request_success{model="simple",version="1",'
        'namespace="team-a",modeldeployment="simple",pod="simple-0"} 7.0'
    ) in page
    assert 'airt_worker_up{namespace="team-a",modeldeployment="simple",pod="simple-0"} 1.0' in page


def test_gzip_when_asked(fake_worker: FakeWorker) -> None:
    with sidecar(fake_worker.url) as base:
        _, headers, body = get(f"{base}/metrics", {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert b"nv_inference_count" in gzip.decompress(body)


def test_stuck_worker_still_gets_an_answer(fake_worker: FakeWorker) -> None:
    fake_worker.stall = True
    with sidecar(fake_worker.url, timeout=0.2) as base:
        status, _, body = get(f"{base}/metrics")
        health, _, _ = get(f"{base}/healthz")
    assert status == 200
    [up] = [line for line in body.decode().splitlines() if line.startswith("airt_worker_up{")]
    assert up.endswith(" 0.0")
    assert b'reason="timeout"} 1.0' in body
    assert health == 200


def test_healthz_does_not_depend_on_the_worker() -> None:
    with sidecar("http://127.0.0.1:9/metrics") as base:
        assert get(f"{base}/healthz")[:3:2] == (200, b"ok\n")
        assert get(f"{base}/nope")[0] == 404


def test_a_failing_collector_is_a_500_and_the_sidecar_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Collector):
        def collect(self) -> Iterator[Metric]:
            raise RuntimeError("bug")

    server = SidecarServer(("127.0.0.1", 0), Broken())
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert get(f"{base}/metrics")[0] == 500
        assert get(f"{base}/healthz")[0] == 200
    finally:
        server.shutdown()
        server.server_close()
    assert "rendering /metrics failed" in caplog.text


def test_settings_from_the_downward_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "simple-7d9f-abcde")
    monkeypatch.setenv("POD_NAMESPACE", "team-a")
    monkeypatch.setenv("AIRT_MODELDEPLOYMENT", "simple")
    monkeypatch.setenv("AIRT_METRICS_SCRAPE_TIMEOUT", "0.25")
    settings = SidecarSettings(_cli_parse_args=["--port", "9102"])
    assert settings.port == 9102
    assert settings.scrape_timeout == 0.25
    assert settings.target_labels() == {
        "namespace": "team-a",
        "modeldeployment": "simple",
        "pod": "simple-7d9f-abcde",
    }


def test_settings_defaults_and_empty_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("POD_NAME", "POD_NAMESPACE", "AIRT_MODELDEPLOYMENT"):
        monkeypatch.delenv(name, raising=False)
    settings = SidecarSettings(_cli_parse_args=[])
    assert (settings.host, settings.port) == ("0.0.0.0", 8002)
    assert settings.worker_url == "http://127.0.0.1:8082/metrics"
    assert settings.target_labels() == {}


def test_main_rejects_bad_settings_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--scrape-timeout", "0"]) == 2
    assert main(["--worker-url", "https://x/metrics"]) == 2
    err = capsys.readouterr().err
    assert "scrape_timeout" in err
    assert "worker_url" in err
    assert "Traceback" not in err


def test_main_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--worker-url" in capsys.readouterr().out


def test_main_reports_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["--host", "127.0.0.1", "--port", str(port)]) == 1
    assert "cannot listen on 127.0.0.1:" in capsys.readouterr().err


def test_main_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == "airt-metrics 0.1.0"

"""The fake worker of the metrics-sidecar unit tests, and the Triton-like page it serves.

Used by conftest.py (fixtures) and by the tests for typing. The fake worker is an in-process HTTP
server on 127.0.0.1 that serves whatever page, status or stall the test sets, so the sidecar's
reads (refused, stuck, bad status, oversized) are exercised without the real worker and without
sleeping: a stalled answer waits on an Event, released at teardown.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRITON_PAGE = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="simple",version="1"} 7
# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="simple",reason="BACKEND",version="1"} 1
# HELP nv_inference_count Number of inferences performed (does not include cached requests)
# TYPE nv_inference_count counter
nv_inference_count{model="simple",version="1"} 12
# HELP nv_inference_request_duration_us Cumulative inference request duration in microseconds
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{model="simple",version="1"} 4521
# HELP nv_inference_pending_request_count Instantaneous number of pending requests
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="simple",version="1"} 0
# HELP airt_batch_size Rows per executed batch
# TYPE airt_batch_size histogram
airt_batch_size_bucket{model="simple",version="1",le="1.0"} 2
airt_batch_size_bucket{model="simple",version="1",le="4.0"} 3
airt_batch_size_bucket{model="simple",version="1",le="+Inf"} 3
airt_batch_size_sum{model="simple",version="1"} 5
airt_batch_size_count{model="simple",version="1"} 3
# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{gpu_uuid="GPU-1234"} 0.25
# HELP nv_gpu_memory_used_bytes GPU used memory, in bytes
# TYPE nv_gpu_memory_used_bytes gauge
nv_gpu_memory_used_bytes{gpu_uuid="GPU-1234"} 1048576
# HELP airt_gpu_telemetry_available 1 when GPU telemetry is read
# TYPE airt_gpu_telemetry_available gauge
airt_gpu_telemetry_available 1
"""


@dataclass
class FakeWorker:
    """What the fake worker answers next; the test changes the fields as it goes."""

    port: int = 0
    page: str = TRITON_PAGE
    status: int = 200
    stall: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    requests: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"


@contextmanager
def serve_fake_worker() -> Iterator[FakeWorker]:
    """A running fake worker on a free loopback port, stopped on exit."""
    state = FakeWorker()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests += 1
            if state.stall:
                state.release.wait(timeout=30)
                return
            body = state.page.encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()

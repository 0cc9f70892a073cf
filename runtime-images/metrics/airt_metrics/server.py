"""The sidecar's HTTP endpoints: GET /metrics (text format 0.0.4) and GET /healthz.

Called by `airt_metrics.main`, which builds the collector and serves until SIGTERM. A threading
server from the standard library is enough: the traffic is a few scrapes a minute, each bounded
by the worker-read timeout, and concurrent scrapes (several Prometheus replicas) do not queue
behind one another. /healthz says only that the sidecar itself answers; it never depends on the
worker, so a dead worker never gets the sidecar restarted by its liveness probe.
"""

from __future__ import annotations

import gzip
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client.registry import Collector

from airt_metrics.exposition import CONTENT_TYPE, render

log = logging.getLogger(__name__)


class SidecarServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows the collector its /metrics renders."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], collector: Collector) -> None:
        self.collector = collector
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        # A scraper that hangs up mid-answer is not worth a traceback on stderr.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: SidecarServer
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections give their thread back after this many seconds.
    timeout = 120

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            try:
                body = render(self.server.collector.collect())
            except Exception:
                # A bug here must not take the sidecar down; the log gets the details.
                log.exception("rendering /metrics failed")
                self._send(500, "text/plain; charset=utf-8", b"internal error: see sidecar log\n")
                return
            encoding = None
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                body, encoding = gzip.compress(body), "gzip"
            self._send(200, CONTENT_TYPE, body, encoding)
        elif path == "/healthz":
            self._send(200, "text/plain; charset=utf-8", b"ok\n")
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")

    def _send(
        self, status: int, content_type: str, body: bytes, encoding: str | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

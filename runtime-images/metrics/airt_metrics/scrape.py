"""Read the worker's /metrics page within one total deadline.

Called by `airt_metrics.collector.WorkerCollector` once per scrape of the sidecar. A plain
`urlopen(timeout=...)` bounds each socket operation, not the whole read: a worker that trickles
its body a byte at a time could hold a scrape for minutes. Here every connect and read gets only
the time left until one deadline, so a scrape of the sidecar never waits longer than the
configured timeout (plus parsing), whatever the worker does. Failures become `WorkerScrapeError`
with a short `reason`, which the collector counts in `airt_worker_scrape_errors_total`.
"""

from __future__ import annotations

import http.client
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

# Every reason a read can fail; the collector exposes a counter per reason from the start, so that
# rate() over it works before the first error.
REASONS = ("connect", "timeout", "http_status", "too_large", "parse")

_ACCEPT = "text/plain; version=0.0.4"
_CHUNK = 64 * 1024


class WorkerScrapeError(Exception):
    """The worker's metrics could not be read; `reason` is one of REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class WorkerEndpoint:
    """Where the worker serves its metrics, split once from the configured URL."""

    host: str
    port: int
    path: str

    @classmethod
    def from_url(cls, url: str) -> WorkerEndpoint:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"worker metrics URL must be http://host[:port]/path, got {url!r}")
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        return cls(host=parts.hostname, port=parts.port or 80, path=path)


def fetch_text(endpoint: WorkerEndpoint, timeout: float, max_bytes: int) -> str:
    """The body of GET endpoint, read completely before `timeout` seconds have passed.

    Raises WorkerScrapeError on refusal, deadline, a non-200 status, an oversized or undecodable
    body.
    """
    deadline = time.monotonic() + timeout

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise WorkerScrapeError("timeout", f"worker did not answer within {timeout:g} s")
        return left

    conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=remaining())
    try:
        try:
            conn.connect()
            sock = conn.sock
            if not isinstance(sock, socket.socket):
                raise WorkerScrapeError("connect", "no socket after connecting to the worker")
            sock.settimeout(remaining())
            conn.request(
                "GET", endpoint.path, headers={"Accept": _ACCEPT, "Accept-Encoding": "identity"}
            )
            sock.settimeout(remaining())
            response = conn.getresponse()
            if response.status != 200:
                raise WorkerScrapeError(
                    "http_status", f"worker answered HTTP {response.status} {response.reason}"
                )
            body = bytearray()
            while True:
                sock.settimeout(remaining())
                chunk = response.read1(_CHUNK)
                if not chunk:
                    break
                body += chunk
                if len(body) > max_bytes:
                    raise WorkerScrapeError("too_large", f"worker metrics exceed {max_bytes} bytes")
        except TimeoutError as exc:  # socket.timeout is TimeoutError since 3.10
            raise WorkerScrapeError(
                "timeout", f"worker did not answer within {timeout:g} s"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise WorkerScrapeError("connect", f"cannot read worker metrics: {exc}") from exc
    finally:
        conn.close()
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkerScrapeError("parse", f"worker metrics are not UTF-8: {exc}") from exc

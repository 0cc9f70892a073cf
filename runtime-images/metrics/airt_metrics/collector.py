"""The sidecar's collector: the worker's metrics, relabelled, plus the sidecar's own health series.

Called by `airt_metrics.server` once per GET /metrics. Each call reads the worker right then,
within a bounded total timeout (`airt_metrics.scrape`), rather than serving a copy cached by a
background poller. Why on demand:

- freshness: Prometheus's scrape interval alone decides how old a value is; after N requests the
  next scrape shows exactly N, with no extra poll period of lag and no stale copy served as
  current while the worker is gone (its series simply stop, and Prometheus marks them stale);
- no work when nobody scrapes, and no thread that could wedge or drift;
- still fast when the worker is dead or slow: a dead worker refuses the connection at once, a
  stuck one costs at most `scrape_timeout` (0.5 s by default, bounded to 5 s by the settings),
  far inside Prometheus's 10 s scrape timeout; either way the scrape answers `airt_worker_up 0`.

The sidecar is never in the inference path: it only reads the worker's separate metrics port.

Own series (labelled like the worker's with namespace, modeldeployment and pod):
`airt_worker_up` (1 when the last read succeeded), `airt_worker_scrape_duration_seconds`,
`airt_worker_scrape_errors_total{reason}` and, when the worker does not report it itself (no
GPU, no NVML, or the worker is down), `airt_gpu_telemetry_available 0`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from airt_metrics.exposition import ExpositionError, parse_families, relabel
from airt_metrics.scrape import REASONS, WorkerEndpoint, WorkerScrapeError, fetch_text

log = logging.getLogger(__name__)

WORKER_UP = "airt_worker_up"
SCRAPE_DURATION = "airt_worker_scrape_duration_seconds"
SCRAPE_ERRORS = "airt_worker_scrape_errors_total"
GPU_TELEMETRY_AVAILABLE = "airt_gpu_telemetry_available"
OWN_NAMES = frozenset({WORKER_UP, SCRAPE_DURATION, SCRAPE_ERRORS})

Fetch = Callable[[WorkerEndpoint, float, int], str]


class WorkerCollector(Collector):
    """Yields the worker's families with the target labels, then the sidecar's own families."""

    def __init__(
        self,
        endpoint: WorkerEndpoint,
        *,
        timeout: float,
        max_bytes: int,
        labels: Mapping[str, str],
        fetch: Fetch = fetch_text,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._endpoint = endpoint
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._labels = dict(labels)
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._errors = dict.fromkeys(REASONS, 0)
        self._was_up: bool | None = None

    def describe(self) -> list[Metric]:
        # Registering must not scrape the worker; the families are only known per scrape.
        return []

    def _read_worker(self) -> list[Metric]:
        text = self._fetch(self._endpoint, self._timeout, self._max_bytes)
        try:
            return parse_families(text)
        except ExpositionError as exc:
            raise WorkerScrapeError("parse", str(exc)) from exc

    def _record(self, error: WorkerScrapeError | None) -> None:
        """Count the error, and log only changes of state, not every failed scrape."""
        with self._lock:
            if error is not None:
                self._errors[error.reason] += 1
            up = error is None
            changed, self._was_up = self._was_up != up, up
        if changed and error is not None:
            log.warning("worker metrics unavailable (%s): %s", error.reason, error)
        elif changed:
            log.info("worker metrics available at %s", self._endpoint.path)

    def collect(self) -> Iterator[Metric]:
        start = self._clock()
        error: WorkerScrapeError | None = None
        try:
            families = self._read_worker()
        except WorkerScrapeError as exc:
            error, families = exc, []
        duration = self._clock() - start
        self._record(error)

        families = [f for f in families if f.name not in OWN_NAMES]
        yield from relabel(families, self._labels)
        if not any(f.name == GPU_TELEMETRY_AVAILABLE for f in families):
            yield self._gauge(
                GPU_TELEMETRY_AVAILABLE,
                "1 when the worker reads GPU telemetry (NVML); 0 when it reports none.",
                0.0,
            )
        yield self._gauge(
            WORKER_UP,
            "1 when the last read of the worker's metrics succeeded, else 0.",
            0.0 if error else 1.0,
        )
        yield self._gauge(
            SCRAPE_DURATION, "Seconds the last read of the worker's metrics took.", duration
        )
        errors = Metric(
            SCRAPE_ERRORS, "Failed reads of the worker's metrics, by reason.", "counter"
        )
        with self._lock:
            counts = dict(self._errors)
        for reason, count in counts.items():
            errors.add_sample(SCRAPE_ERRORS, {**self._labels, "reason": reason}, float(count))
        yield errors

    def _gauge(self, name: str, documentation: str, value: float) -> Metric:
        family = Metric(name, documentation, "gauge")
        family.add_sample(name, dict(self._labels), value)
        return family

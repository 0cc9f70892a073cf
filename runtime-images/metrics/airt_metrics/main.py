"""Composition root of the metrics sidecar: settings → collector → HTTP server, until SIGTERM.

Called by the `airt-metrics` command (`run`, the metrics image's entry point) and by
`python -m airt_metrics`, with the command's arguments. Returns a process exit status instead of
raising: bad settings and an unusable listen address print one line to stderr, never a traceback.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from importlib.metadata import version
from types import FrameType

from pydantic import ValidationError
from pydantic_settings import SettingsError

from airt_metrics.collector import WorkerCollector
from airt_metrics.scrape import WorkerEndpoint
from airt_metrics.server import SidecarServer
from airt_metrics.settings import SidecarSettings

log = logging.getLogger("airt_metrics")

EXIT_USAGE = 2
EXIT_LISTEN = 1


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record (AIRT_LOG_FORMAT=json), with the worker's field names. The
    sidecar keeps its own ten lines rather than import the worker: the products stay apart."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def configure_logging(log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLogFormatter()
        if log_format == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _settings(argv: list[str]) -> SidecarSettings | int:
    """The settings, or an exit status after printing why they are unusable (or --help)."""
    try:
        return SidecarSettings(_cli_parse_args=argv)
    except SystemExit as exc:  # argparse: --help (0) or an unknown option (2), already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            print(f"airt-metrics: {where}: {err['msg']}", file=sys.stderr)
        return EXIT_USAGE
    except SettingsError as exc:
        print(f"airt-metrics: {exc}", file=sys.stderr)
        return EXIT_USAGE


def main(argv: list[str]) -> int:
    """Run the sidecar until SIGTERM or SIGINT; the exit status."""
    if "--version" in argv:
        print(f"airt-metrics {version('airt-metrics')}")
        return 0
    settings = _settings(argv)
    if isinstance(settings, int):
        return settings
    configure_logging(settings.log_format)

    collector = WorkerCollector(
        WorkerEndpoint.from_url(settings.worker_url),
        timeout=settings.scrape_timeout,
        max_bytes=settings.max_body_bytes,
        labels=settings.target_labels(),
    )
    try:
        server = SidecarServer((settings.host, settings.port), collector)
    except OSError as exc:
        where = f"{settings.host}:{settings.port}"
        print(f"airt-metrics: cannot listen on {where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_LISTEN

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        # shutdown() waits for serve_forever() to return: it cannot run on that same thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    log.info(
        "serving /metrics on %s:%s for worker %s (timeout %gs, labels %s)",
        host,
        port,
        settings.worker_url,
        settings.scrape_timeout,
        settings.target_labels(),
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def run() -> None:
    """The `airt-metrics` console script: `main` with this process's arguments."""
    sys.exit(main(sys.argv[1:]))

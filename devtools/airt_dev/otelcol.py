"""A local OpenTelemetry Collector: OTLP in (gRPC and HTTP), every span out to a JSON file.

Used by the tracing tests (tests/worker/test_worker_tracing.py and
tests/cluster/test_reconcile_tracing.py): they point a worker or the operator at
`Collector.endpoint`, then read back what the Collector really received with
`Collector.wait_spans`. The binary is the pinned build of tools/otelcol, made by
`tools/build.sh otelcol` into the keyed tool cache (or taken from AIRT_BIN_DIR).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airt_dev.ports import bind_failed, free_port
from airt_dev.wait import wait_for

START_DEADLINE_S = 60.0
TOOLS_DIR = Path(__file__).resolve().parents[2] / "tools"

CONFIG = """\
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc_port}
      http:
        endpoint: 127.0.0.1:{http_port}
exporters:
  file:
    path: {path}
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
"""


@dataclass(frozen=True)
class Span:
    """One received span, flattened from the OTLP JSON (ids are lowercase hex)."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    status_code: int
    resource: dict[str, Any] = field(default_factory=dict)


def _value(v: dict[str, Any]) -> Any:
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "arrayValue" in v:
        return [_value(x) for x in v["arrayValue"].get("values", [])]
    return v.get("stringValue")


def _attrs(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {a["key"]: _value(a.get("value", {})) for a in items}


def parse_spans(text: str) -> list[Span]:
    """Every span in the file exporter's output: one OTLP/JSON export request per line; a line
    still being written is skipped (read again later)."""
    spans: list[Span] = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        for rs in doc.get("resourceSpans", []):
            resource = _attrs(rs.get("resource", {}).get("attributes", []))
            for ss in rs.get("scopeSpans", []):
                for s in ss.get("spans", []):
                    spans.append(
                        Span(
                            name=s["name"],
                            trace_id=s["traceId"].lower(),
                            span_id=s["spanId"].lower(),
                            parent_id=s.get("parentSpanId", "").lower(),
                            kind=int(s.get("kind", 0)),
                            start_ns=int(s["startTimeUnixNano"]),
                            end_ns=int(s["endTimeUnixNano"]),
                            attributes=_attrs(s.get("attributes", [])),
                            status_code=int(s.get("status", {}).get("code", 0)),
                            resource=resource,
                        )
                    )
    return spans


@dataclass
class Collector:
    """A running Collector process and where it listens and writes."""

    proc: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    spans_path: Path
    log_path: Path

    @property
    def endpoint(self) -> str:
        """The OTLP/gRPC endpoint, as OTEL_EXPORTER_OTLP_ENDPOINT takes it."""
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """The OTLP/HTTP base endpoint (the exporter appends /v1/traces)."""
        return f"http://127.0.0.1:{self.http_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def spans(self) -> list[Span]:
        if not self.spans_path.exists():
            return []
        return parse_spans(self.spans_path.read_text(errors="replace"))

    def wait_spans(
        self, predicate: Callable[[list[Span]], bool], timeout_s: float, what: str
    ) -> list[Span]:
        """The spans received so far, once `predicate` holds for them."""

        def check() -> list[Span] | None:
            spans = self.spans()
            return spans if predicate(spans) else None

        def died() -> str | None:
            return f"the Collector exited:\n{self.log()}" if self.proc.poll() is not None else None

        found = wait_for(check, timeout_s, what, interval_s=0.2, abort=died)
        assert found is not None  # wait_for returns only a truthy value
        return found

    def stop(self, timeout_s: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)


def collector_binary() -> Path:
    """The pinned Collector: from AIRT_BIN_DIR when set, else built (cached) by
    `tools/build.sh otelcol`, which needs nothing of the control plane."""
    override = os.environ.get("AIRT_BIN_DIR")
    if override and (Path(override) / "otelcol").exists():
        return Path(override) / "otelcol"
    proc = subprocess.run(
        ["bash", str(TOOLS_DIR / "build.sh"), "otelcol"],
        check=False,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"tools/build.sh otelcol failed:\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1]) / "otelcol"


def start(workdir: Path, binary: Path | None = None) -> Collector:
    """Start a Collector writing into `workdir`; returns once it accepts OTLP."""
    if binary is None:
        binary = collector_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        grpc_port, http_port = free_port(), free_port()
        spans_path = workdir / "spans.json"
        config = workdir / "otelcol.yaml"
        config.write_text(CONFIG.format(grpc_port=grpc_port, http_port=http_port, path=spans_path))
        log_path = workdir / f"otelcol-{attempt}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [str(binary), "--config", f"file:{config}"], stdout=log, stderr=subprocess.STDOUT
            )
        collector = Collector(proc, grpc_port, http_port, spans_path, log_path)

        def ready(c: Collector = collector) -> bool:
            if c.proc.poll() is not None:
                raise _ExitedError(c.log())
            return "Everything is ready" in c.log()

        try:
            wait_for(ready, START_DEADLINE_S, "the Collector to accept OTLP", interval_s=0.1)
        except _ExitedError as e:
            if bind_failed(str(e)) or "address already in use" in str(e):
                continue  # another process took a port meanwhile: new ports
            raise RuntimeError(f"the Collector exited early:\n{e}") from None
        except BaseException:
            collector.stop()
            raise
        return collector
    raise RuntimeError("the Collector could not bind free ports three times")


class _ExitedError(Exception):
    """The Collector process ended while starting; the message is its log."""

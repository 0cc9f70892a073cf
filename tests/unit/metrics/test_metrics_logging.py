"""The sidecar honours AIRT_LOG_FORMAT=json like the worker: one JSON object per log line with
the worker's field names."""

from __future__ import annotations

import json
import logging

import pytest

from airt_metrics.main import configure_logging
from airt_metrics.settings import SidecarSettings


def test_the_shared_variable_and_the_sidecars_own(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SidecarSettings().log_format == "plain"
    monkeypatch.setenv("AIRT_LOG_FORMAT", "json")
    assert SidecarSettings().log_format == "json"
    monkeypatch.setenv("AIRT_METRICS_LOG_FORMAT", "plain")
    assert SidecarSettings().log_format == "plain"


def test_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("json")
        logging.getLogger("airt_metrics").info("serving %s", "/metrics")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("airt_metrics").exception("failed")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert {k: lines[0][k] for k in ("level", "logger", "message")} == {
        "level": "info",
        "logger": "airt_metrics",
        "message": "serving /metrics",
    }
    assert set(lines[0]) == {"time", "level", "logger", "message"}
    assert "ValueError: boom" in lines[1]["exception"]

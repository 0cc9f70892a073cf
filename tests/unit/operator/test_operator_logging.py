"""The operator's log format: AIRT_LOG_FORMAT (shared with the worker and the sidecar) or its
own AIRT_OPERATOR_LOG_FORMAT, which wins; JSON lines carry the worker's field names."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from airt_operator.main import JsonFormatter
from airt_operator.settings import OperatorSettings


def test_log_format_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    assert OperatorSettings().log_format == "json"
    monkeypatch.setenv("LOG_FORMAT", "plain")  # an unrelated variable is not ours
    assert OperatorSettings().log_format == "json"
    monkeypatch.setenv("AIRT_LOG_FORMAT", "plain")
    assert OperatorSettings().log_format == "plain"
    monkeypatch.setenv("AIRT_OPERATOR_LOG_FORMAT", "json")
    assert OperatorSettings().log_format == "json"
    assert OperatorSettings(log_format="plain").log_format == "plain"


def test_json_fields_match_the_workers() -> None:
    try:
        raise RuntimeError("x")
    except RuntimeError:
        record = logging.LogRecord("airt.operator", logging.ERROR, "f", 1, "a %s", ("b",), None)
        record.exc_info = sys.exc_info()
    doc = json.loads(JsonFormatter().format(record))
    assert set(doc) == {"time", "level", "logger", "message", "exception"}
    assert (doc["level"], doc["logger"], doc["message"]) == ("error", "airt.operator", "a b")

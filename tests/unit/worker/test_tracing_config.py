"""The worker's tracing switch and its v2 trace settings, from the OTEL_* environment."""

from __future__ import annotations

import pytest

from airt_worker.errors import UnsupportedError
from airt_worker.tracing import TraceConfig, check_update


def test_off_without_an_endpoint() -> None:
    config = TraceConfig.from_env({"OTEL_TRACES_SAMPLER": "always_on"})
    assert not config.enabled
    assert config.settings()["trace_level"] == ["OFF"]
    assert config.settings()["trace_rate"] == "0"


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"},
    ],
)
def test_the_standard_switches_turn_it_off(env: dict[str, str]) -> None:
    assert not TraceConfig.from_env(env).enabled


def test_on_with_an_endpoint_and_a_ratio() -> None:
    config = TraceConfig.from_env(
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.25",
        }
    )
    assert config.enabled
    settings = config.settings()
    assert settings["trace_level"] == ["TIMESTAMPS"]
    assert settings["trace_rate"] == "4"  # one in four
    assert settings["opentelemetry_protocol"] == "http/protobuf"


def test_updates_that_change_nothing_pass_others_are_refused() -> None:
    config = TraceConfig.from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"})
    check_update(config, {"trace_level": ["TIMESTAMPS"], "trace_rate": "1"})
    check_update(config, {"trace_rate": ["1"], "trace_count": None})  # gRPC sends lists
    with pytest.raises(UnsupportedError, match="cannot be changed"):
        check_update(config, {"trace_rate": "10"})
    with pytest.raises(UnsupportedError):
        check_update(config, {"no_such_setting": "x"})

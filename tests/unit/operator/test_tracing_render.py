"""spec.tracing rendered: the worker's OTEL_* variables and the NetworkPolicy's egress to the
OTLP receiver; without it, neither."""

from __future__ import annotations

from typing import Any

import pytest
from opbuild import context, example, model

from airt_operator.api.parse import ApiValidationError
from airt_operator.reconcile.render import render


def traced(tracing: dict[str, Any]) -> list[dict[str, Any]]:
    raw = example("mlp-cpu").model_dump(by_alias=True, exclude_none=True, mode="json")
    raw["spec"]["tracing"] = tracing
    return render(context(model(raw)))


def worker_env(children: list[dict[str, Any]]) -> dict[str, str]:
    dep = next(c for c in children if c["kind"] == "Deployment")
    worker = dep["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in worker.get("env", [])}


def egress(children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    np = next(c for c in children if c["kind"] == "NetworkPolicy")
    rules: list[dict[str, Any]] = np["spec"]["egress"]
    return rules


def test_tracing_becomes_otel_env_and_egress() -> None:
    children = traced(
        {"endpoint": "http://otel-collector.observability:4317", "samplingPercent": 25}
    )
    env = worker_env(children)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.25"
    assert env["OTEL_SERVICE_NAME"] == "mlp-cpu"
    assert "k8s.namespace.name=ns" in env["OTEL_RESOURCE_ATTRIBUTES"]
    assert {"ports": [{"port": 4317, "protocol": "TCP"}]} in egress(children)


def test_http_protocol_defaults_to_port_4318() -> None:
    children = traced({"endpoint": "https://collector.example", "protocol": "http/protobuf"})
    assert worker_env(children)["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert {"ports": [{"port": 4318, "protocol": "TCP"}]} in egress(children)


def test_no_tracing_no_otel_env() -> None:
    children = render(context(example("mlp-cpu")))
    assert not [k for k in worker_env(children) if k.startswith("OTEL_")]
    # DNS, and the model store for a remote model; nothing to a trace receiver
    ports = {p["port"] for rule in egress(children) for p in rule.get("ports", [])}
    assert ports <= {53, 443}, egress(children)


@pytest.mark.parametrize(
    "tracing",
    [{"endpoint": "otel-collector:4317"}, {"endpoint": "http://c:4317", "samplingPercent": 101}],
)
def test_bad_tracing_is_refused(tracing: dict[str, Any]) -> None:
    with pytest.raises(ApiValidationError, match=r"spec\.tracing"):
        traced(tracing)

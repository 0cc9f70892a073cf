"""The operator's reconcile spans, received by a real OpenTelemetry Collector.

Cluster tier. The real `airt-operator run` process, scoped to a fresh namespace and configured
by the standard OTEL_* variables (as the chart's `operator.extraEnv` sets them), exports to the
pinned Collector (tools/otelcol); applying the CPU example must produce a `reconcile` span for it
with its `resolve`, `apply` and `status` children.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from namespaces import fresh_namespace

from airt_dev import otelcol
from airt_dev.cluster import Cluster
from airt_dev.fixtures import apply_files
from airt_dev.operator_proc import OperatorProcess
from airt_dev.otelcol import Collector, Span

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "deployments" / "cpu-mlp.yaml"


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    c = otelcol.start(tmp_path_factory.mktemp("otelcol"))
    try:
        yield c
    finally:
        c.stop()


def reconciles(spans: list[Span], ns: str, name: str) -> list[Span]:
    return [
        s
        for s in spans
        if s.name == "reconcile"
        and s.attributes.get("k8s.namespace.name") == ns
        and s.attributes.get("airt.modeldeployment.name") == name
    ]


def test_reconcile_spans(
    cluster: Cluster, collector: Collector, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with fresh_namespace(cluster, "trace") as ns:
        op = OperatorProcess.start(
            cluster.kubeconfig,
            tmp_path_factory.mktemp("operator") / "operator.log",
            namespaces=(ns,),
            extra_env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "100",
                "OTEL_SERVICE_NAME": "airt-operator-test",
            },
        )
        try:
            apply_files(cluster, EXAMPLE, namespace=ns)

            def applied(spans: list[Span]) -> bool:
                return any(
                    s.attributes.get("airt.reconcile.result") == "applied"
                    for s in reconciles(spans, ns, "mlp-cpu")
                )

            spans = collector.wait_spans(applied, 120, "a reconcile span that applied mlp-cpu")
        finally:
            op.stop()
    # the namespace's model volume (Retain) is not needed again
    cluster.kubectl("delete", "pv", f"airt-models-{ns}", "--ignore-not-found", "--wait=false")
    root = next(
        s
        for s in reconciles(spans, ns, "mlp-cpu")
        if s.attributes.get("airt.reconcile.result") == "applied"
    )
    assert root.parent_id == ""
    assert root.resource["service.name"] == "airt-operator-test"
    children = {s.name: s for s in spans if s.parent_id == root.span_id}
    assert set(children) == {"resolve", "apply", "status"}, sorted(children)
    assert children["resolve"].attributes["airt.runtime.name"]
    assert children["apply"].attributes["airt.children.desired"] >= 4
    for child in children.values():
        assert child.trace_id == root.trace_id
        assert root.start_ns <= child.start_ns <= child.end_ns <= root.end_ns

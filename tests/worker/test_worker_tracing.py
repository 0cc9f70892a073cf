"""Worker traces, checked against a real OpenTelemetry Collector.

A worker configured by the standard OTEL_* variables exports over OTLP/gRPC to the pinned
Collector (tools/otelcol), which writes every span it received to a file that these tests read.
REST and gRPC inferences carry a W3C `traceparent`; the tests check the span tree (names,
parents, the trace id and parent span from the traceparent), the batch and queue attributes,
sampling decisions made by the caller, and the v2 trace-setting endpoints of a traced and an
untraced worker.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException
from workerproc import Worker, spawn

from airt_dev import otelcol
from airt_dev.otelcol import Collector, Span

SPAN_DEADLINE_S = 60.0
SERVER = 2  # OTLP SpanKind SPAN_KIND_SERVER
CHILDREN = {"receive", "queue", "batch", "respond"}
REST_ROOT = "POST /v2/models/mlp/infer"
GRPC_ROOT = "inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    c = otelcol.start(tmp_path_factory.mktemp("otelcol"))
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def traced(models: Path, collector: Collector, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The mlp model with tracing on; a 50 ms queue delay so that concurrent requests batch."""
    w = spawn(
        "traced",
        models / "mlp.pt",
        tmp_path_factory.mktemp("traced-logs"),
        "--batching.max-queue-delay-microseconds",
        "50000",
        config=models / "mlp.yaml",
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_SERVICE_NAME": "mlp-traced",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # export every 0.1 s, not 5 s
        },
    )
    try:
        w.wait_ready()
        yield w
    finally:
        code = w.stop()
    assert code == 0, w.log()


def traceparent(sampled: bool = True) -> tuple[str, str, str]:
    """A fresh (header, trace id, parent span id)."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}", trace_id, span_id


def features(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 64), dtype=np.float32)


def by_trace(spans: list[Span], trace_id: str) -> list[Span]:
    return [s for s in spans if s.trace_id == trace_id]


def complete(trace_ids: list[str]) -> Any:
    """Every trace has its six spans (root, receive, queue, batch, model, respond)."""
    return lambda spans: all(len(by_trace(spans, t)) >= 6 for t in trace_ids)


def check_tree(spans: list[Span], trace_id: str, parent: str, root_name: str) -> Span:
    """The one request's span tree; returns its root."""
    mine = by_trace(spans, trace_id)
    names = sorted(s.name for s in mine)
    assert names == sorted([root_name, *CHILDREN, "model"]), names
    (root,) = [s for s in mine if s.name == root_name]
    assert root.parent_id == parent, "the root's parent is the caller's span from the traceparent"
    assert root.kind == SERVER
    assert root.resource["service.name"] == "mlp-traced"
    assert root.attributes["airt.model.name"] == "mlp"
    named = {s.name: s for s in mine}
    for name in CHILDREN:
        assert named[name].parent_id == root.span_id, name
        assert root.start_ns <= named[name].start_ns <= named[name].end_ns <= root.end_ns, name
    batch, model = named["batch"], named["model"]
    assert model.parent_id == batch.span_id
    assert batch.start_ns <= model.start_ns <= model.end_ns <= batch.end_ns
    # in order: receive, then queue, then the batch, then respond
    assert named["receive"].end_ns <= named["queue"].start_ns + 1
    assert named["queue"].end_ns <= batch.start_ns + 1
    assert batch.end_ns <= named["respond"].start_ns + 1
    size = batch.attributes["airt.batch.size"]
    assert isinstance(size, int) and size >= 1
    assert batch.attributes["airt.batch.rows"] >= size
    assert root.attributes["airt.batch.size"] == size
    queue_ns = named["queue"].attributes["airt.queue.time_ns"]
    assert queue_ns == root.attributes["airt.queue.time_ns"]
    assert abs((named["queue"].end_ns - named["queue"].start_ns) - queue_ns) <= 1
    return root


def check_batches(spans: list[Span], trace_ids: list[str]) -> None:
    """Each batch's size attribute equals the number of these requests that ran in it (every
    request of a batch reports the same batch number)."""
    batches: dict[int, list[Span]] = {}
    for t in trace_ids:
        (b,) = [s for s in by_trace(spans, t) if s.name == "batch"]
        batches.setdefault(b.attributes["airt.batch.number"], []).append(b)
    for number, members in batches.items():
        sizes = {m.attributes["airt.batch.size"] for m in members}
        assert sizes == {len(members)}, (number, sizes, len(members))


def test_rest_inferences_make_span_trees(traced: Worker, collector: Collector) -> None:
    parents = [traceparent() for _ in range(4)]

    def call(tp: tuple[str, str, str]) -> None:
        client = httpclient.InferenceServerClient(traced.http)
        try:
            inp = httpclient.InferInput("features", [2, 64], "FP32")
            inp.set_data_from_numpy(features(2), binary_data=True)
            client.infer("mlp", [inp], headers={"traceparent": tp[0]})
        finally:
            client.close()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(call, parents))
    ids = [t for _, t, _ in parents]
    spans = collector.wait_spans(complete(ids), SPAN_DEADLINE_S, "the REST requests' spans")
    for _, trace_id, parent in parents:
        root = check_tree(spans, trace_id, parent, REST_ROOT)
        assert root.attributes["http.request.method"] == "POST"
        assert root.attributes["http.response.status_code"] == 200
        assert root.status_code != 2  # not an error
    check_batches(spans, ids)


def test_grpc_inferences_make_span_trees(traced: Worker, collector: Collector) -> None:
    parents = [traceparent() for _ in range(4)]

    def call(tp: tuple[str, str, str]) -> None:
        client = grpcclient.InferenceServerClient(traced.grpc)
        try:
            inp = grpcclient.InferInput("features", [1, 64], "FP32")
            inp.set_data_from_numpy(features(1))
            client.infer("mlp", [inp], headers={"traceparent": tp[0]})
        finally:
            client.close()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(call, parents))
    ids = [t for _, t, _ in parents]
    spans = collector.wait_spans(complete(ids), SPAN_DEADLINE_S, "the gRPC requests' spans")
    for _, trace_id, parent in parents:
        root = check_tree(spans, trace_id, parent, GRPC_ROOT)
        assert root.attributes["rpc.system"] == "grpc"
        assert root.attributes["rpc.grpc.status_code"] == "OK"
    check_batches(spans, ids)


def test_sampling_follows_the_caller(traced: Worker, collector: Collector) -> None:
    """A traceparent that says "not sampled" makes no spans; no traceparent starts a new trace."""
    unsampled, unsampled_id, _ = traceparent(sampled=False)
    sampled, sampled_id, sampled_parent = traceparent()
    client = httpclient.InferenceServerClient(traced.http)
    try:
        inp = httpclient.InferInput("features", [1, 64], "FP32")
        inp.set_data_from_numpy(features(1))
        client.infer("mlp", [inp], headers={"traceparent": unsampled})
        client.infer("mlp", [inp], request_id="no-parent")
        client.infer("mlp", [inp], headers={"traceparent": sampled})
    finally:
        client.close()
    # spans are exported in the order they ended: once the last request's are in, the others'
    # would be too
    spans = collector.wait_spans(complete([sampled_id]), SPAN_DEADLINE_S, "the sampled spans")
    assert by_trace(spans, unsampled_id) == []
    check_tree(spans, sampled_id, sampled_parent, REST_ROOT)
    known = {t.trace_id for t in spans if t.parent_id == ""}
    assert known, "a request without a traceparent starts a trace of its own"


def test_failed_request_is_traced(traced: Worker, collector: Collector) -> None:
    """A request the worker refuses still has its server span, with the status it got."""
    tp, trace_id, parent = traceparent()
    client = grpcclient.InferenceServerClient(traced.grpc)
    try:
        bad = grpcclient.InferInput("features", [1, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
        with pytest.raises(InferenceServerException):
            client.infer("mlp", [bad], headers={"traceparent": tp})
    finally:
        client.close()
    spans = collector.wait_spans(
        lambda s: any(x.name == GRPC_ROOT for x in by_trace(s, trace_id)),
        SPAN_DEADLINE_S,
        "the failed request's span",
    )
    (root,) = [s for s in by_trace(spans, trace_id) if s.name == GRPC_ROOT]
    assert root.parent_id == parent
    assert root.attributes["rpc.grpc.status_code"] == "INVALID_ARGUMENT"
    assert root.status_code == 2  # STATUS_CODE_ERROR
    assert "queue" not in {s.name for s in by_trace(spans, trace_id)}


def test_trace_settings_report_tracing(traced: Worker, workers: dict[str, Worker]) -> None:
    """The v2 trace extension tells the truth: on with OpenTelemetry here, off by default; an
    update that would change anything is refused, one that changes nothing is accepted."""
    client = httpclient.InferenceServerClient(traced.http)
    try:
        on = client.get_trace_settings()
        assert on["trace_level"] == ["TIMESTAMPS"]
        assert on["trace_mode"] == "opentelemetry"
        assert on["trace_rate"] == "1"
        assert on["opentelemetry_endpoint"].startswith("http://127.0.0.1:")
        assert client.get_trace_settings(model_name="mlp") == on
        assert client.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]}) == on
        with pytest.raises(InferenceServerException, match="cannot be changed"):
            client.update_trace_settings(settings={"trace_rate": "10"})
    finally:
        client.close()
    gclient = grpcclient.InferenceServerClient(traced.grpc)
    try:
        got = gclient.get_trace_settings(as_json=True)["settings"]
        assert got["trace_level"] == {"value": ["TIMESTAMPS"]}
        with pytest.raises(InferenceServerException, match="cannot be changed"):
            gclient.update_trace_settings(settings={"trace_level": ["OFF"]})
    finally:
        gclient.close()
    plain = httpclient.InferenceServerClient(workers["mlp"].http)
    try:
        off = plain.get_trace_settings()
        assert off["trace_level"] == ["OFF"]
        assert off["trace_rate"] == "0"
    finally:
        plain.close()

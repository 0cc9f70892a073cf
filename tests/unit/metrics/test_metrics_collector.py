"""The sidecar's collector: worker series relabelled, its own health series, the GPU fallback."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client.metrics_core import Metric

from airt_metrics.collector import WorkerCollector
from airt_metrics.scrape import REASONS, WorkerEndpoint, WorkerScrapeError

ENDPOINT = WorkerEndpoint("127.0.0.1", 8082, "/metrics")
LABELS = {"namespace": "team-a", "modeldeployment": "simple", "pod": "simple-7d9f-abcde"}


def collector(fetch: Callable[[WorkerEndpoint, float, int], str]) -> WorkerCollector:
    ticks = iter(float(i) for i in range(1000))
    return WorkerCollector(
        ENDPOINT,
        timeout=0.5,
        max_bytes=1 << 20,
        labels=LABELS,
        fetch=fetch,
        clock=lambda: next(ticks),
    )


def families(c: WorkerCollector) -> dict[str, Metric]:
    return {f.name: f for f in c.collect()}


def value(fams: dict[str, Metric], name: str, **labels: str) -> float:
    matches = [s.value for s in fams[name].samples if labels.items() <= s.labels.items()]
    assert len(matches) == 1, (name, labels, fams[name].samples)
    return matches[0]


def failing(reason: str) -> Callable[[WorkerEndpoint, float, int], str]:
    def fetch(_e: WorkerEndpoint, _t: float, _m: int) -> str:
        raise WorkerScrapeError(reason, f"simulated {reason}")

    return fetch


def test_worker_up_relabels_every_series(triton_page: str) -> None:
    fams = families(collector(lambda *_: triton_page))
    assert value(fams, "airt_worker_up") == 1
    assert value(fams, "nv_inference_request_success", model="simple", **LABELS) == 7
    assert value(fams, "nv_gpu_utilization", gpu_uuid="GPU-1234", **LABELS) == 0.25
    for family in fams.values():
        for sample in family.samples:
            assert LABELS.items() <= sample.labels.items(), sample


def test_scrape_duration_is_measured_with_the_injected_clock(triton_page: str) -> None:
    fams = families(collector(lambda *_: triton_page))
    assert value(fams, "airt_worker_scrape_duration_seconds") == 1.0


def test_worker_gpu_gauge_passes_through_without_a_duplicate(triton_page: str) -> None:
    c = collector(lambda *_: triton_page)
    names = [f.name for f in c.collect()]
    assert names.count("airt_gpu_telemetry_available") == 1
    assert value(families(c), "airt_gpu_telemetry_available") == 1


def test_no_gpu_from_worker_means_telemetry_unavailable() -> None:
    page = '# TYPE nv_inference_count counter\nnv_inference_count{model="m",version="1"} 3\n'
    fams = families(collector(lambda *_: page))
    assert value(fams, "airt_gpu_telemetry_available") == 0
    assert not any(name.startswith("nv_gpu_") for name in fams)


def test_worker_down_answers_up_zero_and_counts_by_reason() -> None:
    c = collector(failing("connect"))
    families(c)
    fams = families(c)
    assert value(fams, "airt_worker_up") == 0
    assert value(fams, "airt_gpu_telemetry_available") == 0
    assert value(fams, "airt_worker_scrape_errors_total", reason="connect") == 2
    assert value(fams, "airt_worker_scrape_errors_total", reason="timeout") == 0
    assert {s.labels["reason"] for s in fams["airt_worker_scrape_errors_total"].samples} == set(
        REASONS
    )
    assert not any(name.startswith("nv_") for name in fams)


def test_unparseable_page_counts_as_a_parse_error() -> None:
    fams = families(collector(lambda *_: "not { a metrics page\n"))
    assert value(fams, "airt_worker_up") == 0
    assert value(fams, "airt_worker_scrape_errors_total", reason="parse") == 1


def test_worker_cannot_shadow_the_sidecars_own_series() -> None:
    page = "# TYPE airt_worker_up gauge\nairt_worker_up 0\n"
    fams = families(collector(lambda *_: page))
    assert value(fams, "airt_worker_up") == 1


def test_recovery_after_failures(triton_page: str) -> None:
    pages = iter([None, triton_page])

    def flaky(_e: WorkerEndpoint, _t: float, _m: int) -> str:
        page = next(pages)
        if page is None:
            raise WorkerScrapeError("timeout", "simulated timeout")
        return page

    c = collector(flaky)
    assert value(families(c), "airt_worker_up") == 0
    fams = families(c)
    assert value(fams, "airt_worker_up") == 1
    assert value(fams, "airt_worker_scrape_errors_total", reason="timeout") == 1

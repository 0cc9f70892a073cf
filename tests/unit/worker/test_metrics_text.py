"""The worker's metrics text: Triton's exact names, labels, and histograms from statistics."""

from __future__ import annotations

from airt_worker.dataplane import DataPlane
from airt_worker.metrics import WorkerCollector, render


def test_triton_names_without_suffixes() -> None:
    plane = DataPlane("mlp", "3")
    plane.stats.record_success(2_000_000, 100_000, 10_000, 1_000_000, 20_000)
    plane.stats.record_batch(1, 4, 10_000, 1_000_000, 20_000)
    plane.stats.record_failure(5_000, "REJECTED")
    text = render(WorkerCollector(plane, nvml=None).collect()).decode()
    lines = text.splitlines()
    assert "# TYPE nv_inference_request_success counter" in lines
    assert 'nv_inference_request_success{model="mlp",version="3"} 1' in lines
    assert 'nv_inference_request_failure{model="mlp",version="3",reason="REJECTED"} 1' in lines
    assert 'nv_inference_count{model="mlp",version="3"} 4' in lines
    assert 'nv_inference_exec_count{model="mlp",version="3"} 1' in lines
    assert 'nv_inference_request_duration_us{model="mlp",version="3"} 2005' in lines
    assert 'nv_inference_queue_duration_us{model="mlp",version="3"} 100' in lines
    assert 'nv_inference_compute_infer_duration_us{model="mlp",version="3"} 1000' in lines
    assert 'nv_inference_pending_request_count{model="mlp",version="3"} 0' in lines
    assert 'airt_batch_size_bucket{model="mlp",version="3",le="2"} 0' in lines
    assert 'airt_batch_size_bucket{model="mlp",version="3",le="4"} 1' in lines
    assert 'airt_batch_size_count{model="mlp",version="3"} 1' in lines
    assert 'airt_request_duration_seconds_bucket{model="mlp",version="3",le="0.001"} 1' in lines
    assert 'airt_request_duration_seconds_bucket{model="mlp",version="3",le="0.0025"} 2' in lines
    assert 'airt_request_duration_seconds_count{model="mlp",version="3"} 2' in lines
    assert "airt_gpu_telemetry_available 0" in lines
    assert not [line for line in lines if "_total{" in line or "_created" in line]


def test_statistics_document_has_every_field() -> None:
    plane = DataPlane("mlp", "1")
    plane.stats.record_success(10, 1, 2, 3, 4)
    plane.stats.record_batch(1, 1, 2, 3, 4)
    doc = plane.statistics("mlp", "")["model_stats"][0]
    assert set(doc) >= {
        "name",
        "version",
        "last_inference",
        "inference_count",
        "execution_count",
        "inference_stats",
        "batch_stats",
    }
    assert set(doc["inference_stats"]) == {
        "success",
        "fail",
        "queue",
        "compute_input",
        "compute_infer",
        "compute_output",
        "cache_hit",
        "cache_miss",
    }
    assert doc["batch_stats"][0]["batch_size"] == 1
    assert doc["batch_stats"][0]["compute_infer"] == {"count": 1, "ns": 3}

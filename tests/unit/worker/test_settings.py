"""Worker settings: sources and their precedence, inference from the file name, CPU limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from airt_worker.settings import BatchingConfig, cgroup_cpu_limit, load_settings


def test_precedence_cli_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text(
        "model_name: from-file\nbatching:\n  max_batch_size: 4\n  max_queue_size: 7\n"
        "inputs:\n  - {name: x, datatype: TYPE_FP32, dims: [3]}\n"
    )
    monkeypatch.setenv("AIRT_MODEL_NAME", "from-env")
    monkeypatch.setenv("AIRT_BATCHING__MAX_BATCH_SIZE", "16")
    s = load_settings(
        ["--model-path", "m.pt2", "--config-file", str(config), "--batching.max-batch-size", "32"]
    )
    assert s.model_name == "from-env"
    assert s.batching.max_batch_size == 32
    assert s.batching.max_queue_size == 7  # from the file, merged with env/CLI
    assert s.inputs[0].datatype == "FP32"  # TYPE_ prefix accepted
    assert s.format == "torch-export"
    assert s.http_port == 8000 and s.grpc_port == 8001 and s.metrics_port == 8082
    assert s.metrics_host == "127.0.0.1"
    assert s.grpc_max_message_bytes == 2**31 - 1


def test_defaults_from_file_name() -> None:
    s = load_settings(["--model-path", "/models/resnet.pt"])
    assert s.model_name == "resnet" and s.format == "torchscript" and s.model_version == "1"


def test_unknown_suffix_needs_a_format() -> None:
    with pytest.raises(ValidationError, match="model_format"):
        load_settings(["--model-path", "model.onnx"])
    assert load_settings(["--model-path", "m.bin", "--model-format", "torchscript"]).format == (
        "torchscript"
    )


def test_invalid_values_are_named() -> None:
    with pytest.raises(ValidationError, match="model_sha256"):
        load_settings(["--model-path", "m.pt", "--model-sha256", "abc"])
    with pytest.raises(ValidationError, match="preferred_batch_sizes"):
        BatchingConfig(max_batch_size=4, preferred_batch_sizes=[8])
    with pytest.raises(ValidationError, match="unknown datatype"):
        load_settings(["--model-path", "m.pt", "--inputs", '[{"name": "x", "datatype": "FP8"}]'])


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_limit(tmp_path) == min(2, len(__import__("os").sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) == len(__import__("os").sched_getaffinity(0))


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1

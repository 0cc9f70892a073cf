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
    assert s.grpc_max_message_bytes == 64 * 1024 * 1024


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


def test_the_environment_the_operator_renders(monkeypatch: pytest.MonkeyPatch) -> None:
    """The env block of the operator's Deployment template (templates/deployment.yaml.j2)."""
    env = {
        "AIRT_MODEL_NAME": "simple",
        "AIRT_MODEL_VERSION": "2",
        "AIRT_MODEL_PATH": "/models/model.pt",
        "AIRT_MODEL_FORMAT": "torchscript",
        "AIRT_MODEL_SHA256": "a" * 64,
        "AIRT_DEVICE": "cuda",
        "AIRT_THREADS": "2",
        "AIRT_DTYPE": "float16",
        "AIRT_INSTANCE_COUNT": "2",
        "AIRT_BATCHING__MAX_BATCH_SIZE": "32",
        "AIRT_BATCHING__MAX_QUEUE_DELAY_MICROSECONDS": "500",
        "AIRT_BATCHING__MAX_QUEUE_SIZE": "128",
        "AIRT_BATCHING__PREFERRED_BATCH_SIZES": "[8, 16]",
        "AIRT_BATCHING__DEFAULT_TIMEOUT_MICROSECONDS": "0",
        "AIRT_INPUTS": '[{"name": "x", "datatype": "FP32", "dims": [3, -1]}]',
        "AIRT_OUTPUTS": '[{"name": "y", "datatype": "FP32", "dims": [10]}]',
        "AIRT_DRAIN_TIMEOUT_SECONDS": "30",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings([])
    assert (s.model_name, s.model_version, s.format, s.device) == (
        "simple",
        "2",
        "torchscript",
        "cuda",
    )
    assert (s.threads, s.dtype, s.instance_count) == (2, "float16", 2)
    assert s.batching.preferred_batch_sizes == [8, 16] and s.batching.max_queue_size == 128
    assert s.inputs[0].dims == [3, -1] and s.outputs[0].name == "y"
    assert s.drain_timeout_seconds == 30

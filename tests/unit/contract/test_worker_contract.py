"""The operator→worker contract, end to end in one process: every API field that reaches the
worker, rendered by the operator into the worker container's environment and parsed by the
worker's own settings loader, arrives with the value the ModelDeployment asked for.

The one test folder that imports two products: the contract is where they meet. The expected
values are written here from the API's documented meaning, not computed with the operator's
mapping, so a renamed or dropped field on either side fails.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import CliApp

from airt_contract.worker import WORKER_CONFIG_ENV, WorkerConfig
from airt_operator.api import (
    Batching,
    ModelSource,
    Serving,
    parse_inference_runtime,
    parse_model_deployment,
)
from airt_operator.reconcile.build import BuildSettings, build_context
from airt_operator.reconcile.render import render
from airt_operator.reconcile.resolve import resolve
from airt_worker.fetch import FetchSettings
from airt_worker.settings import WorkerSettings, load_settings

ROOT = Path(__file__).resolve().parents[3]
SHA = "ab" * 32

# Every field of the API that the worker gets, with the value the spec below sets and where it
# lands in the worker's settings. Fields of these API classes not listed here must be in
# NOT_FOR_THE_WORKER, so a new API field cannot silently miss the worker.
FULL_SPEC: dict[str, Any] = {
    "model": {
        "uri": "https://models.example.com/cnn.pt2",
        "format": "torch-export",
        "name": "cnn-served",
        "version": 7,
        "sha256": SHA,
        "precision": "bf16",
        "instances": 3,
        "inputs": [{"name": "pixels", "datatype": "FP16", "shape": [3, -1, 224]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [1000]}],
    },
    "runtime": {"name": "torch-cuda"},
    "replicas": 1,
    "resources": {"cpu": "3500m", "memory": "24Gi", "gpu": {"count": 4}},
    "batching": {
        "maxBatchSize": 64,
        "maxQueueDelayMicroseconds": 1500,
        "preferredBatchSizes": [16, 32],
        "maxQueueSize": 999,
        "queueTimeoutMicroseconds": 4_000_000,
    },
    "serving": {
        "maxRequestBytes": 3 * 2**20,
        "maxInflightBytes": 50 * 2**20,
        "executionTimeoutSeconds": 17,
    },
}
EXPECTED: dict[str, tuple[str, Any]] = {
    # API field (class.field) → (worker settings attribute path, value)
    "ModelSource.uri": ("model_path", Path("/models/model")),  # fetched into the pod's volume
    "ModelSource.format": ("model_format", "torch-export"),
    "ModelSource.name": ("model_name", "cnn-served"),
    "ModelSource.version": ("model_version", "7"),
    "ModelSource.sha256": ("model_sha256", SHA),
    "ModelSource.precision": ("dtype", "bfloat16"),
    "ModelSource.instances": ("instance_count", 3),
    "ModelSource.inputs": ("inputs", [("pixels", "FP16", [3, -1, 224])]),
    "ModelSource.outputs": ("outputs", [("logits", "FP32", [1000])]),
    "Batching.max_batch_size": ("batching.max_batch_size", 64),
    "Batching.max_queue_delay_microseconds": ("batching.max_queue_delay_microseconds", 1500),
    "Batching.preferred_batch_sizes": ("batching.preferred_batch_sizes", [16, 32]),
    "Batching.max_queue_size": ("batching.max_queue_size", 999),
    "Batching.queue_timeout_microseconds": (
        "batching.default_timeout_microseconds",
        4_000_000,
    ),
    "Serving.max_request_bytes": ("max_request_bytes", 3 * 2**20),
    "Serving.max_inflight_bytes": ("max_inflight_bytes", 50 * 2**20),
    "Serving.execution_timeout_seconds": ("execution_timeout_seconds", 17.0),
    "GpuRequest.count": ("device_count", 4),
    "ComputeResources.cpu": ("threads", 4),  # ceil(3.5): threads follow the CPU limit
}
NOT_FOR_THE_WORKER = {
    "ModelSource.credentials": "the fetch init container's environment, never the worker's",
}


def _runtime() -> Any:
    raw = yaml.safe_load((ROOT / "examples" / "runtimes" / "torch-cuda.yaml").read_text())
    return parse_inference_runtime(raw)


def _rendered_env(spec: dict[str, Any]) -> dict[str, str]:
    md = parse_model_deployment(
        {
            "apiVersion": "airt.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "contract", "namespace": "ns"},
            "spec": spec,
        }
    )
    resolved = resolve(md, [_runtime()])
    ctx = build_context(md, resolved, BuildSettings.defaults(), "uid-1", 1, False)
    dep = next(c for c in render(ctx) if c["kind"] == "Deployment")
    worker = dep["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in worker["env"] if "value" in e}


def _worker_parses(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> WorkerSettings:
    for name in [k for k in os.environ if k.startswith("AIRT_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings([])


def _get(settings: WorkerSettings, path: str) -> Any:
    value: Any = settings
    for part in path.split("."):
        value = getattr(value, part)
    if path in ("inputs", "outputs"):
        return [(t.name, t.datatype, t.dims) for t in value]
    return value


def test_every_api_field_for_the_worker_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _worker_parses(_rendered_env(FULL_SPEC), monkeypatch)
    wrong = {
        api: (path, _get(settings, path), want)
        for api, (path, want) in EXPECTED.items()
        if _get(settings, path) != want
    }
    assert not wrong, wrong
    assert settings.device == "cuda"


def test_the_table_covers_every_api_field_that_could_reach_the_worker() -> None:
    fields = {
        f"{cls.__name__}.{name}"
        for cls in (ModelSource, Batching, Serving)
        for name in cls.model_fields
    }
    assert fields - set(EXPECTED) - set(NOT_FOR_THE_WORKER) == set()


def test_the_config_is_handed_over_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _rendered_env(FULL_SPEC)
    # One variable holds the configuration; none re-spells a worker field.
    worker_fields = {f"AIRT_{n.upper()}" for n in WorkerConfig.model_fields}
    assert WORKER_CONFIG_ENV in env
    assert not (set(env) & worker_fields - {"AIRT_LOG_FORMAT"}), set(env) & worker_fields
    # What the operator wrote is a valid WorkerConfig on its own, parsed by the contract.
    config = WorkerConfig.model_validate_json(env[WORKER_CONFIG_ENV])
    assert config.device_count == 4


@pytest.mark.parametrize(
    "example", sorted(p.name for p in (ROOT / "examples" / "deployments").glob("*.yaml"))
)
def test_every_example_renders_a_config_the_worker_accepts(
    example: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = yaml.safe_load((ROOT / "examples" / "deployments" / example).read_text())
    spec = raw["spec"]
    runtimes = [
        parse_inference_runtime(yaml.safe_load(p.read_text()))
        for p in sorted((ROOT / "examples" / "runtimes").glob("*.yaml"))
    ]
    md = parse_model_deployment({**raw, "metadata": {**raw["metadata"], "namespace": "ns"}})
    resolved = resolve(md, runtimes)
    ctx = build_context(md, resolved, BuildSettings.defaults(), "uid-1", 1, False)
    dep = next(c for c in render(ctx) if c["kind"] == "Deployment")
    worker = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in worker["env"] if "value" in e}
    settings = _worker_parses(env, monkeypatch)
    gpu = (spec.get("resources") or {}).get("gpu")
    gpus = gpu.get("count", 1) if gpu else 0
    assert settings.device == ("cuda" if gpu else "cpu")
    if gpu and not gpu.get("mig"):
        assert settings.device_count == gpus
    assert settings.instance_count == spec["model"].get("instances", max(1, gpus))
    assert settings.batching.max_batch_size == (spec.get("batching") or {}).get("maxBatchSize", 0)


def test_the_fetcher_gets_the_model_its_digest_and_its_size_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    md = parse_model_deployment(
        {
            "apiVersion": "airt.dev/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": "contract", "namespace": "ns"},
            "spec": FULL_SPEC,
        }
    )
    ctx = build_context(md, resolve(md, [_runtime()]), BuildSettings.defaults(), "u", 1, False)
    dep = next(c for c in render(ctx) if c["kind"] == "Deployment")
    init = dep["spec"]["template"]["spec"]["initContainers"][0]
    assert init["args"] == ["fetch"]
    for name in [k for k in os.environ if k.startswith("AIRT_")]:
        monkeypatch.delenv(name)
    for e in init["env"]:
        monkeypatch.setenv(e["name"], e["value"])
    # A credentials Secret's variable (envFrom) still overrides a single field.
    monkeypatch.setenv("AIRT_FETCH_TIMEOUT_SECONDS", "42")
    settings = CliApp.run(FetchSettings, cli_args=[])
    assert settings.uri == FULL_SPEC["model"]["uri"]
    assert settings.sha256 == SHA
    assert str(settings.dest) == str(
        _get(_worker_parses(_rendered_env(FULL_SPEC), monkeypatch), "model_path")
    )
    assert settings.max_bytes == 20 * 2**30  # the operator's default model size cap
    assert settings.timeout_seconds == 42

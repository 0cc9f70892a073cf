"""The worker's and the model fetcher's configuration for one ModelDeployment: the API's fields
mapped, once, onto the contract's `WorkerConfig` and `FetchConfig` (airt_contract.worker).

Called by reconcile/build.py, which stores the results as JSON in the render context; the
deployment template passes each whole to its container (`AIRT_WORKER_CONFIG`,
`AIRT_FETCH_CONFIG`) and spells no field of them. Pure. Only what the ModelDeployment, its
runtime or the operator decide is set; everything else keeps the contract's default, so a new
worker default never needs a change here. Names differ between the API (camelCase, the CRD's
vocabulary) and the contract (Triton's names) in exactly one place: this module.
"""

from __future__ import annotations

from dataclasses import dataclass

from airt_contract.worker import (
    FETCHED_MODEL_PATH,
    BatchingConfig,
    FetchConfig,
    TensorConfig,
    WorkerConfig,
)
from airt_operator.api import ModelDeploymentSpec, TensorSpec
from airt_operator.reconcile.serving import ServingLimits

#: The API's precision names → the worker's dtype names.
PRECISION = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass(frozen=True)
class PodFacts:
    """What the operator decided about the pod that the worker must know."""

    served_name: str
    threads: int
    gpu_count: int  # 0: a CPU pod; with DRA alternatives of different counts, the most
    drain_seconds: int
    limits: ServingLimits
    # False when DRA alternatives differ in count: the worker then uses every GPU it sees,
    # which are exactly the devices its claim was allocated.
    fixed_gpu_count: bool = True


def pvc_parts(uri: str) -> tuple[str, str]:
    """`pvc://<claim>/<path>` → (claim, path in the volume)."""
    rest = uri.removeprefix("pvc://")
    claim, _, path = rest.partition("/")
    return claim, path


def model_path(uri: str) -> str:
    """Where the worker finds the model file in its container."""
    if not uri.startswith("pvc://"):
        return FETCHED_MODEL_PATH
    _, path = pvc_parts(uri)
    return f"/models/{path}".rstrip("/")


def _tensors(items: list[TensorSpec] | None) -> list[TensorConfig]:
    return [TensorConfig(name=t.name, datatype=t.datatype, dims=list(t.shape)) for t in items or []]


def worker_config(spec: ModelDeploymentSpec, pod: PodFacts) -> WorkerConfig:
    """The contract instance for one ModelDeployment's worker containers."""
    model = spec.model
    b = spec.batching
    limits = pod.limits
    fields: dict[str, object] = {
        "model_path": model_path(model.uri),
        "model_name": pod.served_name,
        "model_version": str(model.version or 1),
        "model_format": model.format,
        "device": "cuda" if pod.gpu_count else "cpu",
        "threads": pod.threads,
        "dtype": PRECISION.get(model.precision or "", "auto"),
        # One instance per GPU unless the model says otherwise: a 4-GPU replica serves on all 4.
        "instance_count": model.instances or max(1, pod.gpu_count),
        "batching": BatchingConfig(
            max_batch_size=b.max_batch_size if b else 0,
            max_queue_delay_microseconds=(b.max_queue_delay_microseconds or 0) if b else 0,
            preferred_batch_sizes=list(b.preferred_batch_sizes or []) if b else [],
            max_queue_size=limits.max_queue_size,
            default_timeout_microseconds=limits.queue_timeout_us,
        ),
        "drain_timeout_seconds": float(pod.drain_seconds),
        "max_request_bytes": limits.max_request_bytes,
        "max_json_bytes": limits.max_json_bytes,
        "grpc_max_message_bytes": limits.grpc_max_message_bytes,
        "max_inflight_bytes": limits.max_inflight_bytes,
        "execution_timeout_seconds": float(limits.execution_timeout_s),
    }
    if pod.gpu_count and pod.fixed_gpu_count:
        fields["device_count"] = pod.gpu_count
    if model.sha256:
        fields["model_sha256"] = model.sha256
    if model.inputs:
        fields["inputs"] = _tensors(list(model.inputs))
    if model.outputs:
        fields["outputs"] = _tensors(list(model.outputs))
    return WorkerConfig.model_validate(fields)


def fetch_config(spec: ModelDeploymentSpec, max_bytes: int) -> FetchConfig | None:
    """The model-fetch init container's configuration; None for a model on a volume."""
    model = spec.model
    if model.uri.startswith("pvc://"):
        return None
    fields: dict[str, object] = {
        "uri": model.uri,
        "dest": FETCHED_MODEL_PATH,
        "max_bytes": max_bytes,
    }
    if model.sha256:
        fields["sha256"] = model.sha256
    return FetchConfig.model_validate(fields)


def config_json(config: WorkerConfig | FetchConfig) -> str:
    """The JSON a container gets: only what was set, in a stable order."""
    return config.model_dump_json(exclude_unset=True)

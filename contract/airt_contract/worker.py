"""The worker's configuration: the one typed contract from the operator to the worker.

The operator (airt_operator.reconcile.worker_config) builds a `WorkerConfig` from a
ModelDeployment and its InferenceRuntime and hands it to the worker whole, as JSON in the
`AIRT_WORKER_CONFIG` environment variable of the worker container; the worker
(airt_worker.settings) parses the same model, adding only where values may also come from (its
command line, `AIRT_*` variables, a config file). Every field, its default and its validation
are written here once. Names follow Triton's model configuration where one exists
(`max_queue_delay_microseconds`, `default_timeout_microseconds`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The environment variable that carries a whole `WorkerConfig` as JSON into the worker.
WORKER_CONFIG_ENV = "AIRT_WORKER_CONFIG"

#: Where the worker writes the one-line reason it stopped (the kubelet's default
#: terminationMessagePath); the operator reads it back as a condition reason.
DEFAULT_TERMINATION_LOG = "/dev/termination-log"

#: The Open Inference Protocol's tensor datatypes the worker serves.
V2_DATATYPES: tuple[str, ...] = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BF16", "BYTES",
)  # fmt: skip

ModelFormat = Literal["torchscript", "torch-export"]


class TensorConfig(BaseModel):
    """One model input or output as the model config declares it (Triton's `input`/`output`)."""

    name: str = Field(description="Tensor name clients use.")
    datatype: str | None = Field(
        default=None,
        description="v2 datatype (FP32, INT64, BYTES, ...). Inferred from torch.export programs "
        "and, for outputs, from the warm-up run; required for TorchScript inputs.",
    )
    dims: list[int] | None = Field(
        default=None,
        description="Shape without the batch dimension; -1 marks a variable dimension. Inferred "
        "like `datatype`.",
    )

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.upper().removeprefix("TYPE_")
        v = "BYTES" if v == "STRING" else v
        if v not in V2_DATATYPES:
            raise ValueError(f"unknown datatype {v!r}; expected one of {', '.join(V2_DATATYPES)}")
        return v

    @field_validator("dims")
    @classmethod
    def _valid_dims(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and any(d < -1 or d == 0 for d in v):
            raise ValueError(f"dims {v}: each dimension is a positive size or -1 (variable)")
        return v


class BatchingConfig(BaseModel):
    """Dynamic batching with Triton's semantics; `max_batch_size` 0 disables batching."""

    max_batch_size: int = Field(
        default=8, ge=0, description="Most rows (first dimension) in one model call; 0 = none."
    )
    preferred_batch_sizes: list[int] = Field(
        default_factory=list, description="Batch sizes formed preferentially (each <= max)."
    )
    max_queue_delay_microseconds: int = Field(
        default=0,
        ge=0,
        description="How long the oldest request may wait for a batch to fill; 0 = send what is "
        "queued as soon as a model instance is free.",
    )
    max_queue_size: int = Field(
        default=256,
        ge=0,
        description="Requests waiting beyond this are rejected at once (503 / UNAVAILABLE); "
        "0 = no cap. The operator derives it from the batching settings.",
    )
    default_timeout_microseconds: int = Field(
        default=30_000_000,
        ge=0,
        description="Queue timeout of a request without its own `timeout` parameter; 0 = none.",
    )

    @model_validator(mode="after")
    def _preferred_within_max(self) -> BatchingConfig:
        bad = [p for p in self.preferred_batch_sizes if p < 1 or p > max(self.max_batch_size, 1)]
        if bad:
            raise ValueError(
                f"preferred_batch_sizes {bad} must lie in 1..max_batch_size ({self.max_batch_size})"
            )
        return self


class WorkerConfig(BaseModel):
    """Everything `airt-worker serve` runs with; the operator writes it, the worker parses it."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    model_path: Path = Field(
        description="The model file: TorchScript (.pt) or torch.export (.pt2)."
    )
    model_name: str = Field(default="", description="Served name; default: the file's stem.")
    model_version: str = Field(default="1", pattern=r"^[0-9]+$", description="Numeric version.")
    model_format: ModelFormat | None = Field(
        default=None, description="torchscript | torch-export; default: from the file suffix."
    )
    model_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="Expected sha256 of the model file, verified before loading.",
    )
    inputs: list[TensorConfig] = Field(default_factory=list, description="Model inputs.")
    outputs: list[TensorConfig] = Field(default_factory=list, description="Model outputs.")
    device: Literal["cpu", "cuda"] = Field(default="cpu", description="Where the model runs.")
    device_count: int | None = Field(
        default=None,
        ge=1,
        description="GPUs this worker spreads its model instances over when device=cuda, in "
        "CUDA_VISIBLE_DEVICES order; default: every visible GPU. The operator sets it to the "
        "replica's GPU count.",
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto",
        description="Precision of the model's floating-point weights and inputs; auto = as saved.",
    )
    threads: int = Field(
        default=0, ge=0, description="torch intra-op threads; 0 = from the cgroup CPU limit."
    )
    instance_count: int = Field(
        default=1, ge=1, description="Model instances: batches that may run at the same time."
    )
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    warmup: bool = Field(default=True, description="Run a warm-up inference before ready.")
    warmup_batch_size: int = Field(default=1, ge=1, description="Rows in the warm-up inference.")
    host: str = Field(default="0.0.0.0", description="Address of the HTTP and gRPC listeners.")
    http_port: int = Field(default=8000, ge=0, le=65535)
    grpc_port: int = Field(default=8001, ge=0, le=65535)
    metrics_host: str = Field(default="127.0.0.1", description="Metrics listen address.")
    metrics_port: int = Field(default=8082, ge=0, le=65535)
    max_request_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest HTTP request body (after decompression) accepted, and the largest "
        "decoded size of one request's tensors; larger is 413.",
    )
    max_json_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        description="Largest JSON part of an /infer request; larger is 413 (parsed JSON takes "
        "about 16 times its text; large tensors belong in binary data).",
    )
    grpc_max_message_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="gRPC send and receive message limit; larger is RESOURCE_EXHAUSTED.",
    )
    max_inflight_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=1024,
        description="Memory all requests in progress may hold together (bodies and their decoded "
        "tensors, estimated before decoding); a request that does not fit is 503 / UNAVAILABLE.",
    )
    max_connections: int = Field(
        default=512, ge=1, description="Open HTTP connections; beyond it requests are 503."
    )
    grpc_max_concurrent_rpcs: int = Field(
        default=256,
        ge=1,
        description="gRPC inference calls in progress (ModelInfer calls, ModelStreamInfer "
        "streams); beyond it RESOURCE_EXHAUSTED, before the message is read.",
    )
    max_header_bytes: int = Field(
        default=32 * 1024,
        ge=1024,
        description="Largest HTTP request line plus headers; larger is 431 and the connection "
        "is closed.",
    )
    max_headers: int = Field(
        default=100, ge=1, description="Most HTTP request headers; more is 431."
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Time a client has to send a request's line and headers; then 408 and close.",
    )
    body_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Longest pause while a request body is being sent; then 408 and close.",
    )
    execution_timeout_seconds: float = Field(
        default=60.0,
        ge=0,
        description="Longest model execution of one batch; past it the batch's requests fail "
        "(503), the instance counts as stuck and liveness fails, so the kubelet restarts the "
        "pod. 0 = no timeout.",
    )
    response_compression_min_bytes: int = Field(
        default=1024, ge=0, description="Smaller /infer responses are never compressed."
    )
    drain_timeout_seconds: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, how long accepted requests may take (0 = stop at once).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["plain", "json"] = Field(
        default="plain",
        description="plain: one human-readable line per record; json: one JSON object per line "
        "(time, level, logger, message), for log pipelines.",
    )
    termination_log: str = Field(
        default=DEFAULT_TERMINATION_LOG,
        description="File for the one-line `ModelLoadFailed: <message>` the operator reads when "
        "the model cannot be served (the container's terminationMessagePath); not written when "
        "it cannot be opened.",
    )

    @model_validator(mode="after")
    def _derive(self) -> Self:
        if not self.model_name:
            self.model_name = self.model_path.name.split(".")[0] or "model"
        if self.model_format is None:
            suffix = self.model_path.suffix.lower()
            if suffix == ".pt2":
                self.model_format = "torch-export"
            elif suffix in {".pt", ".pth", ".ts", ".torchscript"}:
                self.model_format = "torchscript"
            else:
                raise ValueError(
                    f"model_format is not set and the suffix {suffix!r} of {self.model_path} does "
                    "not tell: use .pt (torchscript) or .pt2 (torch-export), or set model_format"
                )
        if self.model_sha256 is not None:
            self.model_sha256 = self.model_sha256.lower()
        return self

    @property
    def format(self) -> ModelFormat:
        assert self.model_format is not None  # set by _derive
        return self.model_format


#: The environment variable that carries a whole `FetchConfig` as JSON into the fetch container.
FETCH_CONFIG_ENV = "AIRT_FETCH_CONFIG"
#: Where the fetch container leaves a remote model, and the worker finds it.
FETCHED_MODEL_PATH = "/models/model"


class FetchConfig(BaseModel):
    """What `airt-worker fetch` (the model-fetch init container) runs with; the operator writes it
    for remote models, the fetcher parses it."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(description="Where the model is: https://, s3://, gs://, hf:// or oci:// URI.")
    dest: Path = Field(description="Where to write the model file.")
    sha256: str | None = Field(
        default=None, pattern=r"^[a-f0-9]{64}$", description="Expected sha256 (hex)."
    )
    timeout_seconds: float = Field(default=300.0, gt=0, description="Network timeout.")
    max_bytes: int | None = Field(
        default=None, gt=0, description="Refuse a model larger than this many bytes."
    )
    ca_bundle: str | None = Field(
        default=None,
        description="PEM certificates of a private store's CA, trusted besides the public roots "
        "(usually AIRT_FETCH_CA_BUNDLE from the model's credentials Secret).",
    )
    termination_log: str = Field(
        default=DEFAULT_TERMINATION_LOG,
        description="File for the one-line outcome the operator reads (the container's "
        "terminationMessagePath); not written when it cannot be opened.",
    )

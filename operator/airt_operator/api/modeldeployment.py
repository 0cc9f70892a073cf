"""The ModelDeployment kind (namespaced, short name `md`): a model, its runtime, GPUs and serving.

The operator parses every ModelDeployment into these models (through `airt_operator.api.parse`)
before it resolves or renders anything; `airt_operator.crdgen` generates the CRD from them.

Refinements of the design sketch, and why:
- `model.uri` is checked per scheme: `hf://` must pin a revision and `oci://` a digest, so a
  deployment is reproducible; plain `http://` is refused (use `https://`).
- `model.credentials` is refused with `pvc://` (a claim needs no credentials).
- `model.version` is an integer: the Open Inference Protocol's version path segment is numeric in
  Triton, and YAML's `version: 1` then just works.
- `model.inputs`/`outputs` (optional) give the tensor metadata the worker cannot infer from a
  TorchScript or torch.export file; `model.precision` and `model.instances` configure the worker.
- `access` lists namespaces (default: the model's own) or opens to `allNamespaces`, optionally
  narrowed by `podSelector`; the two forms are exclusive.
- `monitoring.serviceMonitor` is `auto|enabled|disabled` (not on/off, which YAML 1.1 reads as
  booleans).
- `replicas` is the scale subresource's spec path. With `autoscaling`, the HorizontalPodAutoscaler
  owns it: leave `replicas` out of Git (or ignore it in Argo CD) so GitOps does not fight it.
- `resources.cpu` and `memory` are both request and limit (Guaranteed QoS for the worker, and a
  CPU limit the worker sizes its threads from); per-field requests/limits can come later.
- Optional fields are omitted, not nullable: the API server prunes an explicit null, which is the
  same as leaving the field out, and matches pydantic's None.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StringConstraints

from .base import (
    DNS1035_LABEL,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    IMAGE,
    ApiModel,
    ApiObject,
    cel,
    cel_pattern,
)
from .conditions import Condition
from .resources import Resources

# Children derive their names from the ModelDeployment's (`<name>-<suffix>`), and a Service name
# must be a DNS-1035 label of at most 63 characters: leave 11 for suffixes.
NAME_MAX_LENGTH = 52
NAME_PATTERN = DNS1035_LABEL

# A model format is a free name matched between a model and the runtimes' `formats`; the airt
# worker's own are MODEL_FORMATS.
FORMAT_PATTERN = r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$"
ModelFormat = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=FORMAT_PATTERN)]
MODEL_FORMATS: tuple[str, ...] = ("torchscript", "torch-export")
UriScheme = Literal["pvc", "s3", "gs", "https", "hf", "oci"]
URI_SCHEMES: tuple[UriScheme, ...] = ("pvc", "s3", "gs", "https", "hf", "oci")
DataType = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BF16", "BYTES",
]  # fmt: skip

NamespaceName = Annotated[str, StringConstraints(max_length=63, pattern=DNS1123_LABEL)]
Dimension = Annotated[int, Field(ge=-1, le=2**31 - 1)]
BatchSize = Annotated[int, Field(ge=1, le=4096)]


class SecretReference(ApiModel):
    """A Secret in the ModelDeployment's namespace."""

    name: str = Field(max_length=253, pattern=DNS1123_SUBDOMAIN, description="The Secret's name.")


class TensorSpec(ApiModel):
    """One input or output tensor of the model, as the v2 model metadata reports it."""

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z_][A-Za-z0-9_.:/-]*$",
        description="The tensor's name.",
    )
    datatype: DataType = Field(description="The v2 datatype, e.g. FP32, INT64, BYTES.")
    shape: list[Dimension] = Field(
        max_length=8,
        description="Dimensions of one request row (without the batch dimension); -1 marks a "
        "dimension of variable size.",
    )


@cel_pattern(
    r"^(pvc|s3|gs|https|hf|oci)://",
    "model URI scheme must be one of pvc://, s3://, gs://, https://, hf://, oci://",
    field="uri",
)
@cel_pattern(
    r"^pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[^\s]+$",
    "pvc:// URIs take the form pvc://<claim>/<path in the volume>",
    field="uri",
    when=r"^pvc://",
)
@cel_pattern(
    r"^(s3|gs)://[a-z0-9][-a-z0-9._]{1,61}[a-z0-9](/[^\s]*)?$",
    "s3:// and gs:// URIs take the form <scheme>://<bucket>/<key>",
    field="uri",
    when=r"^(s3|gs)://",
)
@cel_pattern(
    r"^https://[^/\s?#]+(/[^\s]*)?$",
    "https:// URIs need a host and no spaces",
    field="uri",
    when=r"^https://",
)
@cel_pattern(
    r"^hf://[A-Za-z0-9][-A-Za-z0-9_.]*/[A-Za-z0-9][-A-Za-z0-9_.]*@[A-Za-z0-9][-A-Za-z0-9_./]*$",
    "hf:// URIs must pin a revision: hf://<org>/<repo>@<revision>",
    field="uri",
    when=r"^hf://",
)
@cel_pattern(
    r"^oci://[a-z0-9][^@\s]*@sha256:[a-f0-9]{64}$",
    "oci:// URIs must be pinned by digest: oci://<registry>/<repository>@sha256:<64 hex digits>",
    field="uri",
    when=r"^oci://",
)
@cel(
    "!has(self.credentials) || !self.uri.startsWith('pvc://')",
    "credentials cannot be used with a pvc:// model: the volume is mounted, not downloaded",
    lambda m: m.credentials is None or not m.uri.startswith("pvc://"),
    field_path=".credentials",
    reason="FieldValueForbidden",
)
class ModelSource(ApiModel):
    """The model to serve: where it is, its format and the name clients call it by."""

    uri: str = Field(
        min_length=1,
        max_length=2048,
        description="Where the model is: pvc://<claim>/<path>, s3://<bucket>/<key>, "
        "gs://<bucket>/<key>, https://<host>/<path>, hf://<org>/<repo>@<revision> or "
        "oci://<registry>/<repository>@sha256:<digest>.",
    )
    format: ModelFormat = Field(
        description="The model's format, matched against the runtimes' formats: the airt worker "
        "loads torchscript (torch.jit.save) and torch-export (torch.export.save, .pt2); other "
        "runtimes name their own (e.g. onnx, triton, mlserver, safetensors)."
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="The name clients use in v2 requests (/v2/models/<name>). Defaults to the "
        "ModelDeployment's name.",
    )
    version: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="The model version served (/v2/models/<name>/versions/<version>); 1 when "
        "omitted.",
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[a-f0-9]{64}$",
        max_length=64,
        description="SHA-256 of the model file (64 lower-case hex digits); the worker refuses to "
        "load a file that does not match.",
    )
    credentials: SecretReference | None = Field(
        default=None,
        description="A Secret with the storage credentials for a remote URI (s3, gs, https, hf, "
        "oci); only the model fetcher reads it.",
    )
    precision: Literal["fp32", "fp16", "bf16"] | None = Field(
        default=None,
        description="Precision the worker runs the model in; the model's own when omitted.",
    )
    instances: int | None = Field(
        default=None,
        ge=1,
        le=16,
        description="Model instances each worker runs, to run batches in parallel; on GPUs they "
        "are spread round-robin over the replica's GPUs. Omitted: one per GPU (1 on CPUs).",
    )
    inputs: list[TensorSpec] | None = Field(
        default=None,
        max_length=32,
        description="Input tensors, for what the worker cannot infer from the model file.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    outputs: list[TensorSpec] | None = Field(
        default=None,
        max_length=32,
        description="Output tensors, for what the worker cannot infer from the model file.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class RuntimeRef(ApiModel):
    """Which InferenceRuntime runs the model, and optionally the worker image to use with it."""

    name: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS1123_LABEL,
        description="An InferenceRuntime by name. Omitted: the operator picks the runtime with "
        "the highest priority that loads the model's format on the requested accelerator.",
    )
    image: str | None = Field(
        default=None,
        max_length=512,
        pattern=IMAGE,
        description="A worker image to use instead of the runtime's; accepted only when the "
        "runtime's policy.allowedImagePrefixes admits it. The runtime still supplies the rest.",
    )


@cel(
    "!has(self.preferredBatchSizes) || self.preferredBatchSizes.all(s, s <= self.maxBatchSize)",
    "every preferred batch size must be at most maxBatchSize",
    lambda b: all(s <= b.max_batch_size for s in b.preferred_batch_sizes or ()),
    field_path=".preferredBatchSizes",
)
class Batching(ApiModel):
    """Dynamic batching in the worker, with Triton's semantics."""

    max_batch_size: int = Field(
        ge=1, le=4096, description="The largest batch (in rows) the model is called with."
    )
    max_queue_delay_microseconds: int | None = Field(
        default=None,
        ge=0,
        le=10_000_000,
        description="How long a request may wait for others to form a larger batch; 0 when "
        "omitted.",
    )
    preferred_batch_sizes: list[BatchSize] | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description="Batch sizes the batcher aims for (each at most maxBatchSize).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    max_queue_size: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Requests that may wait; beyond it a request is rejected at once (HTTP 503, "
        "gRPC UNAVAILABLE). Derived from maxBatchSize and the instances when omitted.",
    )
    queue_timeout_microseconds: int | None = Field(
        default=None,
        ge=1,
        le=600_000_000,
        description="A request still queued after this long is rejected (HTTP 503, gRPC "
        "UNAVAILABLE). 10 s plus maxQueueDelayMicroseconds when omitted.",
    )


class Serving(ApiModel):
    """Limits of the worker's request handling. Each one omitted is derived from the pod's
    memory limit and the batching settings (docs/reliability.md has the formula)."""

    max_request_bytes: int | None = Field(
        default=None,
        ge=1024,
        le=2**31 - 1,
        description="Largest request: HTTP body (after decompression), gRPC message and decoded "
        "tensors of one request; larger is HTTP 413 / gRPC RESOURCE_EXHAUSTED.",
    )
    max_inflight_bytes: int | None = Field(
        default=None,
        ge=1024,
        le=2**40,
        description="Memory all requests in progress may hold together; a request that does not "
        "fit is HTTP 503 / gRPC UNAVAILABLE.",
    )
    execution_timeout_seconds: int | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="Longest model execution of one batch; past it the batch fails and the pod "
        "stops being live, so the kubelet restarts it. 60 when omitted; 0 turns it off.",
    )


# The autoscaler's target when spec.autoscaling.target is omitted (the HPA renders it).
DEFAULT_CPU_UTILIZATION = 80
# The worker's gauge of requests accepted and not yet answered, per pod: what an inflightRequests
# target averages over the replicas (served to the HPA by a custom-metrics adapter).
INFLIGHT_METRIC = "nv_inference_pending_request_count"


@cel(
    "has(self.cpuUtilization) != has(self.inflightRequests)",
    "set exactly one of cpuUtilization and inflightRequests",
    lambda t: (t.cpu_utilization is None) != (t.inflight_requests is None),
)
class ScalingTarget(ApiModel):
    """What the autoscaler keeps each replica at: exactly one of the fields."""

    cpu_utilization: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Average CPU utilization, in percent of the CPU request.",
    )
    inflight_requests: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Average in-flight inference requests per replica (the worker's "
        f"`{INFLIGHT_METRIC}` gauge as a Pods metric; needs a custom-metrics adapter such as "
        "prometheus-adapter).",
    )


@cel(
    "self.minReplicas <= self.maxReplicas",
    "minReplicas must be less than or equal to maxReplicas",
    lambda a: a.min_replicas <= a.max_replicas,
    field_path=".minReplicas",
)
class Autoscaling(ApiModel):
    """Horizontal autoscaling: a HorizontalPodAutoscaler on the ModelDeployment's scale."""

    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest replicas.")
    max_replicas: int = Field(ge=1, le=1000, description="Most replicas.")
    target: ScalingTarget | None = Field(
        default=None,
        description=f"The per-replica target; {DEFAULT_CPU_UTILIZATION}% CPU utilization when "
        "omitted.",
    )


@cel(
    "!self.allNamespaces || !has(self.namespaces)",
    "namespaces cannot be combined with allNamespaces: true",
    lambda a: not a.all_namespaces or a.namespaces is None,
    field_path=".namespaces",
    reason="FieldValueForbidden",
)
class Access(ApiModel):
    """Who may call the model's HTTP and gRPC ports (a NetworkPolicy); the metrics port is apart."""

    namespaces: list[NamespaceName] | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        description="Namespaces whose pods may call the model; only the model's own namespace when "
        "omitted. List it too if it should keep access.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    all_namespaces: bool = Field(
        default=False, description="Any pod in the cluster may call the model."
    )
    pod_selector: dict[str, Annotated[str, StringConstraints(max_length=63)]] | None = Field(
        default=None,
        max_length=16,
        description="Only pods with all these labels (within the allowed namespaces) may call.",
    )


class Monitoring(ApiModel):
    """Prometheus integration."""

    service_monitor: Literal["auto", "enabled", "disabled"] = Field(
        default="auto",
        description="Create a ServiceMonitor for the metrics port: auto creates one when the "
        "ServiceMonitor CRD is installed.",
    )


OTLP_ENDPOINT_PATTERN = r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\s]*)?$"


class Tracing(ApiModel):
    """OpenTelemetry traces of the model's inference requests, exported over OTLP.

    Rendered as the standard OTEL_* variables of the worker container; a span tree per request
    (receive, queue, batch, model, respond). Off when omitted, and then free."""

    endpoint: Annotated[
        str, StringConstraints(min_length=8, max_length=512, pattern=OTLP_ENDPOINT_PATTERN)
    ] = Field(
        description="The OTLP receiver, such as an OpenTelemetry Collector: "
        "http://otel-collector.observability:4317 (gRPC) or :4318 (HTTP). The worker pods may "
        "reach its port (the NetworkPolicy allows it).",
    )
    protocol: Literal["grpc", "http/protobuf"] = Field(
        default="grpc", description="The OTLP transport: grpc, or http/protobuf."
    )
    sampling_percent: int = Field(
        default=100,
        ge=0,
        le=100,
        description="Percent of requests traced when the caller sent no sampled traceparent (a "
        "caller's W3C traceparent decides for its own requests); 100 traces every request. An "
        "integer, as Kubernetes APIs avoid floats.",
    )


class ModelDeploymentSpec(ApiModel):
    """The desired state of a ModelDeployment. The operator never writes it."""

    model: ModelSource = Field(description="The model to serve.")
    runtime: RuntimeRef | None = Field(
        default=None,
        description="The InferenceRuntime that runs the model; chosen by format and accelerator "
        "when omitted.",
    )
    replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Number of worker pods; the scale subresource (kubectl scale, HPA, KEDA) "
        "changes it.",
    )
    resources: Resources | None = Field(
        default=None,
        description="CPU, memory and GPUs per replica; the runtime's defaults when omitted.",
    )
    batching: Batching | None = Field(
        default=None, description="Dynamic batching; requests run one by one when omitted."
    )
    serving: Serving | None = Field(
        default=None,
        description="Request size, memory and time limits of the worker; derived from the "
        "memory limit and batching when omitted.",
    )
    autoscaling: Autoscaling | None = Field(
        default=None, description="Horizontal autoscaling; a fixed replica count when omitted."
    )
    access: Access | None = Field(
        default=None,
        description="Who may call the model; pods of the same namespace only when omitted.",
    )
    monitoring: Monitoring | None = Field(
        default=None, description="Prometheus integration (ServiceMonitor)."
    )
    tracing: Tracing | None = Field(
        default=None,
        description="OpenTelemetry traces of inference requests (OTLP); off when omitted.",
    )


class ReplicaDevices(ApiModel):
    """The devices one replica (pod) was allocated, from its ResourceClaim (DRA placement)."""

    pod: str = Field(max_length=253, description="The pod's name.")
    node: str | None = Field(default=None, max_length=253, description="The node it runs on.")
    devices: list[Annotated[str, StringConstraints(max_length=128)]] | None = Field(
        default=None,
        max_length=16,
        description="The allocated devices, as the ResourceSlices name them.",
    )
    product: str | None = Field(
        default=None,
        max_length=128,
        description="The GPU product, spelled as the nvidia.com/gpu.product node label spells it "
        "(e.g. NVIDIA-H100-80GB-HBM3); for a MIG slice, the parent GPU's.",
    )
    mig: str | None = Field(default=None, max_length=32, description="The MIG profile, if any.")
    alternative: int | None = Field(
        default=None,
        ge=0,
        le=7,
        description="Which alternative of the preference was allocated (0: the first).",
    )


class ModelDeploymentStatus(ApiModel):
    """The observed state, written by the operator only."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this status describes."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        max_length=16,
        description="Ready (all of the others hold), RuntimeResolved, Scheduled, Available, "
        "Progressing and Degraded, each with a reason and message.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    replicas: int | None = Field(default=None, ge=0, description="Worker pods that exist.")
    ready_replicas: int | None = Field(default=None, ge=0, description="Pods that are ready.")
    available_replicas: int | None = Field(
        default=None, ge=0, description="Pods ready for at least minReadySeconds."
    )
    updated_replicas: int | None = Field(
        default=None, ge=0, description="Pods running the current pod template."
    )
    selector: str | None = Field(
        default=None,
        max_length=1024,
        description="Label selector of the pods, for the scale subresource (HPA).",
    )
    url: str | None = Field(
        default=None, max_length=1024, description="In-cluster HTTP base URL of the model."
    )
    grpc_address: str | None = Field(
        default=None, max_length=1024, description="In-cluster gRPC address (host:port)."
    )
    runtime_name: str | None = Field(
        default=None, max_length=253, description="The runtime chosen."
    )
    runtime_kind: Literal["InferenceRuntime", "NamespacedInferenceRuntime"] | None = Field(
        default=None,
        description="The kind of the runtime chosen: the cluster's InferenceRuntime or the "
        "namespace's own NamespacedInferenceRuntime.",
    )
    runtime_image: str | None = Field(
        default=None,
        max_length=1024,
        description="The serving image the operator asked for (the runtime's, or the spec's "
        "override).",
    )
    image_id: str | None = Field(
        default=None,
        alias="imageID",
        max_length=1024,
        description="The image the worker of the newest ready pod really runs, as the kubelet "
        "reports it (a digest, e.g. ghcr.io/airt-dev/worker-cpu@sha256:...); unset while no pod "
        "is ready.",
    )
    model_digest: str | None = Field(
        default=None,
        max_length=128,
        description="The digest (sha256:<hex>) of the model the pods loaded: the one the model "
        "fetcher computed over the bytes it placed; without a fetcher's record (a model on a "
        "volume), the spec's sha256 once every replica runs the current template and the worker "
        "has verified it; unset until then.",
    )
    gpu: str | None = Field(
        default=None,
        max_length=256,
        description="A summary of the GPUs per replica for display, e.g. 4x NVIDIA-H100-80GB-HBM3 "
        "or mig-1g.5gb; empty for a CPU model.",
    )
    gpu_placement: Literal["dra", "devicePlugin"] | None = Field(
        default=None,
        description="How the pods get their GPUs: dra (a ResourceClaimTemplate) or devicePlugin "
        "(extended resources); unset for a CPU model.",
    )
    gpu_product: str | None = Field(
        default=None,
        max_length=256,
        description="The GPU products the replicas were actually allocated, most replicas first "
        "(e.g. 2x NVIDIA-L4, 1x NVIDIA-H100-80GB-HBM3); DRA placement only.",
    )
    replica_devices: list[ReplicaDevices] | None = Field(
        default=None,
        max_length=64,
        description="Per replica (by pod name, at most 64), the devices its ResourceClaim was "
        "allocated; DRA placement only.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )


class ModelDeployment(ApiObject):
    """A model served by the airt inference worker: its runtime, GPUs, scaling and access."""

    name_pattern: ClassVar[str] = NAME_PATTERN
    name_max_length: ClassVar[int] = NAME_MAX_LENGTH

    kind: Literal["ModelDeployment"] = Field(default="ModelDeployment", description="The kind.")
    spec: ModelDeploymentSpec = Field(description="The desired state.")
    status: ModelDeploymentStatus | None = Field(default=None, description="The observed state.")

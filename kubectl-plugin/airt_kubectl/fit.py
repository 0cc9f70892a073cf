"""`kubectl airt plan`: which runtime would run a ModelDeployment and which nodes could hold it.

Pure: the ModelDeployment (a plain dict, as written in the user's file), the InferenceRuntimes and
the Nodes (and, when readable, the pods already placed) in; a `Plan` out. Called by the CLI after
the edge has fetched the objects and the API server has accepted the file in a dry run.

It previews the operator's choices from what the wire form says: the runtime by name or the
auto-selection order (format, accelerator, priority, then name), the runtime's policy, the GPU
node affinity and toleration the operator renders (products on `nvidia.com/gpu.product`, memory on
`nvidia.com/gpu.memory`, MIG profiles as `nvidia.com/mig-<profile>`, CPU models away from GPU
nodes), the nodes' taints and allocatable. The operator's own decision stays the authority; this
says where it would land and why not, before anything is created.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airt_kubectl.objects import Obj, meta, name_of
from airt_kubectl.quantity import QuantityError, show, units

GPU_TAINT = "nvidia.com/gpu"
PRODUCT = "nvidia.com/gpu.product"
GPU_MEMORY = "nvidia.com/gpu.memory"


@dataclass(frozen=True)
class Request:
    """What one replica asks of a node."""

    gpu: bool
    resources: Mapping[str, int]  # resource name -> units (cpu in millicores)
    products: tuple[str, ...] = ()
    min_gpu_memory_mib: int | None = None


@dataclass(frozen=True)
class NodeFit:
    node: str
    fits: bool  # could ever hold one replica
    free_now: int | None  # replicas that fit in what is free now; None when pods are unknown
    why_not: tuple[str, ...] = ()
    preference: int | None = None  # index in spec.resources.gpu.products


@dataclass(frozen=True)
class Plan:
    runtime: str | None
    runtime_note: str
    request: Request | None
    replicas: int
    nodes: list[NodeFit] = field(default_factory=list)

    @property
    def fitting(self) -> list[NodeFit]:
        order = sorted(
            self.nodes, key=lambda n: (n.preference if n.preference is not None else 0, n.node)
        )
        return [n for n in order if n.fits]

    def summary(self) -> str:
        if self.runtime is None:
            return f"would not run: {self.runtime_note}"
        fitting = self.fitting
        if not fitting:
            return "would not be placed: no node can ever hold one replica (see WHY NOT)"
        where = ", ".join(n.node for n in fitting)
        known = [n.free_now for n in fitting if n.free_now is not None]
        if len(known) == len(fitting):
            room = sum(known)
            if room < self.replicas:
                return (
                    f"would land on {where}, but only {room} of {self.replicas} replica(s) fit "
                    "in what is free now"
                )
            return f"would land on {where}; {self.replicas} replica(s) fit now"
        return f"would land on {where}"


def _spec(obj: Obj) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def _gpu_spec(md: Obj) -> Mapping[str, Any] | None:
    gpu = (_spec(md).get("resources") or {}).get("gpu")
    return gpu if isinstance(gpu, Mapping) else None


def request_of(md: Obj, runtime: Obj | None) -> Request:
    """One replica's request: the model's cpu and memory, else the runtime's defaults, and its
    GPUs (whole devices, or a MIG profile)."""
    own = _spec(md).get("resources") or {}
    defaults = ((_spec(runtime).get("defaults") or {}).get("resources") or {}) if runtime else {}
    resources: dict[str, int] = {}
    for res in ("cpu", "memory"):
        value = own.get(res) or defaults.get(res)
        if value:
            resources[res] = units(res, value)
    gpu = _gpu_spec(md)
    if gpu is None:
        return Request(False, resources)
    count = int(gpu.get("count") or 1)
    mig = gpu.get("mig")
    resources[f"nvidia.com/mig-{mig}" if mig else "nvidia.com/gpu"] = count
    min_gib = gpu.get("minMemoryGiB")
    return Request(
        True,
        resources,
        tuple(gpu.get("products") or ()),
        int(min_gib) * 1024 if min_gib and not mig else None,
    )


def runtime_problem(md: Obj, rt: Obj) -> str | None:
    """Why this runtime cannot run this model (the checks that need nothing but the two
    objects), or None."""
    spec, name = _spec(rt), name_of(rt)
    model = _spec(md).get("model") or {}
    fmt, uri = model.get("format"), str(model.get("uri", ""))
    if fmt not in (spec.get("formats") or []):
        return f"runtime {name} loads {', '.join(spec.get('formats') or [])}, not {fmt}"
    gpu = _gpu_spec(md)
    accelerator = spec.get("accelerator", "cpu")
    if gpu and accelerator == "cpu":
        return f"runtime {name} is for cpu, and the model asks for GPUs"
    if not gpu and accelerator != "cpu":
        return f"runtime {name} is for {accelerator} GPUs, and the model asks for none"
    policy = spec.get("policy") or {}
    scheme = uri.split("://", 1)[0]
    schemes = policy.get("allowedUriSchemes")
    if schemes and scheme not in schemes:
        return f"runtime {name} accepts model URIs {', '.join(schemes)}, not {scheme}://"
    limit = policy.get("maxGpusPerReplica")
    if gpu and not gpu.get("mig") and limit is not None and int(gpu.get("count") or 1) > int(limit):
        return f"runtime {name} allows at most {limit} GPUs per replica, not {gpu.get('count')}"
    image = (_spec(md).get("runtime") or {}).get("image")
    prefixes = policy.get("allowedImagePrefixes") or []
    if image and not any(str(image).startswith(p) for p in prefixes):
        return f"runtime {name} does not allow spec.runtime.image {image}"
    return None


def choose_runtime(md: Obj, runtimes: Sequence[Obj]) -> tuple[Obj | None, str]:
    """The runtime that would run the model and how it was chosen, or None and why not."""
    catalog = {name_of(rt): rt for rt in runtimes}
    named = (_spec(md).get("runtime") or {}).get("name")
    if named:
        rt = catalog.get(named)
        if rt is None:
            return None, f"InferenceRuntime {named} (spec.runtime.name) not found"
        why = runtime_problem(md, rt)
        return (None, why) if why else (rt, f"named in spec.runtime.name: {named}")
    fits, reasons = [], []
    for name in sorted(catalog):
        rt = catalog[name]
        if _spec(rt).get("autoSelect") is False:
            continue
        why = runtime_problem(md, rt)
        if why:
            reasons.append(why)
        else:
            fits.append(rt)
    if not fits:
        return None, "no runtime fits: " + ("; ".join(reasons) or "none allows auto-selection")
    best = min(fits, key=lambda r: (-int(_spec(r).get("priority") or 0), name_of(r)))
    return best, f"auto-selected {name_of(best)} (priority {_spec(best).get('priority', 0)})"


def _untolerated(node: Obj, gpu: bool) -> list[str]:
    out = []
    for taint in _spec(node).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if gpu and taint.get("key") == GPU_TAINT:
            continue
        out.append(f"taint {taint.get('key')}={taint.get('value', '')}:{taint.get('effect')}")
    return out


def _affinity(node: Obj, req: Request) -> tuple[list[str], int | None]:
    labels = meta(node).get("labels") or {}
    product = labels.get(PRODUCT)
    if not req.gpu:
        return ([f"a GPU node ({product}); CPU models stay off GPU nodes"] if product else []), None
    if product is None:
        return ["no GPU (no nvidia.com/gpu.product label)"], None
    why, preference = [], None
    if req.products:
        if product not in req.products:
            why.append(f"GPU {product} is not one of {', '.join(req.products)}")
        else:
            preference = req.products.index(product)
    if req.min_gpu_memory_mib:
        try:
            memory = int(labels.get(GPU_MEMORY, "0"))
        except ValueError:
            memory = 0
        if memory < req.min_gpu_memory_mib:
            why.append(f"GPU memory {memory} MiB < {req.min_gpu_memory_mib} MiB")
    return why, preference


def requested_on(node: str, pods: Sequence[Obj]) -> dict[str, int]:
    """What the pods bound to a node request (containers summed, init containers as their max)."""
    total: dict[str, int] = {}
    for pod in pods:
        if _spec(pod).get("nodeName") != node:
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        pod_req: dict[str, int] = {}
        for c in _spec(pod).get("containers") or []:
            for res, value in ((c.get("resources") or {}).get("requests") or {}).items():
                pod_req[res] = pod_req.get(res, 0) + _safe_units(res, value)
        for c in _spec(pod).get("initContainers") or []:
            for res, value in ((c.get("resources") or {}).get("requests") or {}).items():
                pod_req[res] = max(pod_req.get(res, 0), _safe_units(res, value))
        for res, n in pod_req.items():
            total[res] = total.get(res, 0) + n
    return total


def _safe_units(res: str, value: object) -> int:
    try:
        return units(res, value)
    except QuantityError:
        return 0


def node_fit(node: Obj, req: Request, pods: Sequence[Obj] | None) -> NodeFit:
    name = name_of(node)
    why = ["cordoned (spec.unschedulable)"] if _spec(node).get("unschedulable") else []
    why += _untolerated(node, req.gpu)
    placement, preference = _affinity(node, req)
    why += placement
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    have = {res: _safe_units(res, allocatable.get(res, 0)) for res in req.resources}
    for res, want in req.resources.items():
        if have[res] < want:
            why.append(f"allocatable {res} {show(res, have[res])} < {show(res, want)}")
    free_now = None
    if pods is not None and not why:
        used = requested_on(name, pods)
        free_now = min(
            ((have[res] - used.get(res, 0)) // want for res, want in req.resources.items() if want),
            default=0,
        )
        free_now = max(free_now, 0)
    return NodeFit(name, not why, free_now, tuple(why), preference)


def plan(
    md: Obj, runtimes: Sequence[Obj], nodes: Sequence[Obj], pods: Sequence[Obj] | None
) -> Plan:
    """Where the model would land, node by node."""
    replicas = int(_spec(md).get("replicas", 1) or 0)
    runtime, note = choose_runtime(md, runtimes)
    if runtime is None:
        return Plan(None, note, None, replicas)
    req = request_of(md, runtime)
    fits = [node_fit(n, req, pods) for n in sorted(nodes, key=name_of)]
    return Plan(name_of(runtime), note, req, replicas, fits)

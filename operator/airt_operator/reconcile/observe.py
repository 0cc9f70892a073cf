"""Observe: turn the children's state into the ModelDeployment's status and conditions.

Called by the reconciler after apply, with what kopf's indices hold (the Deployment, the pods,
the nodes). Pure. Ready is the AND of the others (api.conditions.ready_from) and only the
worker's readiness probe — the model loaded and a warm-up inference answered — makes a pod
ready, so Ready never runs ahead of the model. `Scheduled` tells apart "the scheduler could not
place it now" (Unschedulable) from "no node of this cluster could ever fit the GPU request"
(NoMatchingGPUNodes), which a platform team fixes differently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from airt_operator.api import (
    Condition,
    ConditionStatus,
    ConditionType,
    Reason,
    find_condition,
    ready_from,
    set_condition,
)
from airt_operator.reconcile.context import GpuPlacement, RenderContext

T, F, U = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN


@dataclass(frozen=True)
class Observation:
    """What the cluster shows for one ModelDeployment."""

    deployment: Mapping[str, Any] | None
    pods: Sequence[Mapping[str, Any]]
    nodes: Sequence[Mapping[str, Any]]


def _quantity_int(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def gpu_fit(gpu: GpuPlacement, nodes: Iterable[Mapping[str, Any]]) -> str | None:
    """None when some node could ever hold one replica; else why none can, step by step."""
    where = f"of product {' or '.join(gpu.products)}" if gpu.products else "with GPUs"
    by_product = [
        n
        for n in nodes
        if not gpu.products
        or n.get("metadata", {}).get("labels", {}).get("nvidia.com/gpu.product") in gpu.products
    ]
    if gpu.products and not by_product:
        return f"no node {where} exists in the cluster"
    if gpu.min_memory_mib:
        big_enough = [
            n
            for n in by_product
            if _quantity_int(
                n.get("metadata", {}).get("labels", {}).get("nvidia.com/gpu.memory", 0)
            )
            >= gpu.min_memory_mib
        ]
        if not big_enough:
            return (
                f"no node {where} has GPUs with at least {gpu.min_memory_mib} MiB "
                "(label nvidia.com/gpu.memory)"
            )
        by_product = big_enough
    best = max(
        (
            _quantity_int(n.get("status", {}).get("allocatable", {}).get(gpu.resource, 0))
            for n in by_product
        ),
        default=0,
    )
    if best >= gpu.count:
        return None
    if best == 0:
        return f"no node {where} offers {gpu.resource}"
    return (
        f"the largest node {where} offers {best} {gpu.resource}; one replica asks for {gpu.count}"
    )


def _cond(type_: ConditionType, status: ConditionStatus, reason: Reason, msg: str) -> Condition:
    return Condition(
        type=type_.value,
        status=status.value,
        reason=reason.value,
        message=msg,
        last_transition_time=datetime.now(UTC).replace(microsecond=0),
    )


def _pod_condition(pod: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for c in pod.get("status", {}).get("conditions", []) or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def _scheduled(ctx: RenderContext, obs: Observation) -> Condition:
    if ctx.gpu:
        why = gpu_fit(ctx.gpu, obs.nodes)
        if why:
            return _cond(ConditionType.SCHEDULED, F, Reason.NO_MATCHING_GPU_NODES, why)
    for pod in obs.pods:
        c = _pod_condition(pod, "PodScheduled")
        if c and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            return _cond(
                ConditionType.SCHEDULED, F, Reason.UNSCHEDULABLE, str(c.get("message", ""))
            )
    want = ctx.replicas or 0
    scheduled = [p for p in obs.pods if p.get("spec", {}).get("nodeName")]
    if len(scheduled) >= want:
        return _cond(
            ConditionType.SCHEDULED, T, Reason.PODS_SCHEDULED, f"{len(scheduled)} pod(s) placed"
        )
    return _cond(
        ConditionType.SCHEDULED,
        U,
        Reason.PENDING_SCHEDULING,
        f"{len(scheduled)} of {want} pod(s) placed",
    )


def _deploy_status(obs: Observation) -> Mapping[str, Any]:
    return (obs.deployment or {}).get("status", {}) or {}


def _available(ctx: RenderContext, obs: Observation) -> Condition:
    want = ctx.replicas or 0
    if want == 0:
        return _cond(ConditionType.AVAILABLE, T, Reason.SCALED_TO_ZERO, "scaled to zero replicas")
    st = _deploy_status(obs)
    available = int(st.get("availableReplicas", 0) or 0)
    if obs.deployment is not None and available >= want:
        return _cond(
            ConditionType.AVAILABLE,
            T,
            Reason.MINIMUM_REPLICAS_AVAILABLE,
            f"{available}/{want} replicas serve the model (warm-up inference answered)",
        )
    running = [p for p in obs.pods if p.get("status", {}).get("phase") == "Running"]
    if running:
        return _cond(
            ConditionType.AVAILABLE,
            F,
            Reason.MODEL_LOADING,
            f"{available}/{want} replicas ready; {len(running)} running, loading the model",
        )
    return _cond(
        ConditionType.AVAILABLE,
        F,
        Reason.MINIMUM_REPLICAS_UNAVAILABLE,
        f"{available}/{want} replicas available",
    )


def _progressing(ctx: RenderContext, obs: Observation) -> Condition:
    dep = obs.deployment
    if dep is None:
        return _cond(ConditionType.PROGRESSING, T, Reason.ROLLOUT_IN_PROGRESS, "creating")
    st = _deploy_status(obs)
    for c in st.get("conditions", []) or []:
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return _cond(
                ConditionType.PROGRESSING,
                F,
                Reason.PROGRESS_DEADLINE_EXCEEDED,
                str(c.get("message", "")),
            )
    want = ctx.replicas or 0
    current = st.get("observedGeneration", 0) >= dep.get("metadata", {}).get("generation", 0)
    updated = int(st.get("updatedReplicas", 0) or 0)
    total = int(st.get("replicas", 0) or 0)
    if current and updated >= want and total <= want:
        return _cond(
            ConditionType.PROGRESSING, F, Reason.ROLLOUT_COMPLETE, "all replicas up to date"
        )
    return _cond(
        ConditionType.PROGRESSING,
        T,
        Reason.ROLLOUT_IN_PROGRESS,
        f"{updated}/{want} replicas updated",
    )


def _degraded(progressing: Condition, obs: Observation) -> Condition:
    if progressing.reason == Reason.PROGRESS_DEADLINE_EXCEEDED:
        return _cond(ConditionType.DEGRADED, T, Reason.REPLICAS_UNAVAILABLE, progressing.message)
    for pod in obs.pods:
        for cs in pod.get("status", {}).get("containerStatuses", []) or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == "CrashLoopBackOff":
                return _cond(
                    ConditionType.DEGRADED,
                    T,
                    Reason.CRASH_LOOP,
                    f"container {cs.get('name')} of pod {pod['metadata']['name']} is crash-looping",
                )
    return _cond(ConditionType.DEGRADED, F, Reason.AS_EXPECTED, "no failures observed")


def _ready(conds: Sequence[Condition]) -> Condition:
    status, blocker = ready_from(conds)
    if status == T:
        return _cond(ConditionType.READY, T, Reason.READY, "the model answers on every replica")
    blocking = find_condition(conds, blocker)
    detail = f"{blocker}: {blocking.reason}: {blocking.message}" if blocking else blocker
    return _cond(ConditionType.READY, status, Reason.NOT_READY, detail)


def conditions_of(status: Mapping[str, Any] | None) -> list[Condition]:
    """The conditions of a status as models; one written badly by someone else is dropped
    (the operator rewrites its own)."""
    out = []
    for raw in (status or {}).get("conditions") or []:
        try:
            out.append(Condition.model_validate(dict(raw)))
        except ValueError:
            continue
    return out


def merge_conditions(old: Sequence[Condition], new: Sequence[Condition]) -> list[Condition]:
    """New conditions over old ones, keeping transition times where the status did not change."""
    out = list(old)
    for c in new:
        out = set_condition(out, c)
    order = [t.value for t in ConditionType]
    return sorted(out, key=lambda c: order.index(c.type) if c.type in order else len(order))


def resolved_conditions(reason: Reason, message: str, ok: bool) -> Condition:
    return _cond(ConditionType.RUNTIME_RESOLVED, T if ok else F, reason, message)


def observe(ctx: RenderContext, obs: Observation, resolved: Condition) -> list[Condition]:
    """Every condition of a ModelDeployment whose runtime resolved and children were applied."""
    progressing = _progressing(ctx, obs)
    conds = [resolved, _scheduled(ctx, obs), _available(ctx, obs), progressing]
    conds.append(_degraded(progressing, obs))
    return [_ready(conds), *conds]


def degraded_apply_failed(message: str) -> Condition:
    """Degraded=True when the API server refused a child; Ready follows from it."""
    return _cond(ConditionType.DEGRADED, T, Reason.APPLY_FAILED, message)


def failed_resolution(*known: Condition) -> list[Condition]:
    """Conditions when reconciling stopped early (no runtime, a refused child): Ready from
    what is known, which is False because one of `known` is in its wrong state."""
    return [_ready(list(known)), *known]


def status_fields(ctx: RenderContext, obs: Observation) -> dict[str, Any]:
    """The non-condition status fields, in wire (camelCase) form."""
    st = _deploy_status(obs)
    host = f"{ctx.name}.{ctx.namespace}.svc"
    gpu = None
    if ctx.gpu:
        products = "|".join(ctx.gpu.products) if ctx.gpu.products else "any"
        gpu = f"{ctx.gpu.count}x {ctx.gpu.resource.removeprefix('nvidia.com/')} ({products})"
    out: dict[str, Any] = {
        "replicas": int(st.get("replicas", 0) or 0),
        "readyReplicas": int(st.get("readyReplicas", 0) or 0),
        "availableReplicas": int(st.get("availableReplicas", 0) or 0),
        "updatedReplicas": int(st.get("updatedReplicas", 0) or 0),
        "selector": ",".join(f"{k}={v}" for k, v in ctx.selector.items()),
        "url": f"http://{host}:8000",
        "grpcAddress": f"{host}:8001",
        "runtimeName": ctx.runtime_name,
        "runtimeImage": ctx.worker_image,
    }
    if ctx.model_sha256:
        out["modelDigest"] = f"sha256:{ctx.model_sha256}"
    if gpu:
        out["gpu"] = gpu
    return out

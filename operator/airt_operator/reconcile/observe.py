"""Observe: turn the children's state into the ModelDeployment's status and conditions.

Called by the reconciler after apply, with what kopf's indices hold (the Deployment, the pods,
the nodes). Pure. Ready is the AND of the others (api.conditions.ready_from) and only the
worker's readiness probe — the model loaded and a warm-up inference answered — makes a pod
ready, so Ready never runs ahead of the model. `Scheduled` tells apart "the scheduler could not
place it now" (Unschedulable) from "no node of this cluster could ever fit the GPU request"
(NoMatchingGPUNodes), which a platform team fixes differently; with DRA placement, from the
ResourceSlices (reconcile/devices.py): NoMatchingDevices, or DevicesBusy for a pod whose claim
the scheduler cannot allocate now.

Pods report failures through their container statuses: the kubelet's waiting reasons (an image that
cannot be pulled) and the termination messages `airt-worker fetch` and `airt-worker serve` leave,
`<Reason>: <message>` on one line (ModelDigestMismatch, ModelFetchFailed, ModelLoadFailed). Those
become the reason of Available, Degraded and Ready, with the container's own message, so a model
that can never start says why at once instead of Progressing for ever. What really ran goes to
status too: the worker's `imageID` and the `modelDigest` the fetcher computed.
"""

from __future__ import annotations

import json
import re
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
from airt_operator.reconcile.devices import device_fit, products_summary, replica_devices

T, F, U = ConditionStatus.TRUE, ConditionStatus.FALSE, ConditionStatus.UNKNOWN

FETCH_CONTAINER = "model-fetch"
WORKER_CONTAINER = "worker"
# The kubelet's waiting reasons for an image it cannot get (a wrong name or tag, no access, not
# present on the node with pullPolicy Never).
IMAGE_PULL_FAILURES = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}
)
# The reasons a container's termination message may start with (`<Reason>: <message>`).
TERMINATION_REASONS = {
    r.value: r
    for r in (Reason.MODEL_DIGEST_MISMATCH, Reason.MODEL_FETCH_FAILED, Reason.MODEL_LOAD_FAILED)
}
# Pod failures that name their cause: they become the reason of Available, Degraded and Ready.
# (Values, not members: an Enum hashes by name, so a condition's string would not be found.)
POD_FAILURES = frozenset({Reason.IMAGE_PULL_FAILED.value, *TERMINATION_REASONS})
MESSAGE_MAX = 1024  # characters of a container's message kept in a condition
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class Observation:
    """What the cluster shows for one ModelDeployment."""

    deployment: Mapping[str, Any] | None
    pods: Sequence[Mapping[str, Any]]
    nodes: Sequence[Mapping[str, Any]]
    claims: Sequence[Mapping[str, Any]] = ()  # DRA: the pods' ResourceClaims (devices.py)
    slices: Sequence[Mapping[str, Any]] = ()  # DRA: every ResourceSlice, as device facts


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


@dataclass(frozen=True)
class PodFailure:
    """Why a pod cannot serve: a condition reason and the container's own message."""

    reason: Reason
    message: str


def _one_line(text: str, keep_tail: bool = False) -> str:
    """A message on one line, at most MESSAGE_MAX characters (the tail of a log, the head of
    anything else)."""
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    if len(line) <= MESSAGE_MAX:
        return line
    return "..." + line[-(MESSAGE_MAX - 3) :] if keep_tail else line[: MESSAGE_MAX - 3] + "..."


def _failed_terminations(cs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A container's failed runs worth reporting: the current one, else the last one while the
    container has not recovered from it (waiting to restart, or running again but not ready)."""
    state = cs.get("state") or {}
    current = state.get("terminated")
    if current:
        return [current] if current.get("exitCode") != 0 else []
    if cs.get("ready"):
        return []
    last = (cs.get("lastState") or {}).get("terminated")
    return [last] if last and last.get("exitCode") != 0 else []


def _reported(message: Any) -> tuple[Reason, str] | None:
    """The reason and message of a termination message `<Reason>: <message>`, if it is one."""
    first = str(message or "").strip().split("\n", 1)[0]
    head, _, rest = first.partition(":")
    reason = TERMINATION_REASONS.get(head.strip())
    return (reason, rest.strip()) if reason is not None else None


def _by_name(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(pods, key=lambda p: str(p.get("metadata", {}).get("name", "")))


def pod_failure(pods: Sequence[Mapping[str, Any]]) -> PodFailure | None:
    """The first failure the pods report, by pod name, init containers first: an image that
    cannot be pulled or a termination message with a reason wins over a plain crash loop."""
    crash: PodFailure | None = None
    for pod in _by_name(pods):
        name = pod.get("metadata", {}).get("name", "")
        status = pod.get("status") or {}
        for cs in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            where = f"container {cs.get('name')} of pod {name}"
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in IMAGE_PULL_FAILURES:
                said = _one_line(str(waiting.get("message") or waiting["reason"]))
                return PodFailure(Reason.IMAGE_PULL_FAILED, f"{said} ({where})")
            failed = _failed_terminations(cs)
            for t in failed:
                found = _reported(t.get("message"))
                if found:
                    return PodFailure(found[0], f"{_one_line(found[1])} ({where})")
            if crash is None and waiting.get("reason") == "CrashLoopBackOff":
                message = f"{where} is crash-looping"
                for t in failed:
                    message += f" (exit code {t.get('exitCode')}, {t.get('reason') or 'Error'})"
                    if t.get("message"):
                        message += f": {_one_line(str(t['message']), keep_tail=True)}"
                crash = PodFailure(Reason.CRASH_LOOP, message)
    return crash


def _scheduled(ctx: RenderContext, obs: Observation) -> Condition:
    dra = bool(ctx.gpu and ctx.gpu.dra)
    if ctx.gpu:
        if dra:
            why = device_fit(ctx.gpu, obs.slices)
            reason = Reason.NO_MATCHING_DEVICES
        else:
            why = gpu_fit(ctx.gpu, obs.nodes)
            reason = Reason.NO_MATCHING_GPU_NODES
        if why:
            return _cond(ConditionType.SCHEDULED, F, reason, why)
    for pod in obs.pods:
        c = _pod_condition(pod, "PodScheduled")
        if c and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            said = str(c.get("message", ""))
            if dra and "claim" in said:
                # Devices that match exist (device_fit said so): all of them are taken.
                return _cond(
                    ConditionType.SCHEDULED,
                    F,
                    Reason.DEVICES_BUSY,
                    "devices matching the request exist, but none that fits is free now "
                    f"(scheduler: {said})",
                )
            return _cond(ConditionType.SCHEDULED, F, Reason.UNSCHEDULABLE, said)
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


def _available(ctx: RenderContext, obs: Observation, failure: PodFailure | None) -> Condition:
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
    if failure is not None and failure.reason in POD_FAILURES:
        return _cond(ConditionType.AVAILABLE, F, failure.reason, failure.message)
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


def _degraded(progressing: Condition, failure: PodFailure | None) -> Condition:
    if failure is not None and failure.reason in POD_FAILURES:
        return _cond(ConditionType.DEGRADED, T, failure.reason, failure.message)
    if progressing.reason == Reason.PROGRESS_DEADLINE_EXCEEDED:
        return _cond(ConditionType.DEGRADED, T, Reason.REPLICAS_UNAVAILABLE, progressing.message)
    if failure is not None:
        return _cond(ConditionType.DEGRADED, T, failure.reason, failure.message)
    return _cond(ConditionType.DEGRADED, F, Reason.AS_EXPECTED, "no failures observed")


def _ready(conds: Sequence[Condition]) -> Condition:
    status, blocker = ready_from(conds)
    if status == T:
        return _cond(ConditionType.READY, T, Reason.READY, "the model answers on every replica")
    blocking = find_condition(conds, blocker)
    detail = f"{blocker}: {blocking.reason}: {blocking.message}" if blocking else blocker
    # A pod failure that names its cause is Ready's reason too: `kubectl get md -o wide`,
    # Events and alerts show ModelLoadFailed rather than a generic NotReady.
    reason = Reason.NOT_READY
    if blocking is not None and blocking.reason in POD_FAILURES:
        reason = Reason(blocking.reason)
    return _cond(ConditionType.READY, status, reason, detail)


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
    failure = pod_failure(obs.pods)
    conds = [resolved, _scheduled(ctx, obs), _available(ctx, obs, failure), progressing]
    conds.append(_degraded(progressing, failure))
    return [_ready(conds), *conds]


def degraded_apply_failed(message: str) -> Condition:
    """Degraded=True when the API server refused a child; Ready follows from it."""
    return _cond(ConditionType.DEGRADED, T, Reason.APPLY_FAILED, message)


def placement_unsupported(message: str) -> Condition:
    """Scheduled=False when the GPU request needs a placement mode the model cannot use."""
    return _cond(ConditionType.SCHEDULED, F, Reason.PLACEMENT_UNSUPPORTED, message)


def degraded_child_conflict(message: str) -> Condition:
    """Degraded=True when a child's name is taken by an object this ModelDeployment does not
    own (the operator never takes such an object over)."""
    return _cond(ConditionType.DEGRADED, T, Reason.CHILD_CONFLICT, message)


def failed_resolution(*known: Condition) -> list[Condition]:
    """Conditions when reconciling stopped early (no runtime, a refused child): Ready from
    what is known, which is False because one of `known` is in its wrong state."""
    return [_ready(list(known)), *known]


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    c = _pod_condition(pod, "Ready")
    return bool(c and c.get("status") == "True")


def _newest_first(pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Pods by creation time, newest first (RFC 3339 times sort as strings), then by name."""
    return sorted(
        pods,
        key=lambda p: (
            str(p.get("metadata", {}).get("creationTimestamp") or ""),
            str(p.get("metadata", {}).get("name", "")),
        ),
        reverse=True,
    )


def _container_status(pod: Mapping[str, Any], field: str, name: str) -> Mapping[str, Any]:
    for cs in (pod.get("status") or {}).get(field) or []:
        if cs.get("name") == name:
            return dict(cs)
    return {}


def running_image_id(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """The imageID the kubelet reports for the worker of the newest ready pod: the image that
    really runs (a digest), where runtimeImage is the reference the operator asked for."""
    for pod in _newest_first(pods):
        if _pod_ready(pod):
            image_id = _container_status(pod, "containerStatuses", WORKER_CONTAINER).get("imageID")
            if image_id:
                return str(image_id)
    return None


def fetched_digest(pod: Mapping[str, Any]) -> str | None:
    """`sha256:<hex>` from the termination message of a pod's model fetcher that succeeded:
    the digest `airt-worker fetch` computed of the bytes it placed."""
    fetch = _container_status(pod, "initContainerStatuses", FETCH_CONTAINER)
    done = (fetch.get("state") or {}).get("terminated") or {}
    if done.get("exitCode") != 0 or not done.get("message"):
        return None
    try:
        record = json.loads(str(done["message"]))
    except ValueError:
        return None
    digest = record.get("modelDigest") if isinstance(record, dict) else None
    return digest if isinstance(digest, str) and _DIGEST.match(digest) else None


def model_digest(ctx: RenderContext, obs: Observation) -> str | None:
    """The digest of the model the pods really loaded, never an echo of the spec alone.

    The fetcher's record of the newest ready pod (else of the newest pod that has one); without
    one (a model on a volume), the spec's sha256 once every replica runs the current template
    and one is ready, because the worker (AIRT_MODEL_SHA256) then computed it and would have
    refused to start on a mismatch.
    """
    pods = _newest_first(obs.pods)
    for pod in [p for p in pods if _pod_ready(p)] + pods:
        digest = fetched_digest(pod)
        if digest:
            return digest
    rolled_out = _progressing(ctx, obs).reason == Reason.ROLLOUT_COMPLETE
    ready = int(_deploy_status(obs).get("readyReplicas", 0) or 0)
    if ctx.model_sha256 and rolled_out and ready > 0:
        return f"sha256:{ctx.model_sha256}"
    return None


def status_fields(ctx: RenderContext, obs: Observation) -> dict[str, Any]:
    """The non-condition status fields, in wire (camelCase) form.

    `imageID` and `modelDigest` are None (removed by the merge patch) while no pod reports them.
    """
    st = _deploy_status(obs)
    host = f"{ctx.name}.{ctx.namespace}.svc"
    out: dict[str, Any] = {
        "replicas": int(st.get("replicas", 0) or 0),
        "readyReplicas": int(st.get("readyReplicas", 0) or 0),
        "availableReplicas": int(st.get("availableReplicas", 0) or 0),
        "updatedReplicas": int(st.get("updatedReplicas", 0) or 0),
        "selector": ",".join(f"{k}={v}" for k, v in ctx.selector.items()),
        "url": f"http://{host}:8000",
        "grpcAddress": f"{host}:8001" if ctx.serving.grpc_port else None,
        "runtimeName": ctx.runtime_name,
        "runtimeKind": ctx.runtime_kind,
        "runtimeImage": ctx.worker_image,
        "imageID": running_image_id(obs.pods),
        "modelDigest": model_digest(ctx, obs),
    }
    if ctx.gpu:
        out["gpu"] = ctx.gpu.summary()[:256]
        out["gpuPlacement"] = ctx.gpu.mode
        replicas = replica_devices(obs.pods, obs.claims, obs.slices) if ctx.gpu.dra else []
        # None removes the field (a merge patch): nothing allocated, or not DRA.
        out["gpuProduct"] = products_summary(replicas)
        out["replicaDevices"] = replicas or None
    return out

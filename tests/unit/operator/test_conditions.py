"""Observe: conditions from child state; Ready is the AND; transition times are kept."""

from __future__ import annotations

from typing import Any

from opbuild import context, example

from airt_operator.api import Reason
from airt_operator.reconcile.observe import (
    Observation,
    failed_resolution,
    merge_conditions,
    observe,
    resolved_conditions,
)

H100 = {
    "metadata": {
        "labels": {
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
            "nvidia.com/gpu.memory": "81559",
        }
    },
    "status": {"allocatable": {"nvidia.com/gpu": "8"}},
}
RESOLVED = resolved_conditions(Reason.RUNTIME_FOUND, "using torch-cpu", ok=True)


def deployment(
    replicas: int, available: int, updated: int | None = None, gen: int = 1
) -> dict[str, Any]:
    return {
        "metadata": {"generation": gen},
        "status": {
            "observedGeneration": gen,
            "replicas": replicas,
            "availableReplicas": available,
            "readyReplicas": available,
            "updatedReplicas": replicas if updated is None else updated,
        },
    }


def pod(
    node: str | None = "cpu-0", phase: str = "Running", unschedulable: str | None = None
) -> dict[str, Any]:
    conds = []
    if unschedulable:
        conds.append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable,
            }
        )
    return {
        "metadata": {"name": "p"},
        "spec": {"nodeName": node} if node else {},
        "status": {"phase": phase, "conditions": conds},
    }


def by_type(conds: list[Any]) -> dict[str, Any]:
    return {c.type: c for c in conds}


def test_ready_when_every_replica_answers() -> None:
    ctx = context(example("mlp-cpu"))  # 2 replicas
    conds = by_type(observe(ctx, Observation(deployment(2, 2), [pod(), pod()], []), RESOLVED))
    assert conds["Ready"].status == "True"
    assert conds["Available"].reason == "MinimumReplicasAvailable"
    assert conds["Progressing"].status == "False" and conds["Degraded"].status == "False"


def test_not_ready_while_the_model_loads() -> None:
    ctx = context(example("mlp-cpu"))
    conds = by_type(observe(ctx, Observation(deployment(2, 1), [pod(), pod()], []), RESOLVED))
    assert conds["Ready"].status == "False"
    assert conds["Available"].reason == "ModelLoading"
    assert "Available" in conds["Ready"].message


def test_unschedulable_pod_is_reported_with_the_scheduler_message() -> None:
    ctx = context(example("mlp-cpu"))
    msg = "0/6 nodes are available: 6 Insufficient cpu."
    obs = Observation(deployment(2, 0), [pod(None, "Pending", msg), pod()], [])
    conds = by_type(observe(ctx, obs, RESOLVED))
    assert conds["Scheduled"].reason == "Unschedulable"
    assert conds["Scheduled"].message == msg
    assert conds["Ready"].status == "False"


def test_gpu_request_no_node_can_ever_fit_has_its_own_reason() -> None:
    ctx = context(example("cnn-4xh100"))
    big = type(ctx.gpu)(ctx.gpu.resource, 16, ctx.gpu.products, None)  # type: ignore[union-attr, misc]
    import dataclasses

    ctx = dataclasses.replace(ctx, gpu=big)
    conds = by_type(
        observe(ctx, Observation(deployment(1, 0), [pod(None, "Pending")], [H100]), RESOLVED)
    )
    assert conds["Scheduled"].reason == "NoMatchingGPUNodes"


def test_crash_loop_is_degraded() -> None:
    ctx = context(example("mlp-cpu"))
    p = pod()
    p["status"]["containerStatuses"] = [
        {"name": "worker", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    ]
    conds = by_type(observe(ctx, Observation(deployment(2, 1), [p, pod()], []), RESOLVED))
    assert conds["Degraded"].status == "True" and conds["Degraded"].reason == "CrashLoop"
    assert conds["Ready"].status == "False"


def test_failed_resolution_makes_ready_false_and_says_why() -> None:
    cond = resolved_conditions(Reason.RUNTIME_NOT_FOUND, "InferenceRuntime x not found", ok=False)
    conds = by_type(failed_resolution(cond))
    assert conds["Ready"].status == "False"
    assert "RuntimeNotFound" in conds["Ready"].message


def test_merge_keeps_transition_time_when_status_is_unchanged() -> None:
    ctx = context(example("mlp-cpu"))
    first = observe(ctx, Observation(deployment(2, 2), [pod(), pod()], []), RESOLVED)
    again = observe(ctx, Observation(deployment(2, 2), [pod(), pod()], []), RESOLVED)
    merged = merge_conditions(first, again)
    assert [c.last_transition_time for c in merged] == [
        c.last_transition_time for c in merge_conditions([], first)
    ]
    assert [c.type for c in merged][:2] == ["Ready", "RuntimeResolved"]

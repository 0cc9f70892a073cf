"""Observe: pod failures reported by the kubelet and by the containers' termination messages
become condition reasons with the container's own message; status records what really ran.

The pod dicts are shaped like real kubelet statuses, passed through the pod index's projection
(`world.pod_facts`) the way the operator's index holds them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from opbuild import context, example

from airt_operator.api import ModelDeploymentStatus, Reason
from airt_operator.reconcile.observe import (
    Observation,
    observe,
    pod_failure,
    resolved_conditions,
    status_fields,
)
from airt_operator.world import pod_facts

H100 = {
    "metadata": {"labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
    "status": {"allocatable": {"nvidia.com/gpu": "8"}},
}
RESOLVED = resolved_conditions(Reason.RUNTIME_FOUND, "using torch-cpu", ok=True)
IMAGE = "ghcr.io/airt-dev/worker-cpu:0.1.0"
IMAGE_ID = "ghcr.io/airt-dev/worker-cpu@sha256:" + "a" * 64
OLD_IMAGE_ID = "ghcr.io/airt-dev/worker-cpu@sha256:" + "b" * 64
_CNN_GPU = example("cnn-gpu").spec.model
GOOD = _CNN_GPU.sha256 or ""  # the example's pinned file hash
URI = _CNN_GPU.uri
MISMATCH = f"ModelDigestMismatch: sha256 mismatch for {URI}: expected {GOOD}, got {'c' * 64}\n"
LOAD_FAILED = "ModelLoadFailed: model file /models/model does not exist\n"


def deployment(replicas: int, available: int, updated: int | None = None) -> dict[str, Any]:
    return {
        "metadata": {"generation": 1},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "availableReplicas": available,
            "readyReplicas": available,
            "updatedReplicas": replicas if updated is None else updated,
        },
    }


def container(
    name: str,
    state: dict[str, Any],
    last: dict[str, Any] | None = None,
    ready: bool = False,
    image_id: str = IMAGE_ID,
) -> dict[str, Any]:
    """A container status as the kubelet writes it (with the fields observe never reads)."""
    return {
        "name": name,
        "image": IMAGE,
        "imageID": image_id,
        "containerID": "containerd://" + "e" * 64,
        "ready": ready,
        "started": ready,
        "restartCount": 3 if last else 0,
        "state": state,
        "lastState": {"terminated": last} if last else {},
    }


def terminated(code: int, message: str | None = None, reason: str = "Error") -> dict[str, Any]:
    out: dict[str, Any] = {
        "exitCode": code,
        "reason": reason if code else "Completed",
        "startedAt": "2026-01-01T00:00:01Z",
        "finishedAt": "2026-01-01T00:00:03Z",
        "containerID": "containerd://" + "f" * 64,
    }
    if message is not None:
        out["message"] = message
    return out


def crash_loop(name: str) -> dict[str, Any]:
    return {
        "waiting": {
            "reason": "CrashLoopBackOff",
            "message": f"back-off 40s restarting failed container={name} pod=p_ns(uid)",
        }
    }


RUNNING = {"running": {"startedAt": "2026-01-01T00:00:05Z"}}
FETCHED = terminated(0, '{"modelDigest":"sha256:' + GOOD + '"}\n')


def pod(
    name: str = "cnn-gpu-5c9f7-abcde",
    init: list[dict[str, Any]] | None = None,
    containers: list[dict[str, Any]] | None = None,
    phase: str = "Running",
    ready: bool = False,
    created: str = "2026-01-01T00:00:00Z",
) -> dict[str, Any]:
    """A kubelet-shaped pod, projected by the pod index's function."""
    body = {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "creationTimestamp": created,
            "labels": {"airt.dev/modeldeployment": "cnn-gpu"},
            "uid": "uid",
        },
        "spec": {"nodeName": "gpu-0", "containers": [{"name": "worker", "image": IMAGE}]},
        "status": {
            "phase": phase,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True" if ready else "False"},
            ],
            "initContainerStatuses": init or [],
            "containerStatuses": containers or [],
            "hostIP": "10.0.0.2",
            "podIP": "10.244.0.7",
        },
    }
    return pod_facts(body)  # type: ignore[arg-type]


def by_type(conds: list[Any]) -> dict[str, Any]:
    return {c.type: c for c in conds}


def conditions(pods: list[dict[str, Any]], dep: dict[str, Any] | None = None) -> dict[str, Any]:
    ctx = context(example("cnn-gpu"))  # a remote model with a sha256, one replica
    obs = Observation(dep or deployment(1, 0), pods, [H100])
    return by_type(observe(ctx, obs, RESOLVED))


def assert_failure(conds: dict[str, Any], reason: str, *words: str) -> None:
    assert conds["Ready"].status == "False" and conds["Ready"].reason == reason
    assert conds["Available"].status == "False" and conds["Available"].reason == reason
    assert conds["Degraded"].status == "True" and conds["Degraded"].reason == reason
    for word in words:
        assert word in conds["Available"].message
        assert word in conds["Ready"].message
    assert conds["Ready"].message.startswith(f"Available: {reason}: ")


def test_fetcher_digest_mismatch_is_its_own_reason() -> None:
    p = pod(
        init=[container("model-fetch", {"terminated": terminated(1, MISMATCH)})],
        containers=[container("worker", {"waiting": {"reason": "PodInitializing"}})],
        phase="Pending",
    )
    conds = conditions([p])
    assert_failure(
        conds, "ModelDigestMismatch", f"sha256 mismatch for {URI}", f"expected {GOOD}", "c" * 64
    )
    assert "container model-fetch of pod cnn-gpu-5c9f7-abcde" in conds["Degraded"].message
    assert "\n" not in conds["Ready"].message


def test_fetcher_crash_looping_keeps_reporting_its_last_message() -> None:
    msg = "ModelFetchFailed: reading s3://airt-examples/cnn/model.pt2: NoSuchBucket\n"
    p = pod(
        init=[container("model-fetch", crash_loop("model-fetch"), last=terminated(1, msg))],
        containers=[container("worker", {"waiting": {"reason": "PodInitializing"}})],
        phase="Pending",
    )
    assert_failure(conditions([p]), "ModelFetchFailed", "NoSuchBucket")


def test_fetcher_retrying_after_a_failure_still_reports_it() -> None:
    p = pod(
        init=[container("model-fetch", RUNNING, last=terminated(1, MISMATCH))],
        phase="Pending",
    )
    assert_failure(conditions([p]), "ModelDigestMismatch")


def test_worker_load_failure_in_crash_loop() -> None:
    p = pod(
        init=[container("model-fetch", {"terminated": FETCHED}, ready=True)],
        containers=[
            container("worker", crash_loop("worker"), last=terminated(1, LOAD_FAILED)),
            container("metrics", RUNNING, ready=True),
        ],
    )
    conds = conditions([p])
    assert_failure(conds, "ModelLoadFailed", "model file /models/model does not exist")
    assert conds["Available"].message == (
        "model file /models/model does not exist (container worker of pod cnn-gpu-5c9f7-abcde)"
    )


def test_worker_restarted_and_loading_again_still_reports_the_failure() -> None:
    p = pod(containers=[container("worker", RUNNING, last=terminated(1, LOAD_FAILED))])
    assert_failure(conditions([p]), "ModelLoadFailed")


def test_worker_that_recovered_is_not_failing() -> None:
    p = pod(
        containers=[container("worker", RUNNING, last=terminated(1, LOAD_FAILED), ready=True)],
        ready=True,
    )
    conds = conditions([p], deployment(1, 1))
    assert conds["Ready"].status == "True"
    assert conds["Degraded"].reason == "AsExpected"


def test_image_never_pulled_names_the_image() -> None:
    msg = f'Container image "{IMAGE}" is not present with pull policy of Never'
    p = pod(
        containers=[
            container("worker", {"waiting": {"reason": "ErrImageNeverPull", "message": msg}}),
        ],
        phase="Pending",
    )
    assert_failure(conditions([p]), "ImagePullFailed", msg, "container worker")


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImagePull", "InvalidImageName"])
def test_image_pull_errors(reason: str) -> None:
    msg = 'Back-off pulling image "registry.example/airt/worker:nope"'
    p = pod(
        containers=[
            container("worker", {"waiting": {"reason": reason, "message": msg}}, image_id=""),
            container("metrics", RUNNING, ready=True),
        ],
        phase="Pending",
    )
    assert_failure(conditions([p]), "ImagePullFailed", msg)


def test_a_failing_new_pod_makes_a_serving_model_degraded() -> None:
    """During a rollout the old replica still serves (Available), but the new one cannot start."""
    old = pod(
        "cnn-gpu-old-aaaaa", containers=[container("worker", RUNNING, ready=True)], ready=True
    )
    new = pod(
        "cnn-gpu-new-bbbbb",
        containers=[container("worker", crash_loop("worker"), last=terminated(1, LOAD_FAILED))],
        created="2026-01-02T00:00:00Z",
    )
    conds = conditions([old, new], deployment(1, 1, updated=0))
    assert conds["Available"].status == "True"
    assert conds["Degraded"].status == "True" and conds["Degraded"].reason == "ModelLoadFailed"
    assert conds["Ready"].status == "False" and conds["Ready"].reason == "ModelLoadFailed"
    assert conds["Ready"].message.startswith("Degraded: ModelLoadFailed: model file")


def test_other_crash_loops_keep_their_reason_and_carry_the_message() -> None:
    logs = "2026-01-01 INFO listening\n2026-01-01 ERROR cannot listen: 0.0.0.0:8000: in use\n"
    p = pod(containers=[container("worker", crash_loop("worker"), last=terminated(1, logs))])
    conds = conditions([p])
    assert conds["Degraded"].reason == "CrashLoop"
    assert conds["Degraded"].message.startswith(
        "container worker of pod cnn-gpu-5c9f7-abcde is crash-looping (exit code 1, Error): "
    )
    assert "cannot listen: 0.0.0.0:8000: in use" in conds["Degraded"].message
    assert "\n" not in conds["Degraded"].message
    assert conds["Ready"].reason == "NotReady"


def test_crash_loop_without_a_message_and_an_oom_kill() -> None:
    p = pod(
        containers=[
            container("worker", crash_loop("worker"), last=terminated(137, reason="OOMKilled"))
        ]
    )
    failure = pod_failure([p])
    assert failure is not None and failure.reason == Reason.CRASH_LOOP
    assert failure.message.endswith("is crash-looping (exit code 137, OOMKilled)")


def test_a_long_message_is_capped() -> None:
    msg = "ModelLoadFailed: " + "x" * 5000
    p = pod(containers=[container("worker", crash_loop("worker"), last=terminated(1, msg))])
    failure = pod_failure([p])
    assert failure is not None and len(failure.message) < 1200


def test_named_failures_win_over_crash_loops_of_other_pods() -> None:
    crashing = pod(
        "a-pod", containers=[container("metrics", crash_loop("metrics"), last=terminated(2))]
    )
    failing = pod(
        "b-pod",
        containers=[container("worker", crash_loop("worker"), last=terminated(1, LOAD_FAILED))],
    )
    failure = pod_failure([crashing, failing])
    assert failure is not None and failure.reason == Reason.MODEL_LOAD_FAILED


def test_a_clean_exit_is_no_failure() -> None:
    p = pod(containers=[container("worker", {"terminated": terminated(0)})])
    assert pod_failure([p]) is None


# --- what really ran -------------------------------------------------------------------------


def fields(pods: list[dict[str, Any]], dep: dict[str, Any], name: str = "cnn-gpu") -> Any:
    ctx = context(example(name))
    out = status_fields(ctx, Observation(dep, pods, []))
    ModelDeploymentStatus.model_validate(out)  # the wire form the CRD accepts
    return out


def serving(name: str, image_id: str, created: str, digest: str = GOOD) -> dict[str, Any]:
    record = terminated(0, '{"modelDigest":"sha256:' + digest + '"}\n')
    return pod(
        name,
        init=[container("model-fetch", {"terminated": record}, ready=True)],
        containers=[container("worker", RUNNING, ready=True, image_id=image_id)],
        ready=True,
        created=created,
    )


def test_image_id_and_model_digest_come_from_the_newest_ready_pod() -> None:
    old = serving("cnn-gpu-b", OLD_IMAGE_ID, "2026-01-01T00:00:00Z", digest="d" * 64)
    new = serving("cnn-gpu-a", IMAGE_ID, "2026-01-02T00:00:00Z")
    out = fields([old, new], deployment(2, 2))
    assert out["runtimeImage"] == context(example("cnn-gpu")).worker_image  # what was asked
    assert out["imageID"] == IMAGE_ID
    assert out["modelDigest"] == f"sha256:{GOOD}"
    # the status model reads the kubelet's spelling
    assert ModelDeploymentStatus.model_validate(out).image_id == IMAGE_ID


def test_a_pod_not_ready_yet_does_not_count_for_the_image() -> None:
    old = serving("cnn-gpu-b", OLD_IMAGE_ID, "2026-01-01T00:00:00Z")
    new = pod(
        "cnn-gpu-a",
        containers=[container("worker", RUNNING, image_id=IMAGE_ID)],
        created="2026-01-02T00:00:00Z",
    )
    assert fields([old, new], deployment(2, 1, updated=1))["imageID"] == OLD_IMAGE_ID


def test_model_digest_is_the_fetchers_not_the_spec() -> None:
    other = "e" * 64  # the fetcher placed bytes with this digest (no --sha256 pinned)
    p = pod(
        init=[
            container(
                "model-fetch",
                {"terminated": terminated(0, '{"modelDigest":"sha256:' + other + '"}')},
                ready=True,
            )
        ]
    )
    assert fields([p], deployment(1, 0, updated=0))["modelDigest"] == f"sha256:{other}"


def test_without_a_record_the_digest_is_unset_until_the_worker_verified_it() -> None:
    # kwok-style pods: the init container completed, no termination message
    p = pod(
        init=[container("model-fetch", {"terminated": terminated(0)}, ready=True)],
        containers=[container("worker", RUNNING, image_id="")],
    )
    out = fields([p], deployment(1, 0, updated=0))
    assert out["modelDigest"] is None and out["imageID"] is None


def test_a_volume_model_reports_the_digest_the_worker_verified() -> None:
    ctx = dataclasses.replace(context(example("mlp-cpu")), model_sha256=GOOD)
    ready = pod("mlp-cpu-a", containers=[container("worker", RUNNING, ready=True)], ready=True)
    rolling = status_fields(ctx, Observation(deployment(2, 1, updated=1), [ready], []))
    assert rolling["modelDigest"] is None  # not every replica runs the current template yet
    done = status_fields(ctx, Observation(deployment(2, 2), [ready, ready], []))
    assert done["modelDigest"] == f"sha256:{GOOD}"
    unpinned = status_fields(context(example("mlp-cpu")), Observation(deployment(2, 2), [], []))
    assert unpinned["modelDigest"] is None


def test_status_fields_are_stable_between_reconciles() -> None:
    pods = [serving("cnn-gpu-a", IMAGE_ID, "2026-01-02T00:00:00Z")]
    assert fields(pods, deployment(1, 1)) == fields(list(reversed(pods)), deployment(1, 1))


def test_pod_projection_keeps_only_what_observe_reads() -> None:
    p = pod(
        init=[container("model-fetch", {"terminated": FETCHED}, ready=True)],
        containers=[container("worker", crash_loop("worker"), last=terminated(1, LOAD_FAILED))],
    )
    worker = p["status"]["containerStatuses"][0]
    assert set(worker) == {"name", "ready", "state", "imageID", "lastState"}
    assert worker["lastState"]["terminated"] == {
        "exitCode": 1,
        "reason": "Error",
        "message": LOAD_FAILED,
    }
    assert set(worker["state"]["waiting"]) == {"reason", "message"}
    fetch = p["status"]["initContainerStatuses"][0]
    assert set(fetch["state"]["terminated"]) == {"exitCode", "reason", "message"}
    assert "lastState" not in fetch
    assert "hostIP" not in p["status"]
    running = pod(containers=[container("worker", RUNNING, ready=True)])
    assert running["status"]["containerStatuses"][0]["state"] == {"running": {}}

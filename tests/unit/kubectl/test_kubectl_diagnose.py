"""`kubectl airt why`'s diagnosis from bundles of objects: the one fix comes from the right
place (runtime, placement, admission, pods, operator lag), in the order a person fixes things."""

from __future__ import annotations

from kubectl_bundles import AVAILABLE, NOT_DEGRADED, NS, READY, event, md, pod, terminated, waiting

from airt_kubectl.diagnose import Bundle, diagnose, pod_problems, warning_events


def test_a_missing_model_says_so() -> None:
    d = diagnose(Bundle(NS, "nope", None))
    assert not d.healthy and "no ModelDeployment 'nope'" in d.fix


def test_a_ready_model_has_nothing_to_fix() -> None:
    obj = md("m", READY, AVAILABLE, NOT_DEGRADED)
    d = diagnose(Bundle(NS, "m", obj, pods=[pod("m-1")]))
    assert d.healthy
    assert d.fix.startswith("nothing to fix")
    assert not [f for f in d.findings if f.problem]


def test_a_bad_runtime_comes_first_and_names_the_fix() -> None:
    obj = md(
        "m",
        ("Ready", "False", "NotReady", "RuntimeResolved: RuntimeNotFound"),
        ("RuntimeResolved", "False", "RuntimeNotFound", "InferenceRuntime nope not found"),
    )
    # Even with a scheduling complaint in the Events, the runtime is the thing to fix first.
    events = [event("m-1", "FailedScheduling", "0/6 nodes are available", "2026-01-01T00:00:00Z")]
    d = diagnose(Bundle(NS, "m", obj, events=events))
    assert not d.healthy
    assert d.fix.startswith("RuntimeNotFound: InferenceRuntime nope not found")
    assert "kubectl get inferenceruntimes" in d.fix


def test_a_runtime_that_is_not_ready_is_mentioned() -> None:
    obj = md("m", ("RuntimeResolved", "False", "RuntimePolicyViolation", "runtime r allows 0 GPUs"))
    not_ready = {"type": "Ready", "status": "False", "reason": "ImageUnpinned", "message": "pin"}
    runtime = {"metadata": {"name": "r"}, "status": {"conditions": [not_ready]}}
    d = diagnose(Bundle(NS, "m", obj, runtime=runtime))
    assert "RuntimePolicyViolation" in d.fix and "the runtime itself is not Ready" in d.fix


def test_no_node_can_ever_hold_it() -> None:
    obj = md(
        "m",
        ("RuntimeResolved", "True", "RuntimeFound", ""),
        ("Scheduled", "False", "NoMatchingGPUNodes", "no node of product NVIDIA-B200 exists"),
    )
    d = diagnose(Bundle(NS, "m", obj, pods=[pod("m-1", node=None)]))
    assert d.fix.startswith("NoMatchingGPUNodes: no node of product NVIDIA-B200 exists")
    assert "spec.resources.gpu" in d.fix


def test_unschedulable_quotes_the_newest_scheduler_message() -> None:
    obj = md("m", ("Scheduled", "False", "Unschedulable", "0/6 nodes are available"))
    events = [
        event("m-1", "FailedScheduling", "old message", "2026-01-01T00:00:00Z"),
        event("m-1", "FailedScheduling", "0/6 nodes: 2 Insufficient cpu", "2026-01-01T00:01:00Z"),
    ]
    d = diagnose(Bundle(NS, "m", obj, pods=[pod("m-1", node=None)], events=events))
    assert d.fix.startswith("Unschedulable: 0/6 nodes: 2 Insufficient cpu")


def test_scheduler_events_are_read_even_before_the_operator_reports() -> None:
    obj = md("m")  # no conditions yet: the operator is behind or not running
    said = "0/6 nodes: untolerated taint"
    events = [event("m-1", "FailedScheduling", said, "2026-01-01T00:00:00Z")]
    d = diagnose(Bundle(NS, "m", obj, pods=[pod("m-1", node=None)], events=events))
    assert d.fix.startswith("Unschedulable: 0/6 nodes: untolerated taint")
    assert any(f.source == "operator" for f in d.findings)


def test_pods_refused_by_admission() -> None:
    obj = md("m")
    said = "pods is forbidden: violates PodSecurity"
    ev = event("m-5d8f", "FailedCreate", said, "2026-01-01T00:00:00Z")
    d = diagnose(Bundle(NS, "m", obj, events=[ev]))
    assert d.fix.startswith("FailedCreate: pods is forbidden")


def test_a_termination_message_names_the_cause() -> None:
    obj = md("m", ("Scheduled", "True", "PodsScheduled", "2 pod(s) placed"))
    bad = terminated("model-fetch", 1, "ModelFetchFailed: s3://b/m.pt: 403 Forbidden")
    d = diagnose(Bundle(NS, "m", obj, pods=[pod("m-1", init=[bad])]))
    assert d.fix.startswith("ModelFetchFailed: s3://b/m.pt: 403 Forbidden (container model-fetch")
    assert "credentials" in d.fix


def test_image_pull_failures_win_over_crash_loops() -> None:
    crash = terminated("worker", 137)
    pull = waiting("worker", "ImagePullBackOff", "Back-off pulling image ghcr.io/x")
    pods = [pod("m-a", containers=[crash]), pod("m-b", containers=[pull])]
    problems = pod_problems(pods)
    assert [p.reason for p in problems] == ["CrashLoop", "ImagePullFailed"]
    d = diagnose(Bundle(NS, "m", md("m"), pods=pods))
    assert "CrashLoop" in d.fix and "kubectl airt logs m --container worker" in d.fix


def test_a_loading_model_needs_no_fix_yet() -> None:
    obj = md(
        "m",
        ("Ready", "False", "NotReady", "Available: ModelLoading"),
        ("Available", "False", "ModelLoading", "0/2 replicas ready; 2 running, loading the model"),
        NOT_DEGRADED,
    )
    d = diagnose(Bundle(NS, "m", obj, pods=[pod("m-1"), pod("m-2")]))
    assert d.fix.startswith("nothing to fix yet: 0/2 replicas ready")


def test_a_stale_status_points_at_the_operator() -> None:
    obj = md("m", READY)
    obj["metadata"]["generation"] = 3
    d = diagnose(Bundle(NS, "m", obj))
    assert "has not caught up with generation 3" in d.fix
    assert "operator" in d.fix


def test_warning_events_are_deduplicated_and_ordered() -> None:
    evs = [
        event("p", "BackOff", "again", "2026-01-01T00:02:00Z"),
        event("p", "BackOff", "again", "2026-01-01T00:00:00Z"),
        event("p", "Pulled", "ok", "2026-01-01T00:01:00Z", type_="Normal"),
        event("p", "Failed", "pull", "2026-01-01T00:01:00Z"),
    ]
    assert [e["reason"] for e in warning_events(evs)] == ["Failed", "BackOff"]


def test_the_operators_own_events_are_left_to_the_conditions() -> None:
    obj = md("m", READY, AVAILABLE, NOT_DEGRADED)
    old = event("m", "NotReady", "Ready=False: loading", "2026-01-01T00:00:00Z")
    old["involvedObject"]["kind"] = "ModelDeployment"
    d = diagnose(Bundle(NS, "m", obj, pods=[pod("m-1")], events=[old]))
    assert not [f for f in d.findings if f.source == "event"]


def test_dra_reasons_are_the_one_thing_to_fix() -> None:
    for reason in ("NoMatchingDevices", "DevicesBusy"):
        m = md("m", ("Scheduled", "False", reason, "alternative 1: no device has productName L4"))
        d = diagnose(Bundle(NS, "m", m, pods=[pod("m-1", None, owner="m")]))
        assert not d.healthy and d.fix.startswith(f"{reason}: alternative 1"), d.fix
        assert "spec.resources.gpu" in d.fix or "spec.replicas" in d.fix

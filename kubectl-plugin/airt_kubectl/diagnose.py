"""`kubectl airt why`: from everything the cluster shows about one model, the one thing to fix.

Pure: a `Bundle` of raw objects (the ModelDeployment, its runtime, its pods, the Events about
them) in, a `Diagnosis` out: the findings, in the order they were read, and one fix. Called by
the CLI after the Kubernetes edge (kube.py) has gathered the bundle; unit-tested with hand-built
bundles. The order of the checks is the order a person would fix things in: a model with no
runtime never reaches the scheduler, one that cannot be placed never pulls an image, and so on.
Pods are read directly as well as through the conditions, so the answer is right even while the
operator is behind (or not running at all).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airt_kubectl.objects import Cond, Obj, condition, conditions, meta, name_of

IMAGE_PULL = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}
)
# What each reason the operator (or the worker's termination message) reports asks of the user.
ADVICE = {
    "RuntimeNotFound": "create that InferenceRuntime, or set spec.runtime.name to one that exists "
    "(kubectl get inferenceruntimes)",
    "NoMatchingRuntime": "no InferenceRuntime loads this format on this accelerator: ask the "
    "platform team for one, or change spec.model.format or spec.resources.gpu",
    "RuntimeIncompatible": "change spec.model.format or spec.resources.gpu to what the runtime "
    "supports, or pick another runtime in spec.runtime.name",
    "RuntimePolicyViolation": "change the spec to meet the runtime's policy (kubectl get "
    "inferenceruntime <name> -o yaml, spec.policy), or pick another runtime",
    "ImageOverrideNotAllowed": "remove spec.runtime.image, or use an image the runtime's "
    "policy.allowedImagePrefixes allow",
    "InvalidSpec": "correct the spec as the message says",
    "NoMatchingGPUNodes": "no node can ever hold one replica: change spec.resources.gpu "
    "(products, count, minMemoryGiB, mig), or ask the platform team for such nodes",
    "Unschedulable": "the scheduler cannot place a pod now: free capacity, lower "
    "spec.resources or spec.replicas, or add nodes",
    "NoMatchingDevices": "no device in the cluster's ResourceSlices can ever meet the request "
    "(DRA): change spec.resources.gpu (products, alternatives, count, minMemoryGiB, mig), or ask "
    "the platform team for such devices",
    "DevicesBusy": "every device that meets the request is allocated now (DRA): free some, lower "
    "spec.replicas, or add an alternative in spec.resources.gpu.alternatives",
    "ImagePullFailed": "the image cannot be pulled: check the runtime's images "
    "(status.runtimeImage, spec.runtime.image) and the registry's pull secrets",
    "ModelFetchFailed": "the model could not be fetched: check spec.model.uri, its credentials "
    "Secret, and that the fetcher may reach the store",
    "ModelDigestMismatch": "the fetched bytes do not match spec.model.sha256: fix the digest, "
    "or the URI if it points at the wrong object",
    "ModelLoadFailed": "the worker could not load the model: check spec.model.format and "
    "spec.model.inputs against the file",
    "CrashLoop": "a container keeps crashing: read its log (kubectl airt logs <name> "
    "--container <container>)",
    "FailedCreate": "the cluster refuses the pods (admission: Pod Security, a quota, a "
    "webhook): ask the platform team, or lower the request the message names",
    "ApplyFailed": "the API server refused a child object: see the message (a quota, a "
    "webhook or an admission policy is the usual cause)",
    "ChildConflict": "an object this model does not own has a child's name: delete or rename it",
    "ProgressDeadlineExceeded": "the rollout stopped progressing: read the pods' logs "
    "(kubectl airt logs <name>)",
}


@dataclass(frozen=True)
class Bundle:
    """What `why` reads about one model: None for what does not exist."""

    namespace: str
    name: str
    md: Obj | None
    runtime: Obj | None = None
    pods: Sequence[Obj] = ()
    events: Sequence[Obj] = ()


@dataclass(frozen=True)
class Finding:
    """One thing read: where it came from and what it says."""

    source: str  # "condition", "event", "pod", "operator"
    subject: str  # e.g. "Scheduled", "pod mlp-abc/worker"
    text: str
    problem: bool = True


@dataclass(frozen=True)
class Diagnosis:
    healthy: bool
    fix: str
    findings: list[Finding] = field(default_factory=list)


def _event_time(ev: Obj) -> str:
    series = ev.get("series") or {}
    return str(
        series.get("lastObservedTime")
        or ev.get("lastTimestamp")
        or ev.get("eventTime")
        or meta(ev).get("creationTimestamp")
        or ""
    )


def warning_events(events: Sequence[Obj]) -> list[Obj]:
    """Warning Events, oldest first, one per (object, reason, message)."""
    seen: dict[tuple[str, str, str], Obj] = {}
    for ev in sorted(events, key=_event_time):
        if ev.get("type") != "Warning":
            continue
        involved = ev.get("involvedObject") or ev.get("regarding") or {}
        key = (
            str(involved.get("name")),
            str(ev.get("reason")),
            str(ev.get("message") or ev.get("note")),
        )
        seen.pop(key, None)
        seen[key] = ev
    return list(seen.values())


def _scheduling_message(events: Sequence[Obj]) -> str | None:
    """The newest FailedScheduling message: the scheduler's per-node tally (`0/6 nodes are
    available: 2 Insufficient nvidia.com/gpu, ...`), more precise than the condition's."""
    failed = [e for e in warning_events(events) if e.get("reason") == "FailedScheduling"]
    return str(failed[-1].get("message") or "") if failed else None


@dataclass(frozen=True)
class PodProblem:
    reason: str  # a key of ADVICE
    container: str
    pod: str
    message: str


def _terminated(cs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    state = cs.get("state") or {}
    if state.get("terminated"):
        t = state["terminated"]
        return t if t.get("exitCode") != 0 else None
    if cs.get("ready"):
        return None
    last = (cs.get("lastState") or {}).get("terminated")
    return last if last and last.get("exitCode") != 0 else None


def pod_problems(pods: Sequence[Obj]) -> list[PodProblem]:
    """What the pods' container statuses say is wrong, init containers first: image pulls,
    termination messages in the worker's `<Reason>: <message>` form, crash loops."""
    out = []
    for pod in sorted(pods, key=name_of):
        status = pod.get("status") or {}
        for cs in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            container = str(cs.get("name"))
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in IMAGE_PULL:
                text = str(waiting.get("message") or waiting["reason"])
                out.append(PodProblem("ImagePullFailed", container, name_of(pod), text))
                continue
            done = _terminated(cs)
            said = str((done or {}).get("message") or "").strip()
            head, _, rest = said.partition(":")
            if done and head in ("ModelFetchFailed", "ModelDigestMismatch", "ModelLoadFailed"):
                out.append(PodProblem(head, container, name_of(pod), rest.strip()))
            elif waiting.get("reason") == "CrashLoopBackOff" or done:
                detail = f"exit code {(done or {}).get('exitCode', '?')}"
                if said:
                    detail += f": {said.splitlines()[-1]}"
                out.append(PodProblem("CrashLoop", container, name_of(pod), detail))
    return out


def _condition_findings(md: Obj) -> list[Finding]:
    return [
        Finding("condition", c.type, f"{c.status} {c.reason}: {c.message}".rstrip(": "), c.problem)
        for c in conditions(md)
    ]


def _fix(reason: str, message: str, name: str) -> str:
    advice = ADVICE.get(reason, "see the message").replace("<name>", name)
    return f"{reason}: {message} -> {advice}" if message else f"{reason} -> {advice}"


def _stale(md: Obj) -> str | None:
    status = md.get("status") or {}
    generation = meta(md).get("generation")
    observed = status.get("observedGeneration")
    if not conditions(md):
        return "the operator has not reported on this model yet"
    if generation is not None and observed is not None and int(observed) < int(generation):
        return f"the operator has not caught up with generation {generation} (observed {observed})"
    return None


def diagnose(b: Bundle) -> Diagnosis:
    """The findings, and the one thing to fix first."""
    if b.md is None:
        return Diagnosis(
            False,
            f"no ModelDeployment {b.name!r} in namespace {b.namespace!r}: check the name and "
            "-n (kubectl airt status -A)",
        )
    md = b.md
    findings = _condition_findings(md)
    for ev in warning_events(b.events):
        involved = ev.get("involvedObject") or ev.get("regarding") or {}
        if involved.get("kind") == "ModelDeployment":
            continue  # the operator's transition Events: the conditions say the same, current
        subject = f"{str(involved.get('kind', '')).lower()} {involved.get('name', '')}".strip()
        findings.append(Finding("event", subject, f"{ev.get('reason')}: {ev.get('message', '')}"))
    problems = pod_problems(b.pods)
    for p in problems:
        findings.append(Finding("pod", f"pod {p.pod}/{p.container}", f"{p.reason}: {p.message}"))
    stale = _stale(md)
    if stale:
        findings.append(Finding("operator", "status", stale))
    return Diagnosis(_healthy(md, problems), _first_fix(b, md, problems, stale), findings)


def _healthy(md: Obj, problems: Sequence[PodProblem]) -> bool:
    ready = condition(md, "Ready")
    return bool(ready and ready.status == "True" and not problems)


def _first_fix(b: Bundle, md: Obj, problems: Sequence[PodProblem], stale: str | None) -> str:
    name = name_of(md)
    resolved = condition(md, "RuntimeResolved")
    ready = condition(md, "Ready")
    if ready and ready.reason == "InvalidSpec":
        return _fix("InvalidSpec", ready.message, name)
    if resolved and resolved.status == "False":
        return _fix(resolved.reason, resolved.message, name) + _runtime_note(b.runtime)
    scheduled = condition(md, "Scheduled")
    never = ("NoMatchingGPUNodes", "NoMatchingDevices", "DevicesBusy")
    if scheduled and scheduled.status == "False" and scheduled.reason in never:
        return _fix(scheduled.reason, scheduled.message, name)
    created = [e for e in warning_events(b.events) if e.get("reason") == "FailedCreate"]
    if created and not b.pods:
        return _fix("FailedCreate", str(created[-1].get("message") or ""), name)
    detail = _scheduling_message(b.events)
    if (scheduled and scheduled.reason == "Unschedulable") or (
        detail and any(not (p.get("spec") or {}).get("nodeName") for p in b.pods)
    ):
        return _fix("Unschedulable", detail or (scheduled.message if scheduled else ""), name)
    if problems:
        p = problems[0]
        where = f"{p.message} (container {p.container} of pod {p.pod})"
        return _fix(p.reason, where, name).replace("<container>", p.container)
    degraded = condition(md, "Degraded")
    if degraded and degraded.problem:
        return _fix(degraded.reason, degraded.message, name).replace("<container>", "worker")
    progressing = condition(md, "Progressing")
    if progressing and progressing.problem:
        return _fix(progressing.reason, progressing.message, name)
    if stale:
        return (
            f"{stale}: check that the airt operator is running and watches namespace "
            f"{b.namespace} (its log says why if it refuses the model)"
        )
    if ready and ready.status == "True":
        return "nothing to fix: the model answers on every replica"
    return _waiting(md, ready)


def _waiting(md: Obj, ready: Cond | None) -> str:
    available = condition(md, "Available")
    if available and available.reason == "ModelLoading":
        follow = f"kubectl airt logs {name_of(md)}"
        return f"nothing to fix yet: {available.message}; wait, or follow {follow}"
    if ready is not None:
        return f"not ready ({ready.reason}): {ready.message}"
    return "no conditions yet"


def _runtime_note(runtime: Obj | None) -> str:
    if runtime is None:
        return ""
    ready = condition(runtime, "Ready")
    if ready and ready.status != "True":
        return f" (the runtime itself is not Ready: {ready.reason}: {ready.message})"
    return ""

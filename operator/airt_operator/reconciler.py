"""One reconcile of one ModelDeployment: parse → resolve → render → apply → observe → status.

Called by the controller (controller.py) with a Snapshot of what kopf's watches hold, so a
reconcile reads nothing from the API server: it writes only what differs (children that are
missing, changed or drifted; a status that changed; an Event per condition transition). Domain
outcomes are returned as a ReconcileOutcome; the controller retries what waiting may fix, and
the kopf handlers (handlers.py) turn an invalid spec into kopf's PermanentError. The
runtime-status loop writes through `write_runtime_status`, so only this module holds the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airt_operator.api import (
    AnyRuntime,
    ApiValidationError,
    Condition,
    ModelDeployment,
    Reason,
    parse_model_deployment,
    parse_runtime,
)
from airt_operator.kube.client import Kube, KubeError
from airt_operator.kube.resources import (
    CHILD_KINDS,
    MODEL_DEPLOYMENT,
    SECRET,
    SERVICE_MONITOR,
    Kind,
    kind_of,
)
from airt_operator.metrics import OperatorMetrics
from airt_operator.reconcile.build import BuildSettings, build_context
from airt_operator.reconcile.credentials import credentials_refusal
from airt_operator.reconcile.diff import HASH_ANNOTATION, needs_apply, spec_changed
from airt_operator.reconcile.events import landed, tentative_union, transition_events
from airt_operator.reconcile.observe import (
    Observation,
    conditions_of,
    degraded_apply_failed,
    degraded_child_conflict,
    failed_resolution,
    merge_conditions,
    observe,
    placement_unsupported,
    resolved_conditions,
    status_fields,
)
from airt_operator.reconcile.outcome import (
    ChildConflictError,
    PendingEvent,
    ReconcileOutcome,
    Result,
    Snapshot,
)
from airt_operator.reconcile.ownership import ChildConflict, conflict_of, owned_by
from airt_operator.reconcile.placement import PlacementError
from airt_operator.reconcile.pod_security import deployment_violations
from airt_operator.reconcile.render import RenderError, render_stamped
from airt_operator.reconcile.resolve import ResolutionFailure, ResolvedRuntime, resolve
from airt_operator.write_memory import ApplyMemory, WriteMemory

__all__ = [
    "ChildConflictError",
    "PendingEvent",
    "ReconcileOutcome",
    "Reconciler",
    "Result",
    "Snapshot",
]

log = logging.getLogger("airt.operator")

# Events owed per object at most: a long outage must not grow them without bound (the newest
# transitions are the ones worth telling).
MAX_PENDING_EVENTS = 20

# Failed attempts in a row (409, 429, 5xx, timeouts on a child's apply) before the status says
# that the operator is retrying, and why.
EXPLAIN_AFTER_FAILURES = 3


def _wire(conds: Sequence[Condition]) -> list[dict[str, Any]]:
    return [c.model_dump(by_alias=True, exclude_none=True, mode="json") for c in conds]


@dataclass
class Reconciler:
    """Holds the client, settings and per-object locks; stateless between reconciles otherwise."""

    kube: Kube
    metrics: OperatorMetrics
    settings: BuildSettings
    resync_seconds: float = 300.0
    # Reconciles past the per-object lock at once: each holds its rendered children and uses
    # one API connection, so this bounds memory and connections during a burst of creations.
    max_concurrent: int = 32
    _slots: asyncio.Semaphore = field(init=False)
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    # The status this operator last wrote, with the resourceVersion the API server answered.
    # kopf's index may still hold an older copy for a moment after our own write; merging new
    # conditions into that stale copy would move transition times and write again.
    written: WriteMemory[tuple[str, str]] = field(default_factory=WriteMemory)
    # The same for children: what we last applied, and what the index has shown of it.
    applied: ApplyMemory = field(default_factory=ApplyMemory)
    # Events written into status but not yet posted (a failed POST is re-sent next attempt).
    _events: dict[tuple[str, str], list[PendingEvent]] = field(default_factory=dict)
    # Events of a status write that failed: owed only if the write landed all the same.
    _tentative: dict[tuple[str, str], list[PendingEvent]] = field(default_factory=dict)
    # Consecutive attempts whose children could not be applied for a reason worth retrying.
    _failing: dict[tuple[str, str], int] = field(default_factory=dict)
    #: An OpenTelemetry tracer when tracing is on (`tracing.start_tracer`); None: no spans.
    tracer: Any = None

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.max_concurrent)

    def span(self, name: str, attributes: dict[str, Any] | None = None) -> Any:
        """A span around a step of the reconcile, child of the reconcile's; a no-op context
        when tracing is off."""
        if self.tracer is None:
            return contextlib.nullcontext()
        return self.tracer.start_as_current_span(name, attributes=attributes)

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self._locks.setdefault((namespace, name), asyncio.Lock())

    def own_write(self, namespace: str, owner: str, kind: str | None, version: str | None) -> bool:
        """Whether an object at `version` is the operator's own last write: the ModelDeployment
        `owner`'s status, or the child of that kind that it applied."""
        if kind == MODEL_DEPLOYMENT.kind:
            return self.written.wrote((namespace, owner), version)
        return kind is not None and self.applied.wrote((namespace, owner, kind), version)

    def forget(self, namespace: str, name: str) -> None:
        self._locks.pop((namespace, name), None)
        self.written.forget((namespace, name))
        self._events.pop((namespace, name), None)
        self._tentative.pop((namespace, name), None)
        self._failing.pop((namespace, name), None)
        self.applied.forget(namespace, name)
        self.metrics.forget(namespace, name)

    async def reconcile(
        self, namespace: str, name: str, take: Callable[[], Snapshot | None]
    ) -> ReconcileOutcome | None:
        """Reconcile one object; the snapshot is taken once the object's lock is held, so a
        reconcile never works from a view older than the one before it."""
        async with self.lock(namespace, name), self._slots:
            snap = take()
            if snap is None:
                return None
            start = time.monotonic()
            attrs = {"k8s.namespace.name": namespace, "airt.modeldeployment.name": name}
            with self.span("reconcile", attrs) as span:
                try:
                    await self._send_events(snap)  # owed from an earlier attempt
                    outcome = await self._reconcile(snap)
                except KubeError as exc:
                    outcome = ReconcileOutcome(
                        Result.WAITING if exc.retryable else Result.FAILED, str(exc), 5.0
                    )
                if span is not None:
                    span.set_attribute("airt.reconcile.result", outcome.result.value)
                    if outcome.message:
                        span.set_attribute("airt.reconcile.message", outcome.message)
            self.metrics.reconciles.labels(result=outcome.result.value).inc()
            self.metrics.reconcile_duration.observe(time.monotonic() - start)
            return outcome

    async def _credentials_refusal(
        self, md: ModelDeployment, resolved: ResolvedRuntime
    ) -> tuple[Reason, str] | None:
        """The credentials policy (reconcile/credentials.py) on the named Secret's metadata."""
        ref = md.spec.model.credentials
        if ref is None:
            return None
        try:
            meta = await self.kube.get_metadata(SECRET, md.metadata.namespace, ref.name)
        except KubeError as exc:
            if exc.status == 403:
                return (
                    Reason.RUNTIME_POLICY_VIOLATION,
                    f"the operator may not read Secret {ref.name}'s metadata (RBAC: get "
                    "secrets), so it cannot check that it is labelled for model credentials",
                )
            raise
        return credentials_refusal(md, resolved, meta)

    def _current_status(self, snap: Snapshot) -> dict[str, Any]:
        """The object's status: the snapshot's, unless our own later write is not in it yet."""
        meta = snap.body["metadata"]
        return self.written.current(
            (meta["namespace"], meta["name"]),
            snap.body.get("status") or {},
            meta.get("resourceVersion", "0"),
        )

    async def write_runtime_status(
        self, name: str, status: dict[str, Any], namespace: str | None = None
    ) -> str | None:
        """Write a runtime's status (for the runtime-status loop, which holds no client of its
        own); with a namespace, a NamespacedInferenceRuntime's. Returns the resourceVersion the
        API server answered."""
        result = await self.kube.patch_runtime_status(name, status, namespace)
        version = (result.get("metadata") or {}).get("resourceVersion")
        return str(version) if version is not None else None

    async def _reconcile(self, snap: Snapshot) -> ReconcileOutcome:
        body = snap.body
        meta = body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        generation = int(meta.get("generation", 0))
        current = self._current_status(snap)
        old = conditions_of(current)
        try:
            md = parse_model_deployment(
                {"metadata": {"name": name, "namespace": ns}, "spec": dict(body.get("spec") or {})}
            )
        except ApiValidationError as exc:
            # The API server's schema should have refused it; an older CRD may not have.
            cond = resolved_conditions(Reason.INVALID_SPEC, str(exc), ok=False)
            await self._write_status(snap, generation, old, failed_resolution(cond), {})
            return ReconcileOutcome(Result.INVALID, str(exc))
        runtimes: list[AnyRuntime] = []
        for raw in snap.runtimes:
            try:
                runtimes.append(parse_runtime(dict(raw)))
            except ApiValidationError as exc:
                log.warning("skipping invalid runtime: %s", exc)
        try:
            with self.span("resolve") as resolve_span:
                resolved = resolve(md, runtimes, snap.namespace_labels)
                if resolve_span is not None:
                    resolve_span.set_attribute("airt.runtime.name", resolved.name)
        except ResolutionFailure as failure:
            cond = resolved_conditions(failure.reason, failure.message, ok=False)
            await self._write_status(snap, generation, old, failed_resolution(cond), {})
            return ReconcileOutcome(Result.INVALID, failure.message)
        refusal = await self._credentials_refusal(md, resolved)
        if refusal is not None:
            # Labelling or creating the Secret fixes it, and Secrets are not watched: retried
            # with backoff until then.
            cond = resolved_conditions(refusal[0], refusal[1], ok=False)
            await self._write_status(snap, generation, old, failed_resolution(cond), {})
            return ReconcileOutcome(Result.WAITING, refusal[1])
        try:
            ctx = build_context(
                md,
                resolved,
                self.settings,
                uid=meta["uid"],
                generation=generation,
                service_monitor=self._wants_service_monitor(md.spec.monitoring, snap),
                dra_available=snap.dra_available,
            )
        except PlacementError as exc:
            # Not the spec's fault alone: a DRA driver installed, or another placement
            # setting, makes it work (both re-reconcile every model).
            resolved_cond = resolved_conditions(resolved.reason, resolved.message, ok=True)
            cond = placement_unsupported(str(exc))
            await self._write_status(
                snap, generation, old, failed_resolution(resolved_cond, cond), {}
            )
            return ReconcileOutcome(Result.INVALID, str(exc))
        try:
            desired = render_stamped(ctx)
        except RenderError as exc:
            cond = resolved_conditions(Reason.INVALID_SPEC, str(exc), ok=False)
            await self._write_status(snap, generation, old, failed_resolution(cond), {})
            return ReconcileOutcome(Result.INVALID, str(exc))
        violations = deployment_violations(desired)
        if violations:
            # Whatever a runtime's template says, no pod that restricted refuses is applied.
            message = (
                f"runtime {resolved.name} cannot run under Pod Security restricted: "
                + "; ".join(violations)
            )
            cond = resolved_conditions(Reason.RUNTIME_NOT_RESTRICTED, message, ok=False)
            await self._write_status(snap, generation, old, failed_resolution(cond), {})
            return ReconcileOutcome(Result.INVALID, message)
        try:
            with self.span("apply", {"airt.children.desired": len(desired)}) as apply_span:
                wrote = await self._apply_children(desired, snap)
                if apply_span is not None:
                    apply_span.set_attribute("airt.children.written", wrote)
        except ChildConflictError as exc:
            # Not the spec's fault and not permanent: the foreign object may go away (nothing
            # of it reaches the watches, so the handlers retry with backoff).
            conflict = degraded_child_conflict(str(exc))
            resolved_cond = resolved_conditions(resolved.reason, resolved.message, ok=True)
            await self._write_status(
                snap, generation, old, failed_resolution(resolved_cond, conflict), {}
            )
            return ReconcileOutcome(Result.CONFLICT, str(exc))
        except KubeError as exc:
            if exc.retryable:
                await self._explain_retrying(snap, generation, old, resolved, exc)
                raise
            # The API server refused a child (admission, quota, RBAC): say so in status.
            failed = degraded_apply_failed(str(exc))
            resolved_cond = resolved_conditions(resolved.reason, resolved.message, ok=True)
            await self._write_status(
                snap, generation, old, failed_resolution(resolved_cond, failed), {}
            )
            return ReconcileOutcome(Result.FAILED, str(exc))
        resolved_cond = resolved_conditions(resolved.reason, resolved.message, ok=True)
        deployment = snap.children.get(("apps/v1", "Deployment"))
        obs = Observation(deployment, snap.pods, snap.nodes, snap.claims, snap.slices)
        conds = observe(ctx, obs, resolved_cond)
        with self.span("status") as status_span:
            status_wrote = await self._write_status(
                snap, generation, old, conds, status_fields(ctx, obs)
            )
            if status_span is not None:
                status_span.set_attribute("airt.status.written", status_wrote)
        self._failing.pop((ns, name), None)
        return ReconcileOutcome(Result.APPLIED if wrote or status_wrote else Result.UNCHANGED)

    async def _explain_retrying(
        self,
        snap: Snapshot,
        generation: int,
        old: list[Condition],
        resolved: ResolvedRuntime,
        exc: KubeError,
    ) -> None:
        """After a few failed attempts in a row, say in status why the children are not in
        place (the work queue keeps retrying). A single 409 or 500 is not worth a status write
        and an Event; one that persists is. The write is best effort: with the API server away
        it fails too, and the next attempt tries again."""
        key = _ns_name(snap)
        failures = self._failing[key] = self._failing.get(key, 0) + 1
        if failures < EXPLAIN_AFTER_FAILURES:
            return
        cond = degraded_apply_failed(f"retrying after {failures} failed attempts: {exc}")
        resolved_cond = resolved_conditions(resolved.reason, resolved.message, ok=True)
        try:
            await self._write_status(
                snap, generation, old, failed_resolution(resolved_cond, cond), {}
            )
        except KubeError as err:
            log.info("status of %s/%s not written either: %s", *key, err)

    @staticmethod
    def _wants_service_monitor(monitoring: Any, snap: Snapshot) -> bool:
        mode = monitoring.service_monitor if monitoring else "auto"
        return mode != "disabled" and snap.service_monitor_crd

    async def _live_child(
        self, snap: Snapshot, manifest: Mapping[str, Any]
    ) -> tuple[Mapping[str, Any] | None, bool]:
        """The live object in this child's place, and whether it came from a direct read.

        The watches see labelled objects only, so an unlabelled namesake (a Service or a
        RoleBinding someone made by hand) is invisible there: a child the index lacks is read
        before it is written. An indexed object under another name is not this child."""
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        kind = kind_of(dict(manifest))
        if kind is SERVICE_MONITOR:  # not watched: always read
            return await self.kube.get(kind, ns, name), True
        live = snap.children.get((kind.api_version, kind.kind))
        if live is not None and (live.get("metadata") or {}).get("name") == name:
            return live, False
        return None, False

    async def _apply_children(self, desired: Sequence[dict[str, Any]], snap: Snapshot) -> bool:
        uid = str(snap.body["metadata"]["uid"])
        # Every child is looked at before any is written: one that belongs to someone else
        # stops the whole set, so pods never run under a ServiceAccount or RoleBinding that
        # another party controls.
        plan: list[tuple[dict[str, Any], Mapping[str, Any] | None]] = []
        conflicts: list[ChildConflict] = []
        wanted: set[tuple[str, str]] = set()
        for manifest in desired:
            wanted.add((manifest["apiVersion"], manifest["kind"]))
            live, read = await self._live_child(snap, manifest)
            if self.applied.index_behind(_child_key(snap, manifest), _hash_of(manifest), live):
                if live is not None or read:
                    continue  # our own apply is not in the watch yet; it is what we want
                # Missing from the index soon after our apply: watch lag, or deleted right
                # after it (`kubectl scale` then `kubectl delete`), whose event is this
                # reconcile and no later one would bring the child back before the resync.
                # The API server tells which.
                live = await self.kube.get(
                    kind_of(manifest),
                    manifest["metadata"]["namespace"],
                    manifest["metadata"]["name"],
                )
                read = True
                if live is not None:
                    continue
            if live is None and not read:
                live = await self.kube.get(
                    kind_of(manifest),
                    manifest["metadata"]["namespace"],
                    manifest["metadata"]["name"],
                )
            conflict = conflict_of(manifest, live, uid)
            if conflict is not None:
                conflicts.append(conflict)
            elif needs_apply(manifest, dict(live) if live is not None else None):
                plan.append((manifest, live))
        if conflicts:
            raise ChildConflictError(conflicts)
        wrote = False
        for manifest, live in plan:
            log.info(
                "applying %s %s/%s (%s)",
                manifest["kind"],
                manifest["metadata"]["namespace"],
                manifest["metadata"]["name"],
                "drifted or changed" if live is not None else "missing",
            )
            kind = kind_of(manifest)
            if kind.immutable_spec and live is not None and spec_changed(manifest, live):
                # Pods made from the old spec keep what they were allocated.
                await self.kube.delete(kind, *_ns_name(snap))
            result = await self.kube.apply(manifest)
            version = (result.get("metadata") or {}).get("resourceVersion")
            self.applied.remember(_child_key(snap, manifest), _hash_of(manifest), version)
            self.metrics.children_applied.labels(kind=manifest["kind"]).inc()
            wrote = True
        # Children no longer wanted (a PDB after scaling to one replica, an HPA after
        # autoscaling was removed) are deleted; ownerReferences cover only the owner's deletion.
        # Only what this ModelDeployment owns is deleted: a labelled namesake is not ours.
        meta = snap.body["metadata"]
        for kind in CHILD_KINDS:
            key = (kind.api_version, kind.kind)
            if key in wanted:
                continue
            live = snap.children.get(key)
            if kind is SERVICE_MONITOR and snap.service_monitor_crd:
                live = await self.kube.get(kind, *_ns_name(snap))
            if (
                live is not None
                and (live.get("metadata") or {}).get("name") == meta["name"]
                and owned_by(live, uid)
            ):
                await self.kube.delete(kind, meta["namespace"], meta["name"])
                wrote = True
        return wrote

    async def _write_status(
        self,
        snap: Snapshot,
        generation: int,
        old: list[Condition],
        new: list[Condition],
        fields: dict[str, Any],
    ) -> bool:
        meta = snap.body["metadata"]
        merged = merge_conditions(old, new)
        for c in merged:
            c.observed_generation = generation
        status: dict[str, Any] = {"observedGeneration": generation, **fields}
        status["conditions"] = _wire(merged)
        self.metrics.set_conditions(
            meta["namespace"], meta["name"], [{"type": c.type, "status": c.status} for c in merged]
        )
        key = (meta["namespace"], meta["name"])
        current = self._current_status(snap)
        if all(current.get(k) == v for k, v in status.items()):
            self._tentative.pop(key, None)  # the status is settled: what it shows was sent
            return False
        owed = transition_events(old, merged)
        try:
            result = await self.kube.patch_status(meta["namespace"], meta["name"], status)
        except KubeError:
            # The write may have landed with its answer lost: later attempts decide.
            kept = tentative_union(self._tentative.get(key, []), owed)
            self._tentative[key] = kept[-MAX_PENDING_EVENTS:]
            raise
        self._tentative.pop(key, None)  # this write's own transitions replace them
        self.written.remember(
            key,
            result.get("status") or {},
            (result.get("metadata") or {}).get("resourceVersion"),
        )
        events = self._events.setdefault(key, [])
        events.extend(owed)
        del events[:-MAX_PENDING_EVENTS]
        await self._send_events(snap)
        return True

    async def _send_events(self, snap: Snapshot) -> None:
        """Post the Events still owed for this object, oldest first.

        An Event is owed from the moment its status transition is written: a POST that fails
        leaves it (and those after it) here, and the next attempt of this object's reconcile
        sends it, even though the status it describes no longer changes. The Events of a status
        write that failed join them if the live status shows that the write landed."""
        key = _ns_name(snap)
        if tentative := self._tentative.get(key):
            owed = landed(tentative, self._current_status(snap))
            if owed:
                self._tentative[key] = [e for e in tentative if e not in owed]
                self._events.setdefault(key, []).extend(owed)
                del self._events[key][:-MAX_PENDING_EVENTS]
        events = self._events.get(key)
        while events:
            e = events[0]
            await self.kube.event(dict(snap.body), e.type, e.reason, e.message)
            events.pop(0)


def _hash_of(manifest: Mapping[str, Any]) -> str:
    return str(manifest.get("metadata", {}).get("annotations", {}).get(HASH_ANNOTATION, ""))


def _child_key(snap: Snapshot, manifest: Mapping[str, Any]) -> tuple[str, str, str]:
    return (*_ns_name(snap), str(manifest["kind"]))


def _ns_name(snap: Snapshot) -> tuple[str, str]:
    meta = snap.body["metadata"]
    return meta["namespace"], meta["name"]


def child_key(manifest: Mapping[str, Any]) -> tuple[str, str]:
    kind: Kind = kind_of(dict(manifest))
    return (kind.api_version, kind.kind)

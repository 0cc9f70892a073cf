"""Status conditions: the condition model, the named condition types and reasons, and pure helpers.

The operator's observe step imports the constants and `set_condition` to write `status.conditions`;
the status models of both kinds embed `Condition`. The shape is `metav1.Condition`'s, so
`kubectl wait --for=condition=Ready`, Argo CD and Flux health checks read it unchanged.

Polarity: every type is "normal-true" except `Degraded`, which is True when something is wrong.
`Ready` is the conjunction `RuntimeResolved ∧ Scheduled ∧ Available ∧ ¬Degraded`; `Progressing`
only reports a rollout and never makes a model un-Ready by itself (see `ready_from`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_serializer, field_validator

from .base import ApiModel


class ConditionType(StrEnum):
    """The condition types a ModelDeployment reports (an InferenceRuntime reports `Ready` only)."""

    READY = "Ready"
    RUNTIME_RESOLVED = "RuntimeResolved"
    SCHEDULED = "Scheduled"
    AVAILABLE = "Available"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


class ConditionStatus(StrEnum):
    """A condition's status, as Kubernetes spells it."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Reason(StrEnum):
    """Machine-readable reasons (CamelCase, as `metav1.Condition` wants), grouped by condition."""

    # Ready
    READY = "Ready"
    NOT_READY = "NotReady"
    RECONCILING = "Reconciling"
    INVALID_SPEC = "InvalidSpec"
    # RuntimeResolved
    RUNTIME_FOUND = "RuntimeFound"
    RUNTIME_AUTO_SELECTED = "RuntimeAutoSelected"
    RUNTIME_NOT_FOUND = "RuntimeNotFound"
    NO_MATCHING_RUNTIME = "NoMatchingRuntime"
    RUNTIME_INCOMPATIBLE = "RuntimeIncompatible"
    RUNTIME_POLICY_VIOLATION = "RuntimePolicyViolation"
    CREDENTIALS_NOT_FOUND = "CredentialsNotFound"
    IMAGE_OVERRIDE_NOT_ALLOWED = "ImageOverrideNotAllowed"
    # RuntimeResolved, and a runtime's Ready: its template cannot pass Pod Security restricted
    RUNTIME_NOT_RESTRICTED = "RuntimeNotRestricted"
    # Scheduled
    PODS_SCHEDULED = "PodsScheduled"
    PENDING_SCHEDULING = "PendingScheduling"
    UNSCHEDULABLE = "Unschedulable"
    NO_MATCHING_GPU_NODES = "NoMatchingGPUNodes"
    INSUFFICIENT_GPU = "InsufficientGPU"
    # Scheduled, DRA placement: no device of the cluster matches any alternative (the selectors
    # evaluated against the ResourceSlices), or devices match but are all allocated
    NO_MATCHING_DEVICES = "NoMatchingDevices"
    DEVICES_BUSY = "DevicesBusy"
    # Scheduled: the request needs a placement mode the model cannot use (alternatives with the
    # device plugin)
    PLACEMENT_UNSUPPORTED = "PlacementUnsupported"
    # Available
    MINIMUM_REPLICAS_AVAILABLE = "MinimumReplicasAvailable"
    MINIMUM_REPLICAS_UNAVAILABLE = "MinimumReplicasUnavailable"
    MODEL_LOADING = "ModelLoading"
    SCALED_TO_ZERO = "ScaledToZero"
    # Available, Degraded and Ready: a pod failure that names its cause (the fetcher's or the
    # worker's termination message, or the kubelet's image pull error)
    MODEL_LOAD_FAILED = "ModelLoadFailed"
    MODEL_DIGEST_MISMATCH = "ModelDigestMismatch"
    MODEL_FETCH_FAILED = "ModelFetchFailed"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    # Progressing
    ROLLOUT_IN_PROGRESS = "RolloutInProgress"
    ROLLOUT_COMPLETE = "RolloutComplete"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    # Degraded
    AS_EXPECTED = "AsExpected"
    REPLICAS_UNAVAILABLE = "ReplicasUnavailable"
    CRASH_LOOP = "CrashLoop"
    APPLY_FAILED = "ApplyFailed"
    CHILD_CONFLICT = "ChildConflict"


# Which conditions make up Ready, and the status each must have for the model to be Ready.
READY_REQUIRES: dict[ConditionType, ConditionStatus] = {
    ConditionType.RUNTIME_RESOLVED: ConditionStatus.TRUE,
    ConditionType.SCHEDULED: ConditionStatus.TRUE,
    ConditionType.AVAILABLE: ConditionStatus.TRUE,
    ConditionType.DEGRADED: ConditionStatus.FALSE,
}


class Condition(ApiModel):
    """One aspect of the object's state, in the shape of `metav1.Condition`."""

    type: str = Field(
        description="The condition type, e.g. Ready, RuntimeResolved, Scheduled, Available, "
        "Progressing or Degraded.",
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    )
    status: Literal["True", "False", "Unknown"] = Field(
        description="Whether the condition holds: True, False or Unknown."
    )
    reason: str = Field(
        description="A CamelCase machine-readable reason for the last transition.",
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    )
    message: str = Field(
        default="",
        description="A human-readable explanation of the last transition; may be empty.",
        max_length=32768,
    )
    last_transition_time: datetime = Field(
        description="When the status last changed (RFC 3339).", strict=False
    )
    observed_generation: int | None = Field(
        default=None,
        description="The metadata.generation the condition was computed from.",
        ge=0,
    )

    @field_validator("last_transition_time")
    @classmethod
    def _whole_seconds_utc(cls, value: datetime) -> datetime:
        """Kubernetes keeps whole seconds in UTC; so do we, so a written time reads back equal."""
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).replace(microsecond=0)

    @field_serializer("last_transition_time")
    def _rfc3339(self, value: datetime) -> str:
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def find_condition(conditions: Iterable[Condition], type_: str) -> Condition | None:
    """The condition of that type, or None."""
    return next((c for c in conditions if c.type == type_), None)


def set_condition(conditions: Sequence[Condition], new: Condition) -> list[Condition]:
    """A new list with `new` in place of the condition of its type (appended when absent).

    `lastTransitionTime` moves only when the status changes, as Kubernetes expects; a changed
    reason or message alone keeps the old time. The order of the other conditions is kept so a
    reconcile that changes nothing produces an identical list (and so writes nothing).
    """
    out: list[Condition] = []
    replaced = False
    for old in conditions:
        if old.type != new.type:
            out.append(old)
            continue
        replaced = True
        if old.status == new.status:
            new = new.model_copy(update={"last_transition_time": old.last_transition_time})
        out.append(new)
    if not replaced:
        out.append(new)
    return out


def ready_from(conditions: Iterable[Condition]) -> tuple[ConditionStatus, str]:
    """Ready's status and the first condition type that keeps it from True (empty when Ready).

    Any component in the wrong state makes Ready False; otherwise a missing or Unknown component
    makes it Unknown, so a fresh object is Ready=Unknown until the operator has seen every aspect.
    """
    by_type = {c.type: c.status for c in conditions}
    unknown = ""
    for type_, wanted in READY_REQUIRES.items():
        have = by_type.get(type_, ConditionStatus.UNKNOWN)
        if have == ConditionStatus.UNKNOWN:
            unknown = unknown or type_.value
        elif have != wanted:
            return ConditionStatus.FALSE, type_.value
    if unknown:
        return ConditionStatus.UNKNOWN, unknown
    return ConditionStatus.TRUE, ""

"""The values a reconcile takes and gives: the Snapshot it reads, the outcome it returns, and
the Events it owes.

Built by world.py (Snapshot) and read by the reconciler (reconciler.py), the controller and the
kopf handlers (Result, ReconcileOutcome). Plain frozen data, no behaviour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from airt_operator.reconcile.ownership import ChildConflict


class Result(StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    WAITING = "waiting"
    FAILED = "failed"
    INVALID = "invalid"
    CONFLICT = "conflict"


@dataclass(frozen=True)
class ReconcileOutcome:
    result: Result
    message: str = ""
    retry_after: float | None = None


class ChildConflictError(Exception):
    """Some children's places are taken by objects this ModelDeployment does not own."""

    def __init__(self, conflicts: Sequence[ChildConflict]) -> None:
        super().__init__("; ".join(c.message() for c in conflicts))
        self.conflicts = list(conflicts)


@dataclass(frozen=True)
class PendingEvent:
    """A core/v1 Event owed for a condition transition written to status (or, while tentative,
    for a write whose answer was lost: reconcile/events.py)."""

    type: str
    reason: str
    message: str
    # The condition state it tells of, as (type, status, reason): how a tentative Event is
    # matched against the status an attempt reads.
    condition: tuple[str, str, str] | None = None


@dataclass(frozen=True)
class Snapshot:
    """What the watches show for one ModelDeployment (and the cluster facts it needs)."""

    body: Mapping[str, Any]  # plain (deep-copied) objects: kopf's live views never reach here
    runtimes: Sequence[Mapping[str, Any]]
    children: Mapping[tuple[str, str], Mapping[str, Any]]  # (apiVersion, kind) -> live object
    pods: Sequence[Mapping[str, Any]]
    nodes: Sequence[Mapping[str, Any]]
    service_monitor_crd: bool
    namespace_labels: Mapping[str, str] | None = None  # None: not indexed (yet)
    claims: Sequence[Mapping[str, Any]] = ()  # the pods' ResourceClaims (reconcile/devices.py)
    slices: Sequence[Mapping[str, Any]] = ()  # every ResourceSlice, as device facts
    dra_available: bool = False  # the NVIDIA DeviceClasses exist: placement `auto` means DRA

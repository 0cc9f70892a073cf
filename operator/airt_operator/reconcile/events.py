"""Which core/v1 Events a status write owes, and which are owed for a write whose answer was lost.

Called by the reconciler (reconciler.py) around each ModelDeployment status write. Pure: it
compares condition lists and builds PendingEvents; the reconciler posts them.

An Event is owed for every condition whose status or reason changed. A status PATCH can land in
etcd while its answer is lost (the API server killed mid-request, a client timeout): the next
attempt then sees the new status as the old one, finds no transition, and the Event would never
be sent. So the Events of a write that failed are kept as tentative, each naming the condition
(type, status and reason) it tells of. Each attempt sends those whose condition the status it
reads shows (the write landed); the others wait, because during an outage that status may be
stale, until an attempt settles the status (writes it, or finds nothing to write), which
computes its own transitions from what it read and so makes the rest moot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airt_operator.api import Condition, ConditionType, Reason
from airt_operator.reconcile.outcome import PendingEvent


def transition_events(old: Sequence[Condition], new: Sequence[Condition]) -> list[PendingEvent]:
    """One Event per condition of `new` whose status or reason differs from `old`'s; a Warning
    for a condition gone bad (Degraded=True, any other =False; Progressing only past its
    deadline)."""
    before = {c.type: c for c in old}
    events: list[PendingEvent] = []
    for c in new:
        prev = before.get(c.type)
        if prev is not None and prev.status == c.status and prev.reason == c.reason:
            continue
        warn = (c.type == ConditionType.DEGRADED.value and c.status == "True") or (
            c.type != ConditionType.DEGRADED.value and c.status == "False"
        )
        if c.type == ConditionType.PROGRESSING.value:
            warn = c.reason == Reason.PROGRESS_DEADLINE_EXCEEDED.value
        events.append(
            PendingEvent(
                "Warning" if warn else "Normal",
                c.reason,
                f"{c.type}={c.status}: {c.message}",
                condition=(c.type, c.status, c.reason),
            )
        )
    return events


def tentative_union(
    kept: Sequence[PendingEvent], new: Sequence[PendingEvent]
) -> list[PendingEvent]:
    """The tentative Events of several failed writes, one per condition state (the oldest
    wording kept): repeated attempts during an outage owe each transition once."""
    out = list(kept)
    seen = {e.condition for e in out}
    for e in new:
        if e.condition not in seen:
            seen.add(e.condition)
            out.append(e)
    return out


def landed(tentative: Sequence[PendingEvent], status: Mapping[str, Any]) -> list[PendingEvent]:
    """The tentative Events whose condition `status` shows as their write would have left it."""
    shown = {
        (str(c.get("type", "")), str(c.get("status", "")), str(c.get("reason", "")))
        for c in status.get("conditions") or []
        if isinstance(c, Mapping)
    }
    return [e for e in tentative if e.condition is not None and e.condition in shown]

"""Which core/v1 Events a status write owes, and whether a write whose answer was lost landed.

Called by the reconciler (reconciler.py) around each ModelDeployment status write. Pure: it
compares condition lists and builds PendingEvents; the reconciler posts them.

An Event is owed for every condition whose status or reason changed. A status PATCH can land in
etcd while its answer is lost (the API server killed mid-request, a client timeout): the next
attempt then sees the new status as the old one, finds no transition, and the Event would never
be sent. So the Events of a write that failed are kept as tentative, each naming the condition
it describes, and the next attempt sends those whose condition the live status shows with the
same transition time (the write landed) and drops the rest (it did not: that attempt computes
its transitions afresh).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
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
                condition=_key_of(c.model_dump(by_alias=True, exclude_none=True, mode="json")),
            )
        )
    return events


def landed(tentative: Sequence[PendingEvent], status: Mapping[str, Any]) -> list[PendingEvent]:
    """The tentative Events whose condition `status` shows exactly as their write would have
    left it: that write landed, so they are owed."""
    shown = {_key_of(c) for c in status.get("conditions") or [] if isinstance(c, Mapping)}
    return [e for e in tentative if e.condition is not None and e.condition in shown]


def _key_of(c: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return (
        str(c.get("type", "")),
        str(c.get("status", "")),
        str(c.get("reason", "")),
        _instant(c.get("lastTransitionTime")),
    )


def _instant(value: object) -> str:
    """A transition time in one spelling ("Z" or "+00:00" alike), so a time read back from the
    API server compares equal to the one written."""
    try:
        return datetime.fromisoformat(str(value)).astimezone(UTC).isoformat()
    except ValueError:
        return str(value)

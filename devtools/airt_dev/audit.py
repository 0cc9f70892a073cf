"""Count API writes from the API server's own audit log, by user agent, in a time window.

Called by the cluster tier (the operator's steady state must write nothing) and by the operator
benchmark (API requests per ModelDeployment). The local cluster's audit policy logs every write
at Metadata level (dev/cluster.py), so this is the API server's word, not the operator's.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

OPERATOR_AGENTS = ("airt-operator/", "kopf/")


@dataclass(frozen=True)
class AuditWrite:
    when: datetime
    verb: str
    user_agent: str
    resource: str
    namespace: str
    name: str


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def read_writes(
    log: Path, since: datetime | None = None, agents: tuple[str, ...] = OPERATOR_AGENTS
) -> list[AuditWrite]:
    """Completed write requests whose user agent starts with one of `agents`."""
    out: list[AuditWrite] = []
    if not log.exists():
        return out
    with log.open(errors="replace") as f:
        for line in f:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("stage") != "ResponseComplete":
                continue
            ua = ev.get("userAgent", "")
            if not ua.startswith(agents):
                continue
            when = _parse_time(ev["requestReceivedTimestamp"])
            if since is not None and when < since:
                continue
            ref = ev.get("objectRef", {})
            resource = ref.get("resource", "") + (
                f"/{ref['subresource']}" if ref.get("subresource") else ""
            )
            out.append(
                AuditWrite(
                    when, ev["verb"], ua, resource, ref.get("namespace", ""), ref.get("name", "")
                )
            )
    return out


def summarize(writes: list[AuditWrite]) -> dict[str, int]:
    """Writes per `verb resource`, for messages and reports."""
    return dict(Counter(f"{w.verb} {w.resource}" for w in writes))

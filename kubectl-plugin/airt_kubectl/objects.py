"""Typed views of the raw Kubernetes objects the plugin reads: conditions, a model's summary.

Pure: plain dicts (what `kubectl get -o json` prints) in, frozen dataclasses out. Used by the
diagnosis, the tables and the CLI. The plugin reads the wire form rather than the operator's
pydantic models on purpose: it must work against any operator version a cluster runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Obj = Mapping[str, Any]

# The conditions a user reads first, in the order the status table shows them.
SHOWN = ("Ready", "Available", "Degraded")


@dataclass(frozen=True)
class Cond:
    """One `metav1.Condition`, as the operator writes it."""

    type: str
    status: str
    reason: str = ""
    message: str = ""

    @property
    def problem(self) -> bool:
        """Whether this condition says something is wrong (Degraded is the one normal-false)."""
        if self.type == "Degraded":
            return self.status == "True"
        if self.type == "Progressing":
            return self.reason == "ProgressDeadlineExceeded"
        return self.status != "True"


def meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def name_of(obj: Obj) -> str:
    return str(meta(obj).get("name", ""))


def conditions(obj: Obj) -> list[Cond]:
    """The object's status conditions; entries without a type are skipped."""
    out = []
    for raw in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(raw, Mapping) and raw.get("type"):
            out.append(
                Cond(
                    type=str(raw["type"]),
                    status=str(raw.get("status", "Unknown")),
                    reason=str(raw.get("reason") or ""),
                    message=str(raw.get("message") or ""),
                )
            )
    return out


def condition(obj: Obj, type_: str) -> Cond | None:
    return next((c for c in conditions(obj) if c.type == type_), None)


def selector_of(md: Obj) -> str:
    """The label selector of a model's pods: the one status publishes (the scale subresource's),
    else the instance label every child carries."""
    published = (md.get("status") or {}).get("selector")
    return str(published) if published else f"app.kubernetes.io/instance={name_of(md)}"


def owned_by(pod: Obj, md_name: str) -> bool:
    labels = meta(pod).get("labels") or {}
    return bool(labels.get("app.kubernetes.io/instance") == md_name)


@dataclass(frozen=True)
class ModelSummary:
    """One row of `kubectl airt status`."""

    namespace: str
    name: str
    conditions: tuple[Cond | None, ...]  # in SHOWN order
    ready_replicas: int
    replicas: int
    runtime: str
    gpu: str
    nodes: tuple[str, ...]
    pending: int


def summarize(md: Obj, pods: Iterable[Obj]) -> ModelSummary:
    """A model's row: its conditions, replica counts, runtime and where its pods run."""
    spec = md.get("spec") or {}
    status = md.get("status") or {}
    own = [p for p in pods if owned_by(p, name_of(md))]
    nodes = sorted({str((p.get("spec") or {}).get("nodeName")) for p in own if _placed(p)})
    want = spec.get("replicas")
    return ModelSummary(
        namespace=str(meta(md).get("namespace", "")),
        name=name_of(md),
        conditions=(ready_with_blocker(md), *(condition(md, t) for t in SHOWN[1:])),
        ready_replicas=int(status.get("readyReplicas") or 0),
        replicas=int(want if want is not None else status.get("replicas") or 0),
        runtime=str(status.get("runtimeName") or (spec.get("runtime") or {}).get("name") or ""),
        # what the replicas were allocated (DRA) says more than what they asked for
        gpu=str(status.get("gpuProduct") or status.get("gpu") or ""),
        nodes=tuple(nodes),
        pending=sum(1 for p in own if not _placed(p)),
    )


# The conditions Ready is the conjunction of, in the order a person fixes them.
BLOCKERS = ("RuntimeResolved", "Scheduled", "Degraded", "Available")


def ready_with_blocker(md: Obj) -> Cond | None:
    """Ready, with the reason of the condition that blocks it when Ready's own reason is the
    generic NotReady: a table cell then says RuntimeNotFound or Unschedulable."""
    ready = condition(md, "Ready")
    if ready is None or ready.status == "True" or ready.reason != "NotReady":
        return ready
    for type_ in BLOCKERS:
        c = condition(md, type_)
        if c is not None and c.problem and c.reason:
            return Cond(ready.type, ready.status, c.reason, ready.message)
    return ready


def _placed(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName"))


def pods_of(md: Obj, pods: Sequence[Obj]) -> list[Obj]:
    """The pods of one model, by name."""
    own = [p for p in pods if owned_by(p, name_of(md))]
    return sorted(own, key=name_of)

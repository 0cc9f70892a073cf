"""The status of a runtime (either kind): Ready (valid, usable under Pod Security restricted)
and how many models use it.

Called by the runtime-status loop (runtime_status_loop.py) with the runtime's body and the
ModelDeployments kopf has indexed. Pure. Argo CD's health check for InferenceRuntime and the
`kubectl get irt` READY column read what this computes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from airt_operator.api import ApiValidationError, Condition, Reason, parse_runtime
from airt_operator.reconcile.observe import conditions_of, merge_conditions
from airt_operator.reconcile.pod_security import template_violations
from airt_operator.reconcile.runtime_template import container_of


def _uses(model: Mapping[str, Any], kind: str, name: str, namespace: str | None) -> bool:
    status = model.get("status") or {}
    if status.get("runtimeName") != name:
        return False
    if namespace:  # a namespaced runtime serves the models of its own namespace
        return bool(
            status.get("runtimeKind") == kind
            and (model.get("metadata") or {}).get("namespace") == namespace
        )
    return bool(status.get("runtimeKind", kind) == kind)


def runtime_status(
    body: Mapping[str, Any],
    models: Iterable[Mapping[str, Any]] | None,
) -> dict[str, Any]:
    """The status to write; `models` is None when this operator does not see every namespace
    (then the count would be partial, and is left out)."""
    meta = body.get("metadata", {})
    name = meta.get("name", "")
    namespace = meta.get("namespace")
    kind = str(body.get("kind") or "InferenceRuntime")
    generation = int(meta.get("generation", 0))
    try:
        rt = parse_runtime(
            {
                "kind": kind,
                "metadata": {"name": name, "namespace": namespace},
                "spec": dict(body.get("spec") or {}),
            }
        )
        count = None
        if models is not None:
            count = sum(1 for m in models if _uses(m, kind, name, namespace))
        used = "" if count is None else f"; {count} ModelDeployment(s) use it"
        violations = template_violations(container_of(rt.spec))
        cond = Condition(
            type="Ready",
            status="False" if violations else "True",
            reason=(Reason.RUNTIME_NOT_RESTRICTED if violations else Reason.READY).value,
            message=(
                "its container cannot run under Pod Security restricted: " + "; ".join(violations)
                if violations
                else f"runtime accepted{used}"
            )[:4000],
            last_transition_time=datetime.now(UTC).replace(microsecond=0),
            observed_generation=generation,
        )
    except ApiValidationError as exc:
        count = None
        cond = Condition(
            type="Ready",
            status="False",
            reason=Reason.INVALID_SPEC.value,
            message=str(exc)[:4000],
            last_transition_time=datetime.now(UTC).replace(microsecond=0),
            observed_generation=generation,
        )
    merged = merge_conditions(conditions_of(body.get("status")), [cond])
    out: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": [c.model_dump(by_alias=True, exclude_none=True, mode="json") for c in merged],
    }
    if count is not None:
        out["modelDeployments"] = count
    return out


def needs_write(body: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    current = body.get("status") or {}
    return any(current.get(k) != v for k, v in status.items())

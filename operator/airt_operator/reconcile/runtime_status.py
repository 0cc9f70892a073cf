"""The status of an InferenceRuntime: Ready (valid and usable) and how many models use it.

Called by the reconciler's runtime pass (reconciler.py) with the runtime's body and the
ModelDeployments kopf has indexed. Pure. Argo CD's health check for InferenceRuntime and the
`kubectl get irt` READY column read what this computes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from airt_operator.api import ApiValidationError, Condition, Reason, parse_inference_runtime
from airt_operator.reconcile.observe import conditions_of, merge_conditions


def runtime_status(
    body: Mapping[str, Any],
    models: Iterable[Mapping[str, Any]] | None,
) -> dict[str, Any]:
    """The status to write; `models` is None when this operator does not see every namespace
    (then the count would be partial, and is left out)."""
    meta = body.get("metadata", {})
    name = meta.get("name", "")
    generation = int(meta.get("generation", 0))
    try:
        parse_inference_runtime({"metadata": {"name": name}, "spec": dict(body.get("spec") or {})})
        count = None
        if models is not None:
            count = sum(1 for m in models if (m.get("status") or {}).get("runtimeName") == name)
        used = "" if count is None else f"; {count} ModelDeployment(s) use it"
        cond = Condition(
            type="Ready",
            status="True",
            reason=Reason.READY.value,
            message=f"runtime accepted{used}",
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

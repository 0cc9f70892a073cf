"""Whether a live object that shares a child's name is this ModelDeployment's to change.

Called by the apply step (reconciler.py) before every apply and delete of a child. The operator
writes with server-side apply and `force=true`, which takes over every field it sets and adds
its ownerReference: run against an object someone else made (a Service, a ServiceAccount or a
RoleBinding that happens to share the ModelDeployment's name), that would silently rewrite it
and hand it to the garbage collector when the ModelDeployment goes. So a child is written only
when it is absent or already controlled by this very ModelDeployment (by uid: a namesake that
was deleted and recreated is another owner); anything else is a conflict the status reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OWNER_KIND = "ModelDeployment"


@dataclass(frozen=True)
class ChildConflict:
    """A child the operator may not write: the object in its place belongs to someone else."""

    kind: str
    namespace: str
    name: str
    holder: str  # who controls it, in words ("nobody", "Deployment other", "an older ...")

    def message(self) -> str:
        return (
            f"{self.kind} {self.namespace}/{self.name} already exists and is not owned by this "
            f"ModelDeployment (controller: {self.holder}); the operator leaves it untouched. "
            "Delete or rename it, or give the ModelDeployment another name."
        )


def owned_by(live: Mapping[str, Any], owner_uid: str) -> bool:
    """True when `live` names the ModelDeployment with `owner_uid` as an owner."""
    refs = (live.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("kind") == OWNER_KIND and r.get("uid") == owner_uid for r in refs)


def _holder(live: Mapping[str, Any], owner_uid: str) -> str:
    refs: Sequence[Mapping[str, Any]] = (live.get("metadata") or {}).get("ownerReferences") or []
    controller = next((r for r in refs if r.get("controller")), None) or (refs[0] if refs else None)
    if controller is None:
        return "none"
    if controller.get("kind") == OWNER_KIND and controller.get("uid") != owner_uid:
        return f"an earlier ModelDeployment {controller.get('name')} (uid {controller.get('uid')})"
    return f"{controller.get('kind')} {controller.get('name')}"


def conflict_of(
    manifest: Mapping[str, Any], live: Mapping[str, Any] | None, owner_uid: str
) -> ChildConflict | None:
    """The conflict that keeps `manifest` from being applied over `live`, or None."""
    if live is None or owned_by(live, owner_uid):
        return None
    meta = manifest["metadata"]
    return ChildConflict(
        kind=str(manifest["kind"]),
        namespace=str(meta.get("namespace", "")),
        name=str(meta["name"]),
        holder=_holder(live, owner_uid),
    )

"""Decide whether a desired manifest is already in place, so a no-op reconcile writes nothing.

Called by the apply step before every server-side apply. Server-side apply of an unchanged
manifest is still a PATCH request (and an audit-log write); the operator promises zero writes
in steady state, so it compares first. The live object carries defaults and fields of other
managers, so "in place" means: every field we set has the value we want (desired ⊆ live).
Lists of objects that Kubernetes merges by key (containers, ports, env, volumes, ...) are
matched by that key; other lists must match element-wise in order.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

# List merge keys Kubernetes uses for the lists our children contain (strategic/SSA map lists).
_MERGE_KEYS = ("name", "containerPort", "port", "type", "mountPath", "key", "topologyKey")


def _key_of(item: Any) -> tuple[str, Any, Any] | None:
    if not isinstance(item, dict):
        return None
    for k in _MERGE_KEYS:
        if k in item:
            # Ports are keyed by (port, protocol) in Kubernetes: 53/UDP and 53/TCP are two items.
            return (k, item[k], item.get("protocol"))
    return None


def is_subset(desired: Any, live: Any) -> bool:
    """True when every value in `desired` is present and equal in `live`."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(k in live and is_subset(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(live, list):
            return False
        keys = [_key_of(d) for d in desired]
        if keys and all(k is not None for k in keys):
            # Keyed lists: ours must be there; items other managers added are theirs to keep.
            by_key = {_key_of(x): x for x in live}
            return all(
                k in by_key and is_subset(d, by_key[k]) for k, d in zip(keys, desired, strict=True)
            )
        if len(desired) != len(live):
            return False
        return all(is_subset(d, x) for d, x in zip(desired, live, strict=True))
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    if isinstance(desired, int | float) and isinstance(live, int | float):
        return float(desired) == float(live)
    return bool(desired == live)


HASH_ANNOTATION = "airt.dev/applied-hash"


def manifest_hash(desired: dict[str, Any]) -> str:
    """A stable hash of a rendered manifest (without the hash annotation itself)."""
    clean = copy.deepcopy(desired)
    clean.get("metadata", {}).get("annotations", {}).pop(HASH_ANNOTATION, None)
    blob = json.dumps(clean, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def with_hash(desired: dict[str, Any]) -> dict[str, Any]:
    """The manifest stamped with its own hash, so a field we stop setting is noticed too."""
    out = copy.deepcopy(desired)
    out.setdefault("metadata", {}).setdefault("annotations", {})[HASH_ANNOTATION] = manifest_hash(
        desired
    )
    return out


def needs_apply(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """Whether server-side apply must be sent: missing, changed since last apply, or drifted.

    `desired` is a manifest stamped by `with_hash`. A changed hash catches fields we stopped
    setting (which a subset test cannot see); the subset test catches hand edits to the live
    object (drift).
    """
    if live is None:
        return True
    want = desired.get("metadata", {}).get("annotations", {}).get(HASH_ANNOTATION)
    have = live.get("metadata", {}).get("annotations", {}).get(HASH_ANNOTATION)
    if want is not None and want != have:
        return True
    body = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind")}
    return not is_subset(body, live)


def spec_changed(desired: dict[str, Any], live: Mapping[str, Any]) -> bool:
    """Whether the live object's spec differs from the desired one (for kinds whose spec the
    API server will not change in place)."""
    return not is_subset(desired.get("spec") or {}, dict(live).get("spec") or {})

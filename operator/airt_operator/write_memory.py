"""What this operator last wrote for each object, so it neither repeats nor undoes a write.

WriteMemory holds statuses: used by the reconciler (reconciler.py: a ModelDeployment's status,
keyed by namespace and name) and by the runtime-status loop (runtime_status_loop.py: an
InferenceRuntime's status, keyed by name). ApplyMemory holds the children the reconciler applied.
Both read objects from kopf's indices, which lag behind the operator's own writes for a moment:
without this memory a reconcile would merge new conditions into a stale copy (moving transition
times and writing again), re-apply a child its watch has not shown yet, and the runtime loop
would re-send a status it has just sent.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Written:
    """One remembered write: the status, and the resourceVersion the API server answered
    (0 when unknown: then the memory is only compared against, never preferred)."""

    version: int
    status: Mapping[str, Any]


class WriteMemory(Generic[K]):
    """The last status written per key."""

    def __init__(self) -> None:
        self._written: dict[K, Written] = {}

    def remember(self, key: K, status: Mapping[str, Any], version: int | str | None = 0) -> None:
        """Record a successful write; `version` is the resourceVersion the server answered."""
        self._written[key] = Written(_version(version), dict(status))

    def forget(self, key: K) -> None:
        """The object is gone: its memory must not outlive it (a namesake may come)."""
        self._written.pop(key, None)

    def get(self, key: K) -> Written | None:
        return self._written.get(key)

    def wrote(self, key: K, version: int | str | None) -> bool:
        """True when the object at `version` is the one our last write produced."""
        written = self._written.get(key)
        return written is not None and written.version != 0 and written.version == _version(version)

    def unchanged(self, key: K, status: Mapping[str, Any]) -> bool:
        """True when `status` is exactly what was last written for `key`."""
        written = self._written.get(key)
        return written is not None and written.status == status

    def current(
        self, key: K, seen: Mapping[str, Any], seen_version: int | str | None
    ) -> dict[str, Any]:
        """The object's status: `seen` (the index's copy at `seen_version`), unless our own
        later write is not in that copy yet, then what we wrote."""
        written = self._written.get(key)
        if written is None:
            return dict(seen)
        try:
            stale = int(seen_version or 0) < written.version
        except ValueError:  # resourceVersions are opaque; etcd's are integers
            stale = False
        return dict(written.status) if stale else dict(seen)

    def __contains__(self, key: object) -> bool:
        return key in self._written

    def __len__(self) -> int:
        return len(self._written)


ChildKey = tuple[str, str, str]  # (namespace, owner's name, kind)

# How long after an apply a missing or older child in the index is taken for watch lag.
INDEX_LAG_BUDGET_S = 10.0


@dataclass
class ApplyMemory:
    """Per child: the resourceVersion and manifest hash of our last apply, when it was sent, and
    the newest resourceVersion the index has shown of it."""

    budget_s: float = INDEX_LAG_BUDGET_S
    _applied: dict[ChildKey, tuple[int, str, float]] = field(default_factory=dict)
    _seen: dict[ChildKey, int] = field(default_factory=dict)

    def remember(self, key: ChildKey, manifest_hash: str, version: int | str | None) -> None:
        """Record an apply the API server answered with `version`."""
        v = _version(version)
        if v:
            self._applied[key] = (v, manifest_hash, time.monotonic())

    def index_behind(
        self, key: ChildKey, manifest_hash: str, live: Mapping[str, Any] | None
    ) -> bool:
        """True while kopf's index has not yet caught up with the apply we last sent for this
        child (missing, or older than our write) and that apply was this very manifest: applying
        again would only repeat it. Once the index holds our version, drift is judged as usual —
        and a child deleted after that shows up as missing again, and is re-applied."""
        applied = self._applied.get(key)
        if applied is None or applied[1] != manifest_hash:
            return False
        if time.monotonic() - applied[2] > self.budget_s:
            return False  # never trust our memory for long: a missed event must not stick
        if live is None:
            return self._seen.get(key, 0) < applied[0]
        version = _version((live.get("metadata") or {}).get("resourceVersion"))
        if not version:
            return False
        self._seen[key] = max(self._seen.get(key, 0), version)
        return version < applied[0]

    def wrote(self, key: ChildKey, version: int | str | None) -> bool:
        """True when the child at `version` is the one our last apply produced."""
        applied = self._applied.get(key)
        return applied is not None and applied[0] == _version(version)

    def forget(self, namespace: str, owner: str) -> None:
        """The owner is gone: so is the memory of its children."""
        for k in [k for k in self._applied if k[:2] == (namespace, owner)]:
            self._applied.pop(k, None)
            self._seen.pop(k, None)


def _version(value: int | str | None) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0

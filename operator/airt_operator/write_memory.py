"""The status this operator last wrote for each object, so it neither repeats nor undoes a write.

Used by the reconciler (reconciler.py: a ModelDeployment's status, keyed by namespace and name)
and by the runtime-status loop (runtime_status_loop.py: an InferenceRuntime's status, keyed by
name). Both read objects from kopf's indices, which lag behind the operator's own writes for a
moment: without this memory a reconcile would merge new conditions into a stale copy (moving
transition times and writing again), and the runtime loop would re-send a status it has just
sent.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
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


def _version(value: int | str | None) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0

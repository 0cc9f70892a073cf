"""What the operator's /healthz reports: started, watches synced (or standing by), API reachable.

Built by the composition root (main.py), fed by the controller (controller.py marks the
watches synced on the first CRD event), by kopf's own peering log lines (a standby replica) and
by the API client (kube/client.py records its last successful request); read by the /healthz
view.

Why watch kopf's log for the pause: kopf keeps its pause toggles private, and a standby replica
never runs a handler, so "synced" alone would keep every standby unhealthy for ever (and the
kubelet would restart it). A paused replica is healthy when it reaches the API server. A peered
operator starts paused (kopf pre-activates its peering toggles and logs only the resumption).

Why "synced" is the first CRD event: kopf runs no handler of any kind before every index has
finished its initial listing, and the CRD watch always has objects (airt's own CRDs), so the
first CRD event proves every watch has listed once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

# How old the last successful request to the API server may be before /healthz asks again.
API_FRESH_S = 10.0

PAUSE_MARKERS = ("Pausing operations in favour of", "Pausing all operators")
RESUME_MARKERS = ("Resuming operations after the pause",)


@dataclass
class Health:
    """The operator's own view of whether it can do its work."""

    started: bool = False
    synced: bool = False
    paused: bool = False
    last_api_ok: float | None = None  # time.monotonic() of the last successful request
    last_api_error: str = ""

    def api_ok(self) -> None:
        self.last_api_ok = time.monotonic()
        self.last_api_error = ""

    def api_failed(self, error: str) -> None:
        self.last_api_error = error

    def api_fresh(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return self.last_api_ok is not None and now - self.last_api_ok <= API_FRESH_S

    def problems(self, now: float | None = None) -> list[str]:
        """Why the operator cannot do its work now; empty when it can."""
        out: list[str] = []
        if not self.started:
            out.append("starting: the start-up handlers have not run yet")
        elif not self.synced and not self.paused:
            out.append("watches not synced: the initial listing of watched kinds is not done")
        if not self.api_fresh(now):
            detail = f": {self.last_api_error}" if self.last_api_error else ""
            out.append(f"cannot reach the API server{detail}")
        return out


class PeeringLogWatcher(logging.Handler):
    """Marks the operator paused or active from kopf's peering log lines."""

    def __init__(self, health: Health) -> None:
        super().__init__(level=logging.INFO)
        self.health = health

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to report
            return
        if message.startswith(PAUSE_MARKERS):
            self.health.paused = True
        elif message.startswith(RESUME_MARKERS):
            self.health.paused = False

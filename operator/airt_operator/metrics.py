"""The operator's own Prometheus metrics, in one registry, served by the composition root.

Called by the reconciler (results, durations, conditions) and by kube/client.py (API requests
and errors). A dedicated registry keeps the process's default collectors out of tests and lets
two operators run in one test process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class OperatorMetrics:
    """Every operator metric; names are documented in docs/operating.md."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.reconciles = Counter(
            "airt_operator_reconciles",
            "Reconciles of ModelDeployments by result (applied, unchanged, waiting, failed).",
            ["result"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "airt_operator_reconcile_duration_seconds",
            "Wall time of one reconcile, from parse to status.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.conditions = Gauge(
            "airt_modeldeployment_condition",
            "1 for the current status of each condition of each ModelDeployment.",
            ["namespace", "name", "type", "status"],
            registry=r,
        )
        self.api_requests = Counter(
            "airt_operator_api_requests",
            "Requests the operator sent to the API server (reads and writes), by method.",
            ["method", "kind"],
            registry=r,
        )
        self.api_errors = Counter(
            "airt_operator_api_errors",
            "Failed requests to the API server, by method and HTTP status (0: no answer).",
            ["method", "status"],
            registry=r,
        )
        self.children_applied = Counter(
            "airt_operator_children_applied",
            "Child objects written with server-side apply, by kind.",
            ["kind"],
            registry=r,
        )
        self._condition_series: dict[tuple[str, str], set[tuple[str, str, str, str]]] = {}

    def set_conditions(self, namespace: str, name: str, conditions: list[dict[str, str]]) -> None:
        """Replace the condition series of one ModelDeployment with its current conditions."""
        self.forget(namespace, name)
        series = {(namespace, name, c["type"], c["status"]) for c in conditions}
        for labels in series:
            self.conditions.labels(*labels).set(1)
        self._condition_series[(namespace, name)] = series

    def forget(self, namespace: str, name: str) -> None:
        """Drop the series of a deleted ModelDeployment."""
        for labels in self._condition_series.pop((namespace, name), set()):
            self.conditions.remove(*labels)

"""An operator that starts with many ModelDeployments already there (a restart, an upgrade, a
failover): it reconciles every one, and a restart over a converged namespace writes nothing.

Cluster tier, against the real control plane and the real `airt-operator run` process. This is
the regression test for a start-up hang: with kopf's `batching.worker_limit` set (it was 64),
kopf's indices deadlock when more objects of one kind exist at start than the limit admits
workers — each indexed worker waits for all the others to be indexed (nolar/kopf#1243). The
test creates more ModelDeployments than that old limit before the operator starts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from namespaces import fresh_namespace

from airt_dev.audit import read_writes, summarize
from airt_dev.cluster import Cluster
from airt_dev.fixtures import example_copies
from airt_dev.operator_proc import OperatorProcess
from airt_dev.wait import wait_for

N = 70  # more than the worker limit that used to deadlock (64)


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> Iterator[str]:
    with fresh_namespace(cluster, "restart") as name:
        yield name


def _ready_count(cluster: Cluster, ns: str) -> int:
    items = cluster.get_json("md", "-n", ns)["items"]
    return sum(
        1
        for m in items
        for c in (m.get("status") or {}).get("conditions") or []
        if c["type"] == "Ready" and c["status"] == "True"
    )


def _reconciles(op: OperatorProcess) -> int:
    text = op.metrics()
    return int(
        sum(
            float(v)
            for v in re.findall(r"^airt_operator_reconciles_total\{.*\} (\S+)$", text, re.M)
        )
    )


def test_many_existing_models_reconcile_at_start_and_a_restart_writes_nothing(
    cluster: Cluster, ns: str, tmp_path: Path
) -> None:
    # All of them exist before any operator does.
    cluster.apply_objects(example_copies(N, "restart", cpu="10m", memory="64Mi"), ns)
    first = OperatorProcess.start(cluster.kubeconfig, tmp_path / "first.log", namespaces=(ns,))
    try:
        wait_for(lambda: _ready_count(cluster, ns) == N, 300, f"{N} ModelDeployments Ready")

        def quiet_for_5s() -> bool:
            since = datetime.now(UTC).timestamp() - 5
            return not any(
                w.when.timestamp() > since and w.namespace in (ns, "")
                for w in read_writes(cluster.audit_log)
            )

        wait_for(quiet_for_5s, 120, "the first operator's writes to settle")
    finally:
        first.stop()

    restarted_at = datetime.now(UTC)
    second = OperatorProcess.start(cluster.kubeconfig, tmp_path / "second.log", namespaces=(ns,))
    try:
        # The new process resumes every ModelDeployment (a reconcile each) ...
        wait_for(lambda: _reconciles(second) >= N, 120, f"the restarted operator to visit all {N}")
        # ... and finds nothing to change, so it writes nothing: no applies, no status, no Events.
        writes = [
            w for w in read_writes(cluster.audit_log, since=restarted_at) if w.namespace in (ns, "")
        ]
        assert writes == [], f"a restart over a converged namespace wrote: {summarize(writes)}"
        assert _ready_count(cluster, ns) == N
    finally:
        second.stop()

"""Shared pytest setup: tiers by directory, and the session cluster for the cluster and e2e tiers.

Every test under tests/<tier>/ gets the marker <tier>, so `pytest -m unit` selects a tier. The
`cluster` fixture starts the local control plane once per session (or reuses one already up,
as `make cluster-up` leaves it) and tears down only a cluster it started itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from airt_operator.dev.cluster import Cluster

TIERS = ("unit", "worker", "cluster", "e2e")
ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    from airt_operator.dev.cluster import ClusterManager

    manager = ClusterManager.from_env()
    started = manager.up()
    c: Cluster = manager.cluster()
    os.environ["KUBECONFIG"] = str(c.kubeconfig)
    # A real node left by `make dev` must not take the fake-node tiers' CPU pods.
    from airt_operator.dev.realnode import set_real_node_only

    set_real_node_only(c, False)
    try:
        yield c
    finally:
        if started and os.environ.get("AIRT_KEEP_CLUSTER") != "1":
            manager.down()

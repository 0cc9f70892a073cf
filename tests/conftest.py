"""Shared pytest setup: tiers by directory, and the session cluster for the cluster and e2e tiers.

Every test under tests/<tier>/ gets the marker <tier>, so `pytest -m unit` selects a tier. The
`cluster` fixture starts the local control plane once per session (or reuses one already up,
as `make cluster-up` leaves it) and tears down only a cluster it started itself.

`make test` runs the tiers in two pytest-xdist processes (`--dist loadgroup`). The cluster and
e2e tiers share one control plane and one real node, and their fixtures toggle state on them
(cordons, the operator), so they form one group that runs in one process, in file order; the
worker tier's session workers are started once, so it is a second group; unit tests go to
whichever process is free. The two groups overlap: one mostly waits on the control plane and
the containers, the other mostly computes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from airt_operator.dev.cluster import Cluster

TIERS = ("unit", "worker", "cluster", "e2e")
ROOT = Path(__file__).resolve().parent.parent


# The xdist group of each tier (see the module docstring); unit tests have none.
GROUPS = {"cluster": "control-plane", "e2e": "control-plane", "worker": "worker-processes"}


@pytest.hookimpl(tryfirst=True)  # before xdist's hook reads the groups into the node IDs
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))
            if parts[0] in GROUPS:
                item.add_marker(pytest.mark.xdist_group(name=GROUPS[parts[0]]))


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

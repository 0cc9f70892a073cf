"""Shared pytest setup: tiers by directory, and the session cluster for the cluster and e2e tiers.

Every test under tests/<tier>/ gets the marker <tier>, so `pytest -m unit` selects a tier. The
`cluster` fixture starts the local control plane once per session (or reuses one already up,
as `make cluster-up` leaves it) and tears down only a cluster it started itself.

`make test` runs the tiers in two pytest-xdist processes, scheduled by tier. The cluster and
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
from typing import Any

import pytest

from airt_operator.dev.cluster import Cluster

TIERS = ("unit", "worker", "cluster", "e2e")
ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))


# The xdist work unit of each tier (see the module docstring); unit tests are one unit each.
GROUPS = {"cluster": "control-plane", "e2e": "control-plane", "worker": "worker-processes"}


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's scheduler, grouped by tier. Its own `--dist loadgroup` cannot be used: it
    marks a group by rewriting `item._nodeid`, which this pytest no longer reads."""
    from xdist.scheduler import LoadScopeScheduling

    class TierScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            parts = nodeid.split("/", 2)
            tier = parts[1] if len(parts) > 2 and parts[0] == "tests" else ""
            return GROUPS.get(tier, nodeid)

    return TierScheduling(config, log)


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

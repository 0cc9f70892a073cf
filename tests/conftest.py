"""Shared pytest setup: tiers by directory, and the session cluster for the cluster and e2e tiers.

Every test under tests/<tier>/ gets the marker <tier>, so `pytest -m unit` selects a tier. The
`cluster` fixture starts the local control plane once per session (or reuses one already up,
as `make cluster-up` leaves it) and tears down only a cluster it started itself.

`make test` runs the tiers in four pytest-xdist processes, scheduled by tier. The cluster tier's
fixtures toggle state on its control plane (the operator, cordons), so it is one unit that runs
in one process, in file order; the e2e tier is a second unit, on a control plane of its own (its
`cluster_name` fixture, tests/e2e/conftest.py) with the machine's one real node, so the two run
side by side; the worker tier's session workers are started once, so it is a third unit; the
GPU kit's offline run is a fourth; unit tests go to whichever process is free. Each long unit
starts at once in its own process (xdist hands out one unit per process first, in the order
below), and they overlap well on two cores: the cluster and e2e tiers mostly wait on the
control plane and the containers, the others mostly compute.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airt_dev.cluster import Cluster

TIERS = ("unit", "worker", "cluster", "e2e")
ROOT = Path(__file__).resolve().parent.parent


# The xdist work unit of each tier (see the module docstring); unit tests are one unit each.
GROUPS = {"cluster": "control-plane", "e2e": "e2e-control-plane", "worker": "worker-processes"}
OWN_UNITS = {"tests/worker/test_gpu_kit.py": "gpu-kit"}  # long and self-contained
# Longest units first, one to each process, so that none starts last.
ORDER = {"control-plane": 0, "e2e-control-plane": 1, "worker-processes": 2, "gpu-kit": 3}


def _unit(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    if path in OWN_UNITS:
        return OWN_UNITS[path]
    parts = path.split("/", 2)
    tier = parts[1] if len(parts) > 2 and parts[0] == "tests" else ""
    return GROUPS.get(tier, nodeid)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in TIERS:
            item.add_marker(getattr(pytest.mark, parts[0]))
    # A stable sort: the order inside each unit (file order, which the cluster tier's module
    # fixtures rely on) is kept.
    items.sort(key=lambda item: ORDER.get(_unit(item.nodeid), len(ORDER)))


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist's scheduler, with the work units above. Its own `--dist loadgroup` cannot
    be used: it marks a group by rewriting `item._nodeid`, which this pytest no longer reads."""
    from xdist.scheduler import LoadScopeScheduling

    class TierScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    config.option.loadscopereorder = False  # keep the order set above
    return TierScheduling(config, log)


@pytest.fixture(scope="session")
def cluster_name() -> str:
    """The local cluster this process's cluster-tier tests use (tests/e2e overrides it)."""
    return os.environ.get("AIRT_CLUSTER_NAME", "airt")


@pytest.fixture(scope="session")
def cluster(cluster_name: str) -> Iterator[Cluster]:
    from airt_dev.cluster import ClusterManager

    manager = ClusterManager(name=cluster_name)
    started = manager.up()
    c: Cluster = manager.cluster()
    # for the tools the tests start (kubectl, airt-dev, the operator): one cluster per process
    os.environ["KUBECONFIG"] = str(c.kubeconfig)
    os.environ["AIRT_CLUSTER_NAME"] = cluster_name
    # A real node left by `make dev` must not take the fake-node tiers' CPU pods.
    from airt_dev.realnode import set_real_node_only

    set_real_node_only(c, False)
    try:
        yield c
    finally:
        if started and os.environ.get("AIRT_KEEP_CLUSTER") != "1":
            manager.down()

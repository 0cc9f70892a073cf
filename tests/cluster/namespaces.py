"""A fresh namespace for a cluster-tier test: the API installed, the examples' fixtures in it,
deleted (without waiting) when the test is done. Used by the cluster tier's fixtures."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from airt_dev.cluster import Cluster
from airt_dev.fixtures import ensure_fixtures, install_api


@contextmanager
def fresh_namespace(cluster: Cluster, prefix: str) -> Iterator[str]:
    ns = f"{prefix}-{uuid.uuid4().hex[:6]}"
    install_api(cluster)
    cluster.kubectl("create", "namespace", ns)
    ensure_fixtures(cluster, ns)
    try:
        yield ns
    finally:
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)

"""The e2e tier's control plane: under `make test` (pytest-xdist) its own local cluster, named
after the cluster tier's with `-e2e`, so the two tiers run side by side in their processes
(tests/conftest.py); run alone, the e2e tier uses the same cluster as the cluster tier."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def cluster_name() -> str:
    base = os.environ.get("AIRT_CLUSTER_NAME", "airt")
    return f"{base}-e2e" if os.environ.get("PYTEST_XDIST_WORKER") else base
